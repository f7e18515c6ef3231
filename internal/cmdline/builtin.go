package cmdline

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// completionCommand prints a shell's completion script for the root.
func completionCommand(program string) *cobra.Command {
	return &cobra.Command{
		Use:   "completion SHELL",
		Short: "Print the completion script of SHELL: bash, zsh or fish",
		Long: "Print the completion script of a shell. Load it into the running shell with\n" +
			"  source <(" + program + " completion bash)    # bash\n" +
			"  source <(" + program + " completion zsh)     # zsh\n" +
			"  " + program + " completion fish | source     # fish",
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return Usagef(cmd, "completion: name one shell: bash, zsh or fish")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, w := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			case "fish":
				return root.GenFishCompletion(w, true)
			}
			return Usagef(cmd, "completion: unknown shell %q (want bash, zsh or fish)", args[0])
		},
	}
}

// helpCommand serves "PROGRAM help [command...]".
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "help [command]",
		Short:  "Help about any command",
		Hidden: true,
		Args:   cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, words []string) error {
			target := cmd.Root()
			var seen []string
			for _, w := range words {
				sub := subcommand(target, w)
				if sub == nil || sub.Hidden {
					return &UsageError{Path: target.CommandPath(),
						Msg: fmt.Sprintf("help: unknown command %q", strings.Join(append(seen, w), " "))}
				}
				target = sub
				seen = append(seen, w)
			}
			return WriteHelp(cmd.OutOrStdout(), target)
		},
	}
}
