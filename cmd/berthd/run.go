package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
)

const long = `berthd runs berth's services.

  berthd init   --dir DIR [--trust-domain D] [--san NAME ...]
  berthd dev    [--data-dir DIR] [--listen ADDR]
  berthd serve  --role registration|ca|bundles|heartbeat|all --pki-dir DIR [--db URL | --data-dir DIR] [flags]
  berthd serve  --role api --pki-dir DIR --registration-addr H:P --ca-addr H:P --bundles-addr H:P --heartbeat-addr H:P
  berthd health [--addr H:P] [--pki-dir DIR]
  berthd ca rotate-intermediate --pki-dir DIR --root-key FILE
  berthd pki inspect [PATH...]

Every flag can also be set through the environment as BERTH_<FLAG> (e.g.
--pki-dir as BERTH_PKI_DIR); a flag on the command line wins, and an empty
variable counts as unset. berthd serve also reads a YAML file (--config).`

// errUsageShown says the usage was printed on stderr: exit 2, nothing more.
var errUsageShown = errors.New("usage shown")

// env is what every berthd command reads its settings from.
type env struct {
	lookup         config.Env
	stdout, stderr io.Writer
}

func run(ctx context.Context, args []string, lookup config.Env, stdout, stderr io.Writer) int {
	cmd, err := cmdline.Execute(ctx, newRoot(env{lookup: lookup, stdout: stdout, stderr: stderr}), args, stdout, stderr)
	name := cmd.CommandPath() // "berthd serve: ..."
	if cmdline.Builtin(cmd) {
		name = cmd.Root().Name() // "berthd: completion: ..."
	}
	switch ue, usage := cmdline.AsUsage(err); {
	case err == nil:
		return 0
	case errors.Is(err, errUsageShown):
		return 2
	case usage:
		fmt.Fprintf(stderr, "%s: %s (see %s -h)\n", name, cmdline.OneLine(ue.Msg), ue.Path)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %s\n", name, cmdline.OneLine(err.Error()))
	return 1
}

// newRoot is berthd's command tree.
func newRoot(e env) *cobra.Command {
	root := cmdline.NewRoot("berthd", long, false)
	root.Args = cobra.ArbitraryArgs
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			_ = cmdline.WriteHelp(e.stderr, cmd)
			return errUsageShown
		}
		return cmdline.Usagef(cmd, "unknown command %q (one of: init, dev, serve, health, ca, pki)", args[0])
	}
	cmdline.Add(root, initCommand(e), devCommand(e), serveCommand(e), healthCommand(e), caCommand(e), pkiCommand(e))
	return root
}

// subcommand returns a berthd command taking no positional arguments.
func subcommand(use, short, long string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Long: long, Args: cmdline.NoArgs}
}

// load fills the command's flags from the environment (and the YAML file
// of --config, for commands that have it).
func (e env) load(cmd *cobra.Command, configFlag string) error {
	_, err := config.Load(cmd.Flags(), e.lookup, configFlag)
	return err
}

// logFlags adds --log-level and --log-format and returns a logger builder.
func logFlags(fs *pflag.FlagSet) func(*cobra.Command, io.Writer) (*slog.Logger, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	return func(cmd *cobra.Command, w io.Writer) (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, cmdline.Usagef(cmd, "--log-level must be debug, info, warn or error")
		}
		opts := &slog.HandlerOptions{Level: l}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(w, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(w, opts)), nil
		}
		return nil, cmdline.Usagef(cmd, "--log-format must be text or json")
	}
}

// stringList is a repeatable flag that also takes comma-separated values
// (so it can come from one environment variable).
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

// Type names the value in help and completion.
func (s *stringList) Type() string { return "strings" }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
