package cmdline

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// NormalizeArgs rewrites the long flags that Go's flag package accepted
// with one dash (-server x, -once, -help) to two, and --o to -o, so that
// command lines written for berth before cobra keep their meaning. It
// follows the command words as cobra will, to know each command's flags,
// and never touches flag values, positional arguments or anything after
// "--".
func NormalizeArgs(root *cobra.Command, args []string) []string {
	out := make([]string, 0, len(args))
	if len(args) > 0 && strings.HasPrefix(args[0], "__complete") {
		return append(out, args...) // cobra's completion protocol: verbatim
	}
	cmd, descend := root, true
	cmd.InitDefaultHelpFlag() // also merges the parents' persistent flags
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			if descend {
				if sub := subcommand(cmd, a); sub != nil {
					cmd = sub
					cmd.InitDefaultHelpFlag()
				} else {
					descend = false // cobra stops at the first other word
				}
			}
			out = append(out, a)
			continue
		}
		a, takesNext := rewrite(cmd.Flags(), a)
		out = append(out, a)
		if takesNext && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}

// rewrite returns flag argument a as pflag should see it, and whether the
// next argument is its value.
func rewrite(fs *pflag.FlagSet, a string) (string, bool) {
	takes := func(f *pflag.Flag, inline bool) bool { return !inline && f.NoOptDefVal == "" }
	if rest, ok := strings.CutPrefix(a, "--"); ok {
		name, _, inline := strings.Cut(rest, "=")
		if f := fs.Lookup(name); f != nil {
			return a, takes(f, inline)
		}
		if len(name) == 1 {
			if f := fs.ShorthandLookup(name); f != nil {
				return a[1:], takes(f, inline)
			}
		}
		return a, false
	}
	name, _, inline := strings.Cut(a[1:], "=")
	if len(name) > 1 {
		if f := fs.Lookup(name); f != nil {
			return "-" + a, takes(f, inline)
		}
		return a, false // shorthands with a value attached: -ojson
	}
	if f := fs.ShorthandLookup(name); f != nil {
		return a, takes(f, inline)
	}
	return a, false
}
