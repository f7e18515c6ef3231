package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/loadgen"
	"github.com/berth-dev/berth/internal/testutil/clitest"
)

func testRoot() *cobra.Command {
	return newRoot(&options{}, func(string) (string, bool) { return "", false }, io.Discard, io.Discard)
}

// TestInventory: every flag binds to its variable; the README's table
// matches the code.
func TestInventory(t *testing.T) {
	clitest.CheckBindings(t, testRoot)
	clitest.CheckReadme(t, testRoot(), "../../README.md")
}

// TestDefaults: every command's flags hold the defaults its help states
// when nothing sets them (commands share variables, and the command that
// defines a flag last sets its variable's default for all of them).
func TestDefaults(t *testing.T) {
	for _, cmd := range testRoot().Commands() {
		if err := cmd.ParseFlags(nil); err != nil {
			t.Fatal(err)
		}
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if got := f.Value.String(); got != f.DefValue {
				t.Errorf("%s --%s = %q, its help says %q", cmd.Name(), f.Name, got, f.DefValue)
			}
		})
	}
}

func lookup(m map[string]string) config.Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestRunUsage checks the command lines refused before anything is
// measured: exit status 2 and one line (the usage alone when no command is
// given).
func TestRunUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no command", nil, nil, "Usage:\n  berth-loadgen <command> [flags]"},
		{"unknown command", []string{"stampede"}, nil, `berth-loadgen: unknown command "stampede" (see berth-loadgen -h)`},
		{"no nodes", []string{"storm"}, nil, "berth-loadgen: --nodes N is required (see berth-loadgen storm -h)"},
		{"stream floor without connections", []string{"stream-floor"}, nil, "berth-loadgen: --nodes N is required (see berth-loadgen stream-floor -h)"},
		{"nodes from the environment, bad", []string{"register"}, map[string]string{"BERTH_NODES": "many"},
			`berth-loadgen: invalid value "many" for BERTH_NODES: `},
		{"empty variable is unset", []string{"register"}, map[string]string{"BERTH_NODES": ""}, "berth-loadgen: --nodes N is required"},
		{"flag beats variable", []string{"register", "--nodes", "0"}, map[string]string{"BERTH_NODES": "5"}, "berth-loadgen: --nodes N is required"},
		{"bad output from the environment", []string{"heartbeat", "--nodes", "1"}, map[string]string{"BERTH_OUTPUT": "xml"},
			`berth-loadgen: --output "xml": want table or json (see berth-loadgen heartbeat -h)`},
		{"bad output", []string{"ceiling", "-o", "yaml"}, nil, `berth-loadgen: --output "yaml": want table or json`},
		{"bad log level", []string{"combine", "--log-level", "loud"}, nil, `berth-loadgen: --log-level "loud": want debug, info, warn or error`},
		{"unknown flag", []string{"ceiling", "--nodes", "3"}, nil, "berth-loadgen: flag provided but not defined: -nodes (see berth-loadgen ceiling -h)"},
		{"bad duration", []string{"ceiling", "-duration", "soon"}, nil, `berth-loadgen: invalid value "soon" for flag -duration: `},
		{"stray argument", []string{"register", "--nodes", "1", "now"}, nil, `berth-loadgen: unexpected argument "now"`},
		{"negative probe", []string{"storm", "--nodes", "1", "--probe", "-1s"}, nil,
			"berth-loadgen: --probe -1s must not be negative (see berth-loadgen storm -h)"},
		{"probe within the warm-up", []string{"register", "--nodes", "1", "--probe", "500ms"}, nil,
			"berth-loadgen: --probe 500ms is too short: a ceiling leaves out its first 500ms (see berth-loadgen register -h)"},
		{"ceiling within the warm-up", []string{"ceiling", "--duration", "200ms"}, nil,
			"berth-loadgen: --duration 200ms is too short: a ceiling leaves out its first 500ms (see berth-loadgen ceiling -h)"},
		{"bad server PIDs", []string{"register", "--nodes", "1", "--server-pids", "x=y"}, nil, "berth-loadgen: "},
		{"negative database PID", []string{"register", "--nodes", "1", "--db-pid", "-3"}, nil,
			"berth-loadgen: --db-pid -3 is not a PID (see berth-loadgen register -h)"},
		{"database PID of no process", []string{"storm", "--nodes", "1", "--db-pid", "1073741824"}, nil,
			"berth-loadgen: --db-pid 1073741824: no such process (see berth-loadgen storm -h)"},
		{"database PID from the environment, bad", []string{"heartbeat", "--nodes", "1"}, map[string]string{"BERTH_DB_PID": "pg"},
			`berth-loadgen: invalid value "pg" for BERTH_DB_PID: `},
		{"stepca-sign without dir", []string{"stepca-sign", "--nodes", "3"}, nil, "berth-loadgen: --stepca-dir and --nodes N are required (see berth-loadgen stepca-sign -h)"},
		{"stepca-sign without nodes", []string{"stepca-sign", "--stepca-dir", "x"}, nil, "berth-loadgen: --stepca-dir and --nodes N are required"},
		{"stepca-sign bad PIDs", []string{"stepca-sign", "--stepca-dir", "x", "--nodes", "1", "--server-pids", "stepca="}, nil, "berth-loadgen: --server-pids: "},
		{"stepca-init without listen", []string{"stepca-init", "--stepca-dir", "x"}, nil, "berth-loadgen: --stepca-dir and --stepca-listen are required (see berth-loadgen stepca-init -h)"},
		{"stepca-init listen without port", []string{"stepca-init", "--stepca-dir", "x", "--stepca-listen", "localhost"}, nil,
			`berth-loadgen: --stepca-listen "localhost": want HOST:PORT (see berth-loadgen stepca-init -h)`},
		{"stepca-init listen without host", []string{"stepca-init", "--stepca-dir", "x", "--stepca-listen", ":9000"}, nil,
			`berth-loadgen: --stepca-listen ":9000": want HOST:PORT`},
		{"stepca-sign negative nodes", []string{"stepca-sign", "--stepca-dir", "x", "--nodes", "-1"}, nil,
			"berth-loadgen: --nodes -1: want more than 0 (see berth-loadgen stepca-sign -h)"},
		{"stepca-sign no concurrency", []string{"stepca-sign", "--stepca-dir", "x", "--nodes", "1", "--concurrency", "0"}, nil,
			"berth-loadgen: --concurrency 0: want more than 0"},
		{"stepca-sign negative concurrency", []string{"stepca-sign", "--stepca-dir", "x", "--nodes", "1", "--concurrency", "-2"}, nil,
			"berth-loadgen: --concurrency -2: want more than 0"},
		{"grpc-floor no concurrency", []string{"grpc-floor", "--concurrency", "0"}, nil,
			"berth-loadgen: --concurrency 0: want more than 0 (see berth-loadgen grpc-floor -h)"},
		{"grpc-floor concurrency from the environment", []string{"grpc-floor"}, map[string]string{"BERTH_CONCURRENCY": "-1"},
			"berth-loadgen: --concurrency -1: want more than 0"},
		{"grpc-floor no duration", []string{"grpc-floor", "--duration", "0"}, nil, "berth-loadgen: --duration 0s: want more than 0"},
		{"boot-floor no concurrency", []string{"boot-floor", "--concurrency", "0"}, nil,
			"berth-loadgen: --concurrency 0: want more than 0 (see berth-loadgen boot-floor -h)"},
		{"boot-floor negative duration", []string{"boot-floor", "--duration", "-1s"}, nil, "berth-loadgen: --duration -1s: want more than 0"},
		{"register-floor no concurrency", []string{"register-floor", "--concurrency", "0"}, nil,
			"berth-loadgen: --concurrency 0: want more than 0 (see berth-loadgen register-floor -h)"},
		{"register-floor no duration", []string{"register-floor", "--duration", "0"}, nil, "berth-loadgen: --duration 0s: want more than 0"},
		{"grpc-floor negative duration", []string{"grpc-floor", "--duration", "-5s"}, nil, "berth-loadgen: --duration -5s: want more than 0"},
		{"stream-floor negative nodes", []string{"stream-floor", "--nodes", "-1"}, nil,
			"berth-loadgen: --nodes -1: want more than 0 (see berth-loadgen stream-floor -h)"},
		{"stream-floor no interval", []string{"stream-floor", "--nodes", "2", "--interval", "0"}, nil, "berth-loadgen: --interval 0s: want more than 0"},
		{"stream-floor no duration", []string{"stream-floor", "--nodes", "2", "--duration", "0"}, nil, "berth-loadgen: --duration 0s: want more than 0"},
		{"stream-floor no concurrency", []string{"stream-floor", "--nodes", "2", "--concurrency", "0"}, nil,
			"berth-loadgen: --concurrency 0: want more than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, lookup(tt.env), &stdout, &stderr)
			if code != exitUsage || stdout.Len() != 0 {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, stdout.String())
			}
			if !strings.HasPrefix(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q, want it to start %q", stderr.String(), tt.wantErr)
			}
			if tt.name != "no command" && strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("stderr is not one line: %q", stderr.String())
			}
		})
	}
}

func TestRunHelpAndVersion(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"-h"}, []string{"Usage:\n  berth-loadgen <command> [flags]", "register", "ceiling", "combine", "completion", "BERTH_OUTPUT"}},
		{[]string{"help"}, []string{"Usage:\n  berth-loadgen <command> [flags]"}},
		{[]string{"register", "-h"}, []string{"Usage:\n  berth-loadgen register [flags]", "--nodes N", "env BERTH_NODES", "env BERTH_SERVER"}},
		{[]string{"--version"}, []string{"berth-loadgen ", runtime.Version()}},
		{[]string{"completion", "bash"}, []string{"# bash completion V2 for berth-loadgen"}},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tt.args, lookup(nil), &stdout, &stderr); code != exitOK || stderr.Len() != 0 {
			t.Fatalf("%v: exit %d, stderr %q", tt.args, code, stderr.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%v: output lacks %q", tt.args, w)
			}
		}
	}
}

// TestWriteRunProbeFirst: a result with a probe prints the probe first,
// marked as the ceiling just before the result as report names it, and
// report reads both back as such; a result without one prints alone.
func TestWriteRunProbeFirst(t *testing.T) {
	probe := &loadgen.CeilingResult{Scenario: loadgen.ScenarioCeiling, HandshakesPerS: 812.5, Handshakes: 2031}
	for _, tt := range []struct {
		name, deployment, wantFor string
		probe                     *loadgen.CeilingResult
	}{
		{"storm", "", "storm", probe},
		{"restarted storm", "restarted", "storm_restarted", probe},
		{"no probe", "", "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p *loadgen.CeilingResult
			if tt.probe != nil {
				c := *tt.probe
				p = &c
			}
			res := &loadgen.Result{Scenario: loadgen.ScenarioStorm, Deployment: tt.deployment, Nodes: 5, OK: 5, Probe: p}
			var out bytes.Buffer
			if err := writeRun(&out, "json", res); err != nil {
				t.Fatal(err)
			}
			got, err := loadgen.ReadResults(&out)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if p != nil {
				want = 2
			}
			if len(got) != want {
				t.Fatalf("%d results, want %d: %v", len(got), want, got)
			}
			if p != nil && (got[0]["scenario"] != loadgen.ScenarioCeiling || got[0]["probe_for"] != tt.wantFor || fmt.Sprint(got[0]["handshakes_per_s"]) != "812.5") {
				t.Errorf("first result %v, want the probe for %q", got[0], tt.wantFor)
			}
			if last := got[len(got)-1]; last["scenario"] != loadgen.ScenarioStorm || last["probe_for"] != nil {
				t.Errorf("last result %v, want the storm", last)
			}
			out.Reset()
			if err := writeRun(&out, "table", res); err != nil {
				t.Fatal(err)
			}
			if hasProbe := strings.Contains(out.String(), "ceiling just before "+tt.wantFor+":"); hasProbe != (p != nil) {
				t.Errorf("text output %q: probe line %v, want %v", out.String(), hasProbe, p != nil)
			}
		})
	}
}
