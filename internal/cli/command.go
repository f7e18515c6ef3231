package cli

import (
	"context"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
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
	// which reads the parsed values through the closure. The flags are the
	// command's arguments: no BERTH_* variable sets them.
	setup func(fs *pflag.FlagSet) action
	subs  []*command
	// follows marks a command that runs until interrupted (watch): the
	// default --timeout does not bound it, only one given explicitly.
	follows bool
}

// action runs a parsed leaf command with its positional arguments.
type action func(ctx context.Context, s *session, args []string) error

// commandTree is berthctl's whole command line, but for the commands every
// berth binary has (completion, help) and version.
func commandTree() *command {
	return &command{
		name: "berthctl",
		help: "berthctl manages berth nodes and bootstrap tokens through the registration\n" +
			"service's admin API, and nodes' configuration bundles through the bundles\n" +
			"service's, over mutual TLS with an admin certificate. It shows node health\n" +
			"from the heartbeat service, follows the events of all three services and\n" +
			"fetches the CA's revocation list.",
		subs: []*command{nodesCommand(), tokensCommand(), apiTokensCommand(), certsCommand(), ekCommand(), policyCommand(), bundlesCommand(), caCommand(), watchCommand(), uiCommand(), settingsCommand()},
	}
}

func (c *command) subNames() string {
	names := make([]string, len(c.subs))
	for i, s := range c.subs {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// newRoot builds berthctl's cobra command tree from commandTree. The
// global flags are registered once, on the root, and cobra accepts them
// before or after any command word.
func (c Config) newRoot() *cobra.Command {
	tree := commandTree()
	root := cmdline.NewRoot(tree.name, tree.help, false)
	root.SetFlagErrorFunc(flagError)
	g := &globals{}
	g.register(root.PersistentFlags())
	c.addRunE(root, tree, g)
	for _, sub := range tree.subs {
		cmdline.Add(root, c.build(sub, g))
	}
	cmdline.Add(root, c.versionCommand(g))
	return root
}

// build returns the cobra command of cmd and its subcommands.
func (c Config) build(cmd *command, g *globals) *cobra.Command {
	use := cmd.name
	if cmd.args != "" {
		use += " " + cmd.args
	}
	cc := &cobra.Command{Use: use, Short: cmd.summary, Long: cmd.help}
	c.addRunE(cc, cmd, g)
	for _, sub := range cmd.subs {
		cmdline.Add(cc, c.build(sub, g))
	}
	return cc
}

// addRunE makes cc run cmd: a group reports a missing or unknown command;
// a leaf resolves the global flags and runs its action.
func (c Config) addRunE(cc *cobra.Command, cmd *command, g *globals) {
	cc.Args = cobra.ArbitraryArgs
	if cmd.subs != nil {
		cc.RunE = func(cc *cobra.Command, args []string) error {
			path := strings.Fields(cc.CommandPath())
			if len(args) == 0 {
				return usagef(path, "%smissing command (one of: %s)", prefix(path), cmd.subNames())
			}
			return usagef(path, "%sunknown command %q (one of: %s)", prefix(path), args[0], cmd.subNames())
		}
		return
	}
	act := cmd.setup(cc.Flags())
	config.NoEnv(cc.Flags())
	cc.RunE = func(cc *cobra.Command, pos []string) error {
		return c.runLeaf(cc.Context(), cc, cmd.follows, g, func(ctx context.Context, s *session) error {
			return act(ctx, s, pos)
		})
	}
}

// runLeaf resolves the global flags of the leaf cc and runs act in a
// session bounded by --timeout (a following command only by one given).
func (c Config) runLeaf(ctx context.Context, cc *cobra.Command, follows bool, g *globals, act func(context.Context, *session) error) error {
	path := strings.Fields(cc.CommandPath())
	set, err := g.resolve(cc.Flags(), c.Getenv, path)
	if err != nil {
		return err
	}
	if !follows || set.timeoutSet {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, set.timeout)
		defer cancel()
	}
	s := &session{cfg: c, set: set, path: path}
	defer s.close()
	return act(ctx, s)
}

// flagError words a flag parsing error as berthctl always has: "nodes
// list: unknown flag -frob".
func flagError(cc *cobra.Command, err error) error {
	path := strings.Fields(cc.CommandPath())
	msg := cmdline.FlagErrorMessage(err)
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
