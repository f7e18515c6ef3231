package cmdline

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/config"
)

// GlobalFlagsTitle heads the flags a command inherits from its parents.
const GlobalFlagsTitle = "Global flags (before or after the command; a flag beats its variable):"

// WriteHelp prints the help of cmd: usage, the long text, the
// subcommands, the command's flags and the inherited ones, each with its
// default and its BERTH_* variable, then the command's Example text.
func WriteHelp(w io.Writer, cmd *cobra.Command) error {
	path := cmd.CommandPath()
	subs := Subcommands(cmd)
	fmt.Fprintf(w, "Usage:\n")
	switch args := Synopsis(cmd); {
	case len(subs) > 0 && cmd.Annotations[annotRuns] == "":
		fmt.Fprintf(w, "  %s <command> [flags]\n", path)
	case args != "":
		fmt.Fprintf(w, "  %s %s [flags]\n", path, args)
	default:
		fmt.Fprintf(w, "  %s [flags]\n", path)
	}
	long := cmd.Long
	if long == "" {
		long = cmd.Short
	}
	fmt.Fprintf(w, "\n%s\n", strings.TrimRight(long, "\n"))

	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if len(subs) > 0 {
		fmt.Fprintf(tw, "\nCommands:\n")
		for _, s := range subs {
			name := s.Name()
			if args := Synopsis(s); args != "" && len(Subcommands(s)) == 0 {
				name += " " + args
			}
			fmt.Fprintf(tw, "  %s\t%s\n", name, s.Short)
		}
	}
	var local []*pflag.Flag
	cmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" {
			local = append(local, f)
		}
	})
	writeFlags(tw, "Flags:", local)
	writeFlags(tw, GlobalFlagsTitle, globalFlags(cmd))
	if err := tw.Flush(); err != nil {
		return err
	}
	if cmd.Example != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(cmd.Example, "\n"))
	}
	if len(subs) > 0 && cmd.Annotations[annotRuns] == "" {
		fmt.Fprintf(w, "\nRun '%s <command> -h' for help on a command.\n", path)
	}
	return nil
}

// Synopsis is what cmd's Use says after its name: its arguments ("ID").
func Synopsis(cmd *cobra.Command) string {
	_, args, _ := strings.Cut(cmd.Use, " ")
	return args
}

// Subcommands returns cmd's visible subcommands in the order they were
// added.
func Subcommands(cmd *cobra.Command) []*cobra.Command {
	var subs []*cobra.Command
	for _, s := range cmd.Commands() {
		if !s.Hidden && s.Name() != "help" {
			subs = append(subs, s)
		}
	}
	order := func(c *cobra.Command) int {
		if n, err := strconv.Atoi(c.Annotations[annotOrder]); err == nil {
			return n
		}
		return len(subs)
	}
	sort.SliceStable(subs, func(i, j int) bool { return order(subs[i]) < order(subs[j]) })
	return subs
}

// globalFlags are the persistent flags of cmd and its parents, root first,
// each in the order its command defined them.
func globalFlags(cmd *cobra.Command) []*pflag.Flag {
	var chain []*cobra.Command
	for c := cmd; c != nil; c = c.Parent() {
		chain = append([]*cobra.Command{c}, chain...)
	}
	var out []*pflag.Flag
	for _, c := range chain {
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" {
				out = append(out, f)
			}
		})
	}
	return out
}

func writeFlags(w io.Writer, title string, flags []*pflag.Flag) {
	if len(flags) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s\n", title)
	for _, f := range flags {
		arg, usage := pflag.UnquoteUsage(f)
		if a := f.Annotations[AnnotArg]; len(a) == 1 {
			arg = a[0]
		}
		name := "--" + f.Name
		if f.Shorthand != "" {
			name = "-" + f.Shorthand + ", " + name
		}
		if arg != "" {
			name += " " + arg
		}
		var notes []string
		if d := f.Annotations[AnnotDefault]; len(d) == 1 {
			notes = append(notes, "default "+d[0])
		} else if !zeroDefault(f.DefValue) {
			notes = append(notes, "default "+f.DefValue)
		}
		if env, ok := config.VarOf(f); ok {
			notes = append(notes, "env "+env)
		}
		if len(notes) > 0 {
			usage += " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(w, "  %s\t%s\n", name, usage)
	}
}

func zeroDefault(v string) bool {
	switch v {
	case "", "0", "false", "[]", "0s":
		return true
	}
	return false
}
