// Package cli is berthctl, the management engine's admin CLI. It parses a
// command line into a command of the tree built in commandTree (on cobra,
// through internal/cmdline), resolves the global flags against the BERTH_*
// environment (through internal/config), calls the registration service's
// NodeAdminService, the bundles service's BundleAdminService and the
// heartbeat service's HeartbeatAdminService over mutual TLS and prints
// tables or JSON; watch follows their event logs through client/watch.
// Bundles are sealed here, to the node's bundle key, so their plaintext
// never leaves berthctl.
//
// Nothing here reads the process environment or global state: everything
// comes in through Run's arguments, so the whole CLI runs inside tests.
package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/berth-dev/berth/client/watch"
	"github.com/berth-dev/berth/internal/cmdline"
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
	_, err := cmdline.Execute(ctx, c.newRoot(), args, c.Stdout, c.Stderr)
	return c.report(err)
}

// usagef is a usage error of the command at path: exit 2, one line of
// reason and a hint pointing at that command's help.
func usagef(path []string, format string, args ...any) error {
	return &cmdline.UsageError{Path: strings.Join(path, " "), Msg: fmt.Sprintf(format, args...)}
}

// report prints err as one line on stderr and returns the exit status.
func (c Config) report(err error) int {
	if err == nil {
		return ExitOK
	}
	if ue, ok := cmdline.AsUsage(err); ok {
		fmt.Fprintf(c.Stderr, "berthctl: %s\n", oneLine(ue.Msg))
		fmt.Fprintf(c.Stderr, "Run '%s -h' for usage.\n", ue.Path)
		return ExitUsage
	}
	fmt.Fprintf(c.Stderr, "berthctl: %s\n", oneLine(err.Error()))
	return ExitError
}

// oneLine keeps an error on a single line of stderr.
func oneLine(s string) string { return cmdline.OneLine(s) }
