package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

// testFlags is a small berthd serve: the flags Load is tested with.
type testFlags struct {
	fs                           *pflag.FlagSet
	listen, metrics, role, cfg   string
	interval                     time.Duration
	once                         bool
	sans                         []string
	label                        string // an argument, not a setting
	output                       string // bound to a variable of its own
	flagsGiven, envSet, fileKeys []string
}

func newTestFlags() *testFlags {
	t := &testFlags{fs: pflag.NewFlagSet("t", pflag.ContinueOnError)}
	t.fs.StringVar(&t.listen, "listen", ":8443", "")
	t.fs.StringVar(&t.metrics, "metrics-listen", ":9090", "")
	t.fs.StringVar(&t.role, "role", "all", "")
	t.fs.DurationVar(&t.interval, "heartbeat-interval", 10*time.Second, "")
	t.fs.BoolVar(&t.once, "once", false, "")
	t.fs.StringSliceVar(&t.sans, "san", nil, "")
	t.fs.StringVar(&t.cfg, "config", "", "")
	t.fs.StringVarP(&t.output, "output", "o", "text", "")
	SetEnv(t.fs, "output", "BERTH_AGENT_OUTPUT")
	args := pflag.NewFlagSet("args", pflag.ContinueOnError)
	args.StringVar(&t.label, "label", "", "")
	NoEnv(args)
	t.fs.AddFlagSet(args)
	return t
}

func lookup(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, "berth.yaml", "listen: \":7000\"\nheartbeat-interval: 3s\nrole: ca\nsan: [a.example, b.example]\nmetrics-listen: \"\"\n")
	type want struct {
		listen, metrics, role, output string
		interval                      time.Duration
		once                          bool
		sans                          []string
		sources                       Sources
	}
	defaults := want{listen: ":8443", metrics: ":9090", role: "all", output: "text", interval: 10 * time.Second, sources: Sources{}}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want want
	}{
		{name: "defaults", want: defaults},
		{name: "file", args: []string{"--config", file},
			want: want{listen: ":7000", metrics: "", role: "ca", output: "text", interval: 3 * time.Second, sans: []string{"a.example", "b.example"},
				sources: Sources{"config": "--config", "listen": file, "metrics-listen": file, "role": file, "heartbeat-interval": file, "san": file}}},
		{name: "file named by its variable", env: map[string]string{"BERTH_CONFIG": file},
			want: want{listen: ":7000", metrics: "", role: "ca", output: "text", interval: 3 * time.Second, sans: []string{"a.example", "b.example"},
				sources: Sources{"config": "BERTH_CONFIG", "listen": file, "metrics-listen": file, "role": file, "heartbeat-interval": file, "san": file}}},
		{name: "env beats file", args: []string{"--config", file}, env: map[string]string{"BERTH_LISTEN": ":7100", "BERTH_SAN": "c.example"},
			want: want{listen: ":7100", metrics: "", role: "ca", output: "text", interval: 3 * time.Second, sans: []string{"c.example"},
				sources: Sources{"config": "--config", "listen": "BERTH_LISTEN", "metrics-listen": file, "role": file, "heartbeat-interval": file, "san": "BERTH_SAN"}}},
		{name: "flag beats env", args: []string{"--config", file, "--listen", ":7200"}, env: map[string]string{"BERTH_LISTEN": ":7100", "BERTH_ROLE": "bundles"},
			want: want{listen: ":7200", metrics: "", role: "bundles", output: "text", interval: 3 * time.Second, sans: []string{"a.example", "b.example"},
				sources: Sources{"config": "--config", "listen": "--listen", "metrics-listen": file, "role": "BERTH_ROLE", "heartbeat-interval": file, "san": file}}},
		{name: "empty variable means unset", env: map[string]string{"BERTH_METRICS_LISTEN": "", "BERTH_LISTEN": "", "BERTH_ONCE": ""}, want: defaults},
		{name: "empty variable falls through to the file", args: []string{"--config", file}, env: map[string]string{"BERTH_LISTEN": ""},
			want: want{listen: ":7000", metrics: "", role: "ca", output: "text", interval: 3 * time.Second, sans: []string{"a.example", "b.example"},
				sources: Sources{"config": "--config", "listen": file, "metrics-listen": file, "role": file, "heartbeat-interval": file, "san": file}}},
		{name: "explicitly empty flag beats env", args: []string{"--metrics-listen", ""}, env: map[string]string{"BERTH_METRICS_LISTEN": ":9191"},
			want: want{listen: ":8443", metrics: "", role: "all", output: "text", interval: 10 * time.Second, sources: Sources{"metrics-listen": "--metrics-listen"}}},
		{name: "explicitly empty flag beats file", args: []string{"--config", file, "--role="},
			want: want{listen: ":7000", metrics: "", role: "", output: "text", interval: 3 * time.Second, sans: []string{"a.example", "b.example"},
				sources: Sources{"config": "--config", "listen": file, "metrics-listen": file, "role": "--role", "heartbeat-interval": file, "san": file}}},
		{name: "bool from env", env: map[string]string{"BERTH_ONCE": "true"},
			want: want{listen: ":8443", metrics: ":9090", role: "all", output: "text", interval: 10 * time.Second, once: true, sources: Sources{"once": "BERTH_ONCE"}}},
		{name: "variable of its own", env: map[string]string{"BERTH_OUTPUT": "table", "BERTH_AGENT_OUTPUT": "json"},
			want: want{listen: ":8443", metrics: ":9090", role: "all", output: "json", interval: 10 * time.Second, sources: Sources{"output": "BERTH_AGENT_OUTPUT"}}},
		{name: "shorthand counts as the flag", args: []string{"-o", "json"}, env: map[string]string{"BERTH_AGENT_OUTPUT": "text"},
			want: want{listen: ":8443", metrics: ":9090", role: "all", output: "json", interval: 10 * time.Second, sources: Sources{"output": "--output"}}},
		{name: "default variable name not read for a renamed flag", env: map[string]string{"BERTH_OUTPUT": "json"}, want: defaults},
		{name: "arguments ignore variables", env: map[string]string{"BERTH_LABEL": "rack=r1"}, want: defaults},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFlags()
			if err := f.fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			src, err := Load(f.fs, lookup(tt.env), "config")
			if err != nil {
				t.Fatal(err)
			}
			got := want{listen: f.listen, metrics: f.metrics, role: f.role, output: f.output, interval: f.interval, once: f.once, sans: f.sans, sources: src}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if f.label != "" {
				t.Errorf("--label = %q, set by a variable", f.label)
			}
			// Only the command line marks a flag as changed.
			for _, name := range []string{"listen", "role", "once", "output", "san"} {
				if got, want := f.fs.Changed(name), src[name] == "--"+name; got != want {
					t.Errorf("Changed(%s) = %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	unknown := writeFile(t, "unknown.yaml", "lisen: \":1\"\n")
	argument := writeFile(t, "argument.yaml", "label: a=b\n")
	nested := writeFile(t, "nested.yaml", "config: other.yaml\n")
	badValue := writeFile(t, "bad.yaml", "heartbeat-interval: soon\n")
	broken := writeFile(t, "broken.yaml", "listen: [\n")
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{name: "bad env duration", env: map[string]string{"BERTH_HEARTBEAT_INTERVAL": "soon"},
			wantErr: `invalid value "soon" for BERTH_HEARTBEAT_INTERVAL: must be a duration`},
		{name: "bad env bool", env: map[string]string{"BERTH_ONCE": "maybe"}, wantErr: `invalid value "maybe" for BERTH_ONCE: must be true or false`},
		{name: "every bad variable is named", env: map[string]string{"BERTH_ONCE": "maybe", "BERTH_HEARTBEAT_INTERVAL": "soon"},
			wantErr: `invalid value "maybe" for BERTH_ONCE: must be true or false; invalid value "soon" for BERTH_HEARTBEAT_INTERVAL`},
		{name: "bad file value", args: []string{"--config", badValue}, wantErr: `invalid value "soon" for heartbeat-interval in ` + badValue},
		{name: "unknown key", args: []string{"--config", unknown}, wantErr: unknown + `: unknown setting "lisen"`},
		{name: "argument is no setting", args: []string{"--config", argument}, wantErr: `unknown setting "label"`},
		{name: "config in config", args: []string{"--config", nested}, wantErr: `unknown setting "config"`},
		{name: "broken yaml", args: []string{"--config", broken}, wantErr: "parse config " + broken},
		{name: "missing file", env: map[string]string{"BERTH_CONFIG": filepath.Join(t.TempDir(), "nope.yaml")}, wantErr: "read config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFlags()
			if err := f.fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			_, err := Load(f.fs, lookup(tt.env), "config")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestVarOf(t *testing.T) {
	f := newTestFlags()
	f.fs.BoolP("help", "h", false, "")
	if err := f.fs.SetAnnotation("help", annotCobra, []string{"true"}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"heartbeat-interval": "BERTH_HEARTBEAT_INTERVAL", "output": "BERTH_AGENT_OUTPUT", "label": "", "help": ""} {
		got, ok := VarOf(f.fs.Lookup(name))
		if got != want || ok != (want != "") {
			t.Errorf("VarOf(%s) = %q, %v; want %q", name, got, ok, want)
		}
	}
	if got := EnvName("heartbeat-grace"); got != "BERTH_HEARTBEAT_GRACE" {
		t.Fatalf("EnvName = %q", got)
	}
}
