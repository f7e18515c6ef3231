// Package clitest checks a berth binary's command line against what users
// and scripts rely on: every flag bound to its BERTH_* variable the same
// way (flag, then non-empty variable, then default), the README's table of
// variables, the flags of the README's examples, and the variables and
// flags that deploy/compose.yaml and the systemd unit give it.
package clitest

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
)

// Binding is one flag set by a variable. Command is the subcommand ("" for
// the root, and for flags every command of the binary has).
type Binding struct {
	Binary, Command, Flag, Env string
}

func (b Binding) String() string {
	return strings.TrimSpace(b.Binary+" "+b.Command) + " --" + b.Flag + " " + b.Env
}

// Commands returns every command of root's tree that users run: not help,
// completion or cobra's hidden ones.
func Commands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" || strings.HasPrefix(c.Name(), "__") {
			continue
		}
		out = append(out, Commands(c)...)
	}
	return out
}

// subPath is cmd's path below the root: "serve", "nodes list".
func subPath(cmd *cobra.Command) string {
	_, rest, _ := strings.Cut(cmd.CommandPath(), " ")
	return rest
}

// Bindings lists the flags of root's tree that a variable sets; a
// persistent flag of the root counts once, for the whole binary.
func Bindings(root *cobra.Command) []Binding {
	var out []Binding
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if env, ok := config.VarOf(f); ok {
			out = append(out, Binding{root.Name(), "", f.Name, env})
		}
	})
	for _, cmd := range Commands(root) {
		cmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if env, ok := config.VarOf(f); ok {
				out = append(out, Binding{root.Name(), subPath(cmd), f.Name, env})
			}
		})
	}
	sortBindings(out)
	return out
}

func sortBindings(bs []Binding) {
	sort.Slice(bs, func(i, j int) bool { return bs[i].String() < bs[j].String() })
}

// valueFor returns a valid value for f other than its default, by type.
func valueFor(t *testing.T, f *pflag.Flag) string {
	switch f.Value.Type() {
	case "string":
		return "from-env.example:1"
	case "int":
		return "7"
	case "float64":
		return "7.5"
	case "duration":
		return "7s"
	case "bool":
		if f.DefValue == "true" {
			return "false"
		}
		return "true"
	case "strings":
		return "from-env.example"
	}
	t.Fatalf("--%s: no test value for a flag of type %s", f.Name, f.Value.Type())
	return ""
}

// CheckBindings loads every bound flag of every command of the tree that
// newRoot builds, with config.Load as the binaries do: its variable sets
// it; an empty variable leaves the default; the command line beats the
// variable, even with an explicitly empty value.
func CheckBindings(t *testing.T, newRoot func() *cobra.Command) {
	t.Helper()
	for _, b := range Bindings(newRoot()) {
		t.Run(b.String(), func(t *testing.T) {
			parse := func(args []string, env map[string]string) (*pflag.Flag, config.Sources) {
				t.Helper()
				root := newRoot()
				cmd, _, err := root.Find(strings.Fields(b.Command))
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.ParseFlags(args); err != nil {
					t.Fatal(err)
				}
				src, err := config.Load(cmd.Flags(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "config")
				if err != nil {
					t.Fatal(err)
				}
				return cmd.Flags().Lookup(b.Flag), src
			}
			f, _ := parse(nil, nil)
			def, val := f.Value.String(), valueFor(t, f)
			if b.Flag == "config" {
				val = filepath.Join(t.TempDir(), "empty.yaml") // read by Load: must exist
				if err := os.WriteFile(val, []byte("{}\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			f, src := parse(nil, map[string]string{b.Env: val})
			if f.Value.String() == def || src[b.Flag] != b.Env {
				t.Errorf("%s=%s: --%s = %q from %q, want it set by the variable", b.Env, val, b.Flag, f.Value.String(), src[b.Flag])
			}
			f, src = parse(nil, map[string]string{b.Env: ""})
			if f.Value.String() != def || src[b.Flag] != "" {
				t.Errorf("%s empty: --%s = %q from %q, want the default %q", b.Env, b.Flag, f.Value.String(), src[b.Flag], def)
			}
			given := def
			if f.Value.Type() == "string" {
				given = "" // explicitly empty
			}
			f, src = parse([]string{"--" + b.Flag + "=" + given}, map[string]string{b.Env: val})
			if f.Value.String() != given || src[b.Flag] != "--"+b.Flag {
				t.Errorf("--%s=%q with %s=%s: got %q from %q, want the flag's value", b.Flag, given, b.Env, val, f.Value.String(), src[b.Flag])
			}
		})
	}
}

// readmeRow matches a row of the README's table of variables.
var readmeRow = regexp.MustCompile("^\\| `(BERTH_[A-Z0-9_]+)` \\| `--([a-z0-9-]+)` \\| ([^|]+) \\|")

// binaries are the four names a README row may start an item with.
var binaries = []string{"berthd", "berth-agent", "berthctl", "berth-loadgen"}

// ReadmeBindings reads the README's table of variables: rows of
// | `BERTH_X` | `--x` | berthd serve, dev, berth-loadgen heartbeat |
// where a word that is not a binary's name is another command of the
// binary named last.
func ReadmeBindings(t *testing.T, readme string) []Binding {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Binding
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := readmeRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		binary := ""
		for _, item := range strings.Split(m[3], ",") {
			words := strings.Fields(item)
			if len(words) > 0 && slices.Contains(binaries, words[0]) {
				binary, words = words[0], words[1:]
			}
			if binary == "" {
				t.Fatalf("%s: row of %s names no binary: %q", readme, m[1], sc.Text())
			}
			out = append(out, Binding{binary, strings.Join(words, " "), m[2], m[1]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no table of BERTH_* variables", readme)
	}
	sortBindings(out)
	return out
}

// CheckReadme checks that the README's table lists exactly the variables
// of root's binary, and that every flag in the README's examples of the
// binary exists on the command it is given to.
func CheckReadme(t *testing.T, root *cobra.Command, readme string) {
	t.Helper()
	var documented []Binding
	for _, b := range ReadmeBindings(t, readme) {
		if b.Binary == root.Name() {
			documented = append(documented, b)
		}
	}
	code := Bindings(root)
	for _, b := range code {
		if !slices.Contains(documented, b) {
			t.Errorf("%s: the table of variables lacks %v", readme, b)
		}
	}
	for _, b := range documented {
		if !slices.Contains(code, b) {
			t.Errorf("%s: the table of variables lists %v, which %s does not read", readme, b, root.Name())
		}
	}
	for _, line := range readmeCommands(t, readme, root.Name()) {
		CheckCommandLine(t, root, line, readme)
	}
}

// readmeCommands returns the README's example command lines of binary, in
// ```sh blocks or as `inline code`, continuation lines joined.
func readmeCommands(t *testing.T, readme, binary string) [][]string {
	t.Helper()
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	word := regexp.MustCompile(`(^|[\s(` + "`" + `])(?:bin/)?` + regexp.QuoteMeta(binary) + `(\s[^` + "`" + `\n|;&)#]*)`)
	var out [][]string
	for _, m := range word.FindAllStringSubmatch(text, -1) {
		args := strings.Fields(m[2])
		if len(args) == 0 {
			continue
		}
		out = append(out, args)
	}
	return out
}

// CheckCommandLine checks that every --flag of args (a command line of
// root's binary, without its name) exists on the command it is given to.
func CheckCommandLine(t *testing.T, root *cobra.Command, args []string, where string) {
	t.Helper()
	args = cmdline.NormalizeArgs(root, args)
	cmd, _, err := root.Find(args)
	if err != nil {
		t.Errorf("%s: %s %v: %v", where, root.Name(), args, err)
		return
	}
	cmd.InitDefaultHelpFlag()
	for _, a := range args {
		if a == "--" {
			break
		}
		name, ok := strings.CutPrefix(strings.Trim(a, "[]"), "--")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if cmd.Flags().Lookup(name) == nil {
			t.Errorf("%s: %s %s: no flag --%s on %q", where, root.Name(), strings.Join(args, " "), name, cmd.CommandPath())
		}
	}
}

// CheckCompose checks the services of a Compose file that run root's
// binary: every BERTH_* variable of their environment is one the binary
// reads, and every flag of their command and healthcheck exists.
func CheckCompose(t *testing.T, root *cobra.Command, compose string) {
	t.Helper()
	raw, err := os.ReadFile(compose)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]struct {
			Entrypoint  []string          `yaml:"entrypoint"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("%s: %v", compose, err)
	}
	read := map[string]bool{}
	for _, b := range Bindings(root) {
		read[b.Env] = true
	}
	found := false
	for name, svc := range file.Services {
		argv := append(slices.Clone(svc.Entrypoint), svc.Command...)
		if len(argv) == 0 || argv[0] != root.Name() {
			continue
		}
		found = true
		where := compose + " service " + name
		CheckCommandLine(t, root, argv[1:], where)
		if test := svc.Healthcheck.Test; len(test) > 1 && test[0] == "CMD" && test[1] == root.Name() {
			CheckCommandLine(t, root, test[2:], where+" healthcheck")
		}
		for env := range svc.Environment {
			if strings.HasPrefix(env, "BERTH_") && !read[env] {
				t.Errorf("%s: %s reads no %s", where, root.Name(), env)
			}
		}
	}
	if !found {
		t.Errorf("%s runs no %s", compose, root.Name())
	}
}

// CheckSystemd checks a systemd unit that runs root's binary: every
// BERTH_* variable of its Environment= lines is one the binary reads, and
// every flag of its ExecStart= exists.
func CheckSystemd(t *testing.T, root *cobra.Command, unit string) {
	t.Helper()
	raw, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	for _, b := range Bindings(root) {
		read[b.Env] = true
	}
	found := false
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "Environment="); ok {
			name, _, _ := strings.Cut(v, "=")
			if strings.HasPrefix(name, "BERTH_") && !read[name] {
				t.Errorf("%s: %s reads no %s", unit, root.Name(), name)
			}
		}
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			argv := strings.Fields(v)
			if len(argv) > 0 && filepath.Base(argv[0]) == root.Name() {
				found = true
				CheckCommandLine(t, root, argv[1:], unit)
			}
		}
	}
	if !found {
		t.Errorf("%s does not start %s", unit, root.Name())
	}
}
