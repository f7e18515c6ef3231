package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// command is one node of berthctl's command tree. A group has subs; a leaf
// has setup. To add a command, add a leaf to a group's subs (or a new group
// to commandTree): parsing, global flags and help come for free.
type command struct {
	name string
	// args is the synopsis of the positional arguments, e.g. "ID".
	args string
	// summary is the one line shown in the parent's command list.
	summary string
	// help is the paragraph shown by -h.
	help string
	// setup registers the command's own flags on fs and returns its action,
	// which reads the parsed values through the closure.
	setup func(fs *flag.FlagSet) action
	subs  []*command
	// unavailable marks a planned command that is not built yet.
	unavailable bool
	// follows marks a command that runs until interrupted (watch): the
	// default --timeout does not bound it, only one given explicitly.
	follows bool
}

// action runs a parsed leaf command with its positional arguments.
type action func(ctx context.Context, s *session, args []string) error

// commandTree is berthctl's whole command line.
func commandTree() *command {
	return &command{
		name: "berthctl",
		help: "berthctl manages berth nodes and bootstrap tokens through the registration\n" +
			"service's admin API, and nodes' configuration bundles through the bundles\n" +
			"service's, over mutual TLS with an admin certificate. It shows node health\n" +
			"from the heartbeat service and follows the events of all three services.",
		subs: []*command{nodesCommand(), tokensCommand(), bundlesCommand(), watchCommand()},
	}
}

func (c *command) sub(name string) *command {
	for _, s := range c.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (c *command) subNames() string {
	names := make([]string, len(c.subs))
	for i, s := range c.subs {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

func newFlagSet(path []string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.Join(path, " "), flag.ContinueOnError)
	// Errors and help are printed by berthctl itself, in its own format.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// dispatch parses args for cmd (reached through path) and runs it. Global
// flags are registered on every level, so they may come before or after any
// command word.
func (c Config) dispatch(ctx context.Context, cmd *command, path, args []string, g *globals) error {
	path = append(slices.Clip(path), cmd.name)
	fs := newFlagSet(path)
	var act action
	if cmd.setup != nil {
		act = cmd.setup(fs)
	}
	g.register(fs)

	switch {
	case cmd.unavailable:
		if wantsHelp(args) {
			return cmd.writeHelp(c.Stdout, path)
		}
		return &unavailableError{path: strings.Join(path[1:], " ")}

	case cmd.subs != nil:
		if err := fs.Parse(args); err != nil {
			return c.flagError(cmd, path, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return usagef(path, "%smissing command (one of: %s)", prefix(path), cmd.subNames())
		}
		if rest[0] == "help" && len(path) == 1 {
			return c.help(cmd, path, rest[1:])
		}
		sub := cmd.sub(rest[0])
		if sub == nil {
			return usagef(path, "%sunknown command %q (one of: %s)", prefix(path), rest[0], cmd.subNames())
		}
		return c.dispatch(ctx, sub, path, rest[1:], g)
	}

	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return c.flagError(cmd, path, err)
	}
	set, err := g.resolve(c.Getenv, path)
	if err != nil {
		return err
	}
	if !cmd.follows || set.timeoutSet {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, set.timeout)
		defer cancel()
	}
	s := &session{cfg: c, set: set, path: path}
	defer s.close()
	return act(ctx, s, pos)
}

// flagError turns a flag parsing error into help (for -h) or a usage error.
func (c Config) flagError(cmd *command, path []string, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return cmd.writeHelp(c.Stdout, path)
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		msg = "unknown flag " + name
	}
	return usagef(path, "%s%s", prefix(path), msg)
}

// prefix names the command of path in a message: "nodes get: ", or nothing
// for berthctl itself.
func prefix(path []string) string {
	if len(path) < 2 {
		return ""
	}
	return strings.Join(path[1:], " ") + ": "
}

// help serves "berthctl help [command...]".
func (c Config) help(root *command, path, words []string) error {
	cmd := root
	for _, w := range words {
		sub := cmd.sub(w)
		if sub == nil {
			return usagef(path, "help: unknown command %q", strings.TrimSpace(strings.Join(path[1:], " ")+" "+w))
		}
		cmd = sub
		path = append(path, w)
	}
	return cmd.writeHelp(c.Stdout, path)
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "--h", "-help", "--help":
			return true
		case "--":
			return false
		}
	}
	return false
}

// parseInterspersed parses flags that may sit between positional arguments
// ("nodes revoke ID --reason R -o json") and returns the positionals. "--"
// ends flag parsing.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// writeHelp prints the help of cmd, reached through path.
func (cmd *command) writeHelp(w io.Writer, path []string) error {
	name := strings.Join(path, " ")
	fmt.Fprintf(w, "Usage:\n")
	switch {
	case cmd.subs != nil:
		fmt.Fprintf(w, "  %s <command> [flags]\n", name)
	case cmd.args != "":
		fmt.Fprintf(w, "  %s %s [flags]\n", name, cmd.args)
	default:
		fmt.Fprintf(w, "  %s [flags]\n", name)
	}
	fmt.Fprintf(w, "\n%s\n", cmd.help)

	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if cmd.subs != nil {
		fmt.Fprintf(tw, "\nCommands:\n")
		for _, s := range cmd.subs {
			name := s.name
			if s.setup != nil && s.args != "" {
				name += " " + s.args
			}
			fmt.Fprintf(tw, "  %s\t%s\n", name, s.summary)
		}
	}
	fs := newFlagSet(path)
	if cmd.setup != nil {
		cmd.setup(fs)
	}
	if hasFlags(fs) {
		fmt.Fprintf(tw, "\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			if arg != "" {
				arg = " " + arg
			}
			if !isZeroDefault(f) {
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(tw, "  --%s%s\t%s\n", f.Name, arg, usage)
		})
	}
	if !cmd.unavailable {
		fmt.Fprintf(tw, "\nGlobal flags (before or after the command; a flag beats its variable):\n")
		for _, spec := range globalSpecs() {
			env := "env " + spec.env
			if spec.def != "" {
				env = "default " + spec.def + ", " + env
			}
			fmt.Fprintf(tw, "  %s %s\t%s (%s)\n", spec.synopsis(), spec.arg, spec.usage, env)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if cmd.subs != nil {
		fmt.Fprintf(w, "\nRun '%s <command> -h' for help on a command.\n", name)
	}
	return nil
}

// hasFlags says whether a command has flags of its own to list.
func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "[]":
		return true
	}
	return false
}
