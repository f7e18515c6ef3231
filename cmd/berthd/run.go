package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/berth-dev/berth/internal/config"
)

const usage = `berthd runs berth's services.

Usage:
  berthd init   --dir DIR [--trust-domain D] [--san NAME ...]
  berthd dev    [--data-dir DIR] [--listen ADDR]
  berthd serve  --role registration|ca|bundles|heartbeat|all --pki-dir DIR [--db URL | --data-dir DIR] [flags]
  berthd health [--addr H:P] [--pki-dir DIR]

Run "berthd COMMAND -h" for a command's flags. Every flag can also be set
through the environment as BERTH_<FLAG> (e.g. --pki-dir as BERTH_PKI_DIR).
`

// errUsage marks a usage error: exit status 2 instead of 1.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, env config.Env, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "init":
		err = runInit(ctx, args[1:], env, stdout, stderr)
	case "dev":
		err = runDev(ctx, args[1:], env, stdout, stderr)
	case "serve":
		err = runServe(ctx, args[1:], env, stderr)
	case "health":
		err = runHealth(ctx, args[1:], env, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "berthd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "berthd %s: %v\n", args[0], strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	}
	fmt.Fprintf(stderr, "berthd %s: %v\n", args[0], err)
	return 1
}

// newFlagSet returns a flag set whose parse errors are usage errors.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("berthd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// logFlags adds --log-level and --log-format and returns a logger builder.
func logFlags(fs *flag.FlagSet) func(io.Writer) (*slog.Logger, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	return func(w io.Writer) (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, fmt.Errorf("%w: --log-level must be debug, info, warn or error", errUsage)
		}
		opts := &slog.HandlerOptions{Level: l}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(w, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(w, opts)), nil
		}
		return nil, fmt.Errorf("%w: --log-format must be text or json", errUsage)
	}
}

// stringList is a repeatable flag that also takes comma-separated values
// (so it can come from one environment variable).
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
