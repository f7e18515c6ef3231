// Package cli is berthctl, the management engine's admin CLI. It parses a
// command line into a command of the tree built in commandTree, resolves the
// global flags against the BERTH_* environment, calls the registration
// service's NodeAdminService, the bundles service's BundleAdminService and
// the heartbeat service's HeartbeatAdminService over mutual TLS and prints
// tables or JSON; watch follows their event logs through client/watch. Bundles are sealed here, to the
// node's bundle key, so their plaintext never leaves berthctl.
//
// Nothing here reads the process environment or global state: everything
// comes in through Run's arguments, so the whole CLI runs inside tests.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/berth-dev/berth/client/watch"
)

// Exit statuses of berthctl.
const (
	ExitOK    = 0 // success
	ExitError = 1 // a call failed, or local files could not be loaded
	ExitUsage = 2 // bad command line or missing settings; nothing was called
)

// Config is what berthctl takes from the process it runs in.
type Config struct {
	// Getenv looks up BERTH_* settings; nil means an empty environment.
	Getenv func(string) string
	// Stdout receives the command's output, Stderr its errors.
	Stdout io.Writer
	Stderr io.Writer
	// Now is the clock for relative times in tables; nil means time.Now.
	Now func() time.Time
	// WatchBackoff spaces watch's reconnections; zero means berthctl's
	// default. Tests make it short.
	WatchBackoff watch.Backoff
}

// Run runs berthctl with args (without the program name) and returns the
// exit status. env looks up BERTH_* settings (os.Getenv in main).
func Run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) int {
	return Config{Getenv: env, Stdout: stdout, Stderr: stderr}.Run(ctx, args)
}

// Run runs berthctl with args (without the program name) and returns the
// exit status.
func (c Config) Run(ctx context.Context, args []string) int {
	if c.Getenv == nil {
		c.Getenv = func(string) string { return "" }
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	err := c.dispatch(ctx, commandTree(), nil, args, &globals{})
	return c.report(err)
}

// usageError is a bad command line or missing setting: exit 2, one line of
// reason and a hint pointing at the help of the command concerned.
type usageError struct {
	path string // command path for the hint, e.g. "berthctl nodes get"
	msg  string
}

func (e *usageError) Error() string { return e.msg }

func usagef(path []string, format string, args ...any) error {
	return &usageError{path: strings.Join(path, " "), msg: fmt.Sprintf(format, args...)}
}

// unavailableError is a command that is planned but not built yet.
type unavailableError struct{ path string }

func (e *unavailableError) Error() string { return e.path + ": not available yet" }

// report prints err as one line on stderr and returns the exit status.
func (c Config) report(err error) int {
	if err == nil {
		return ExitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(c.Stderr, "berthctl: %s\n", oneLine(ue.msg))
		fmt.Fprintf(c.Stderr, "Run '%s -h' for usage.\n", ue.path)
		return ExitUsage
	}
	var na *unavailableError
	if errors.As(err, &na) {
		fmt.Fprintf(c.Stderr, "berthctl: %s\n", na.Error())
		return ExitUsage
	}
	fmt.Fprintf(c.Stderr, "berthctl: %s\n", oneLine(err.Error()))
	return ExitError
}

// oneLine keeps an error on a single line of stderr.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
