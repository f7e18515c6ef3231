// Package cmdline is what the command lines of berthd, berth-agent,
// berthctl and berth-loadgen share on top of cobra: the root command with
// --version, `completion bash|zsh|fish` and `help`; one help layout that
// names every flag's BERTH_* variable; flag errors worded alike, as one
// line; and Go's single-dash long flags (-server, -once), which these
// binaries accepted before they moved to cobra and scripts still use.
//
// Settings themselves (flag, then BERTH_* variable, then file, then
// default) are read by internal/config.
package cmdline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/buildinfo"
)

// Annotations of commands and flags that the help layout reads.
const (
	// annotOrder keeps subcommands in the order they were added; cobra
	// would sort them by name.
	annotOrder = "berth.order"
	// annotRuns marks a command with subcommands that also runs on its own
	// (berth-agent, whose only subcommand is completion).
	annotRuns = "berth.runs"
	// AnnotArg names a flag's value in help (--server H:P) when the usage
	// text has no `name` in back quotes.
	AnnotArg = "berth.arg"
	// AnnotDefault describes a flag's default in help when its zero value
	// stands for something (--bundles-server: "the --server address").
	AnnotDefault = "berth.default"
)

// NewRoot returns the root command of a binary: no output of its own on
// errors (the binary reports them), --version, help and completion.
// long is the help text; runs says the root does work of its own even
// though it has subcommands.
func NewRoot(name, long string, runs bool) *cobra.Command {
	root := &cobra.Command{
		Use:               name,
		Long:              long,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		Version:           buildinfo.Get().String(),
		Annotations:       map[string]string{},
	}
	if runs {
		root.Annotations[annotRuns] = "true"
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.Flags().Bool("version", false, "print the version of "+name+" and exit")
	_ = root.Flags().SetAnnotation("version", cobra.FlagSetByCobraAnnotation, []string{"true"})
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &UsageError{Path: c.CommandPath(), Msg: FlagErrorMessage(err)}
	})
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { _ = WriteHelp(c.OutOrStdout(), c) })
	root.SetUsageFunc(func(c *cobra.Command) error { return WriteHelp(c.OutOrStderr(), c) })
	root.SetHelpCommand(helpCommand())
	completion := completionCommand(name)
	completion.Annotations = map[string]string{annotOrder: strconv.Itoa(lastOrder)}
	root.AddCommand(completion)
	return root
}

// lastOrder places the commands every binary has after its own in help.
const lastOrder = 1 << 20

// Add adds subcommands to parent; help lists them in this order.
func Add(parent *cobra.Command, subs ...*cobra.Command) {
	n := 0
	for _, c := range parent.Commands() {
		if o, err := strconv.Atoi(c.Annotations[annotOrder]); err == nil && o < lastOrder {
			n++
		}
	}
	for i, s := range subs {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[annotOrder] = strconv.Itoa(n + i)
		parent.AddCommand(s)
	}
}

// Execute runs root with args (without the program name) and returns the
// command that ran, or failed, and its error. A bad command line is a
// *UsageError. --help and --version return nil.
func Execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) (*cobra.Command, error) {
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(NormalizeArgs(root, args))
	return root.ExecuteContextC(ctx)
}

// UsageError is a bad command line or a missing setting: exit status 2,
// one line of reason, and nothing was done.
type UsageError struct {
	// Path is the command whose help explains the mistake ("berthctl
	// nodes get").
	Path string
	Msg  string
}

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a *UsageError of cmd.
func Usagef(cmd *cobra.Command, format string, args ...any) error {
	return &UsageError{Path: cmd.CommandPath(), Msg: fmt.Sprintf(format, args...)}
}

// AsUsage reports whether err is a usage error.
func AsUsage(err error) (*UsageError, bool) {
	var ue *UsageError
	ok := errors.As(err, &ue)
	return ue, ok
}

// OneLine keeps a message on a single line of stderr, whatever a server or
// a file put in it.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// FlagErrorMessage words a flag parsing error as berth's binaries always
// have (those of Go's flag package): "flag provided but not defined:
// -name", "flag needs an argument: -name", `invalid value "v" for flag
// -name: why`.
func FlagErrorMessage(err error) string {
	var notExist *pflag.NotExistError
	var noValue *pflag.ValueRequiredError
	var invalid *pflag.InvalidValueError
	var syntax *pflag.InvalidSyntaxError
	switch {
	case errors.As(err, &notExist):
		return "flag provided but not defined: -" + notExist.GetSpecifiedName()
	case errors.As(err, &noValue):
		return "flag needs an argument: -" + noValue.GetSpecifiedName()
	case errors.As(err, &invalid) && invalid.GetFlag().Value.Type() == "bool":
		return fmt.Sprintf("invalid boolean value %q for -%s: parse error", invalid.GetValue(), invalid.GetFlag().Name)
	case errors.As(err, &invalid):
		return fmt.Sprintf("invalid value %q for flag -%s: %v", invalid.GetValue(), invalid.GetFlag().Name, errors.Unwrap(invalid))
	case errors.As(err, &syntax):
		return "bad flag syntax: " + syntax.GetSpecifiedFlag()
	}
	return err.Error()
}

// NoArgs accepts no positional arguments: `unexpected argument "x"`.
func NoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usagef(cmd, "unexpected argument %q", args[0])
	}
	return nil
}

// Builtin reports whether cmd is one of the commands NewRoot adds (help,
// completion), whose messages name the command themselves.
func Builtin(cmd *cobra.Command) bool {
	return cmd.HasParent() && !cmd.Parent().HasParent() && (cmd.Name() == "help" || cmd.Name() == "completion")
}
