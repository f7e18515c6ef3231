package cmdline

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/config"
)

// testTree is a small binary: "prog [--server H:P] [-o F] [--once] get ID
// [--reason R] [--count N]" plus the built-in commands.
type testTree struct {
	root          *cobra.Command
	server, out   string
	reason        string
	count         int
	wait          time.Duration
	once          bool
	ranGet, ranAt []string
}

func newTestTree() *testTree {
	t := &testTree{}
	t.root = NewRoot("prog", "prog does things.", false)
	t.root.Args = cobra.ArbitraryArgs
	t.root.RunE = func(cmd *cobra.Command, args []string) error { return Usagef(cmd, "missing command") }
	pf := t.root.PersistentFlags()
	pf.StringVar(&t.server, "server", "", "address `H:P`")
	pf.StringVarP(&t.out, "output", "o", "table", "output format")
	pf.BoolVar(&t.once, "once", false, "only once")
	get := &cobra.Command{Use: "get ID", Short: "Get one", Args: cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error { t.ranGet = args; return nil }}
	get.Flags().StringVar(&t.reason, "reason", "", "why")
	get.Flags().IntVar(&t.count, "count", 0, "how many")
	get.Flags().DurationVar(&t.wait, "wait", 0, "how long")
	Add(t.root, get)
	return t
}

func TestNormalizeArgs(t *testing.T) {
	tests := []struct {
		name       string
		args, want []string
	}{
		{"double dash untouched", []string{"--server", "x", "get", "a"}, []string{"--server", "x", "get", "a"}},
		{"single-dash long flags", []string{"-server", "x", "get", "-reason", "r", "-once", "a"}, []string{"--server", "x", "get", "--reason", "r", "--once", "a"}},
		{"with =", []string{"-server=x", "get", "-count=3"}, []string{"--server=x", "get", "--count=3"}},
		{"help", []string{"get", "-help"}, []string{"get", "--help"}},
		{"shorthand stays", []string{"-o", "json", "get"}, []string{"-o", "json", "get"}},
		{"shorthand with value attached", []string{"get", "-ojson"}, []string{"get", "-ojson"}},
		{"--o is -o", []string{"--o", "json", "get", "--o=text"}, []string{"-o", "json", "get", "-o=text"}},
		{"values are never rewritten", []string{"get", "--reason", "-once", "-count", "-server"}, []string{"get", "--reason", "-once", "--count", "-server"}},
		{"negative values", []string{"get", "-count", "-1", "-wait=-1s"}, []string{"get", "--count", "-1", "--wait=-1s"}},
		{"flags of another command stay", []string{"-reason", "r", "get"}, []string{"-reason", "r", "get"}},
		{"after --", []string{"get", "--", "-reason", "-once"}, []string{"get", "--", "-reason", "-once"}},
		{"unknown stays", []string{"get", "-frob", "--frob"}, []string{"get", "-frob", "--frob"}},
		{"completion protocol verbatim", []string{"__complete", "get", "-reas"}, []string{"__complete", "get", "-reas"}},
		{"empty", []string{}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NormalizeArgs(newTestTree().root, tt.args)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestExecuteSingleDash runs single-dash command lines end to end: they
// mean what they meant under Go's flag package.
func TestExecuteSingleDash(t *testing.T) {
	tr := newTestTree()
	var out, errOut bytes.Buffer
	if _, err := Execute(context.Background(), tr.root, []string{"-server", "h:1", "get", "-reason", "-x", "-once", "id1", "-count=2"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if tr.server != "h:1" || tr.reason != "-x" || !tr.once || tr.count != 2 || !cmp.Equal(tr.ranGet, []string{"id1"}) {
		t.Errorf("server %q reason %q once %v count %d args %v", tr.server, tr.reason, tr.once, tr.count, tr.ranGet)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		args     []string
		wantPath string
		wantMsg  string
	}{
		{[]string{"get", "--frob"}, "prog get", "flag provided but not defined: -frob"},
		{[]string{"get", "-x"}, "prog get", "flag provided but not defined: -x"},
		{[]string{"--frob", "get"}, "prog", "flag provided but not defined: -frob"},
		{[]string{"get", "--reason"}, "prog get", "flag needs an argument: -reason"},
		{[]string{"get", "-o"}, "prog get", "flag needs an argument: -o"},
		{[]string{"get", "--count", "many"}, "prog get", `invalid value "many" for flag -count: `},
		{[]string{"get", "--once=maybe"}, "prog get", `invalid boolean value "maybe" for -once: parse error`},
		{[]string{"get", "---x"}, "prog get", "bad flag syntax: ---x"},
		{[]string{"completion"}, "prog completion", "completion: name one shell: bash, zsh or fish"},
		{[]string{"completion", "tcsh"}, "prog completion", `completion: unknown shell "tcsh" (want bash, zsh or fish)`},
		{[]string{"help", "get", "more"}, "prog get", `help: unknown command "get more"`},
		{[]string{"help", "frob"}, "prog", `help: unknown command "frob"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			_, err := Execute(context.Background(), newTestTree().root, tt.args, &out, &errOut)
			ue, ok := AsUsage(err)
			if !ok {
				t.Fatalf("err = %v, want a usage error", err)
			}
			if ue.Path != tt.wantPath || !strings.HasPrefix(ue.Msg, tt.wantMsg) || strings.Contains(ue.Msg, "\n") {
				t.Errorf("usage error %q of %q, want one line starting %q of %q", ue.Msg, ue.Path, tt.wantMsg, tt.wantPath)
			}
			if out.Len()+errOut.Len() != 0 {
				t.Errorf("printed %q %q; the binary reports errors itself", out.String(), errOut.String())
			}
		})
	}
}

func TestHelpLayout(t *testing.T) {
	tr := newTestTree()
	tr.root.PersistentFlags().SortFlags = false
	var out bytes.Buffer
	if _, err := Execute(context.Background(), tr.root, []string{"get", "-h"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	want := `Usage:
  prog get ID [flags]

Get one

Flags:
  --count int      how many (env BERTH_COUNT)
  --reason string  why (env BERTH_REASON)
  --wait duration  how long (env BERTH_WAIT)

Global flags (before or after the command; a flag beats its variable):
  --server H:P         address H:P (env BERTH_SERVER)
  -o, --output string  output format (default table, env BERTH_OUTPUT)
  --once               only once (env BERTH_ONCE)
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("help (-want +got):\n%s", diff)
	}
	out.Reset()
	if _, err := Execute(context.Background(), newTestTree().root, []string{"help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Usage:\n  prog <command> [flags]\n", "Commands:\n  get ID            Get one\n  completion SHELL", "--version  print the version of prog and exit", "Run 'prog <command> -h' for help on a command."} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("root help lacks %q:\n%s", w, out.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if _, err := Execute(context.Background(), newTestTree().root, []string{"--version"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "prog ") || !strings.Contains(got, "(commit ") || !strings.Contains(got, runtime.Version()) ||
		strings.Count(got, "\n") != 1 || errOut.Len() != 0 {
		t.Errorf("--version printed %q, stderr %q", got, errOut.String())
	}
	// One dash, as Go's flag package allowed.
	out.Reset()
	if _, err := Execute(context.Background(), newTestTree().root, []string{"-version"}, &out, &errOut); err != nil || out.String() != got {
		t.Errorf("-version: %v, %q", err, out.String())
	}
}

// TestCompletionScripts checks the scripts of the three shells; bash's is
// sourced by a real bash, which must be installed.
func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{"bash": "# bash completion V2 for prog", "zsh": "#compdef prog", "fish": "complete -c prog"} {
		var out bytes.Buffer
		if _, err := Execute(context.Background(), newTestTree().root, []string{"completion", shell}, &out, &out); err != nil {
			t.Fatalf("%s: %v", shell, err)
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("%s script lacks %q", shell, want)
		}
		if shell == "bash" {
			script := filepath.Join(t.TempDir(), "prog.bash")
			if err := os.WriteFile(script, out.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "-c", `source "$1" && complete -p prog`, "bash", script)
			got, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(got), "prog") {
				t.Errorf("bash could not source the script: %v: %s", err, got)
			}
		}
	}
}

// TestDynamicCompletion runs cobra's completion protocol, which the
// scripts call: subcommands, then a command's flags.
func TestDynamicCompletion(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", ""}, []string{"get\tGet one", "completion\t"}},
		{[]string{"__complete", "get", "--re"}, []string{"--reason\twhy"}},
	} {
		var out, errOut bytes.Buffer
		if _, err := Execute(context.Background(), newTestTree().root, tt.args, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: completions %q lack %q", tt.args, out.String(), w)
			}
		}
	}
}

// TestBuiltinFlagsAreNoSettings: no BERTH_HELP or BERTH_VERSION.
func TestBuiltinFlagsAreNoSettings(t *testing.T) {
	root := newTestTree().root
	root.InitDefaultHelpFlag()
	for _, name := range []string{"help", "version"} {
		if env, ok := config.VarOf(root.Flags().Lookup(name)); ok {
			t.Errorf("--%s is set by %s", name, env)
		}
	}
}
