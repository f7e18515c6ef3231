package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestApplyPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "berth.yaml")
	if err := os.WriteFile(file, []byte("listen: \":7000\"\nheartbeat-interval: 3s\nrole: ca\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                 string
		args                 []string
		env                  map[string]string
		wantListen, wantRole string
		wantInterval         time.Duration
	}{
		{name: "defaults", wantListen: ":8443", wantRole: "all", wantInterval: 10 * time.Second},
		{name: "file", args: []string{"--config", file}, wantListen: ":7000", wantRole: "ca", wantInterval: 3 * time.Second},
		{name: "env beats file", args: []string{"--config", file}, env: map[string]string{"BERTH_LISTEN": ":7100"}, wantListen: ":7100", wantRole: "ca", wantInterval: 3 * time.Second},
		{name: "flag beats env", args: []string{"--config", file, "--listen", ":7200"}, env: map[string]string{"BERTH_LISTEN": ":7100", "BERTH_ROLE": "bundles"}, wantListen: ":7200", wantRole: "bundles", wantInterval: 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			listen := fs.String("listen", ":8443", "")
			role := fs.String("role", "all", "")
			interval := fs.Duration("heartbeat-interval", 10*time.Second, "")
			cfg := fs.String("config", "", "")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := Apply(fs, lookup(tt.env), *cfg); err != nil {
				t.Fatal(err)
			}
			if *listen != tt.wantListen || *role != tt.wantRole || *interval != tt.wantInterval {
				t.Fatalf("got listen=%q role=%q interval=%v, want %q %q %v", *listen, *role, *interval, tt.wantListen, tt.wantRole, tt.wantInterval)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("lisen: \":1\"\n"), 0o600)
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("listen: [\n"), 0o600)
	tests := []struct {
		name    string
		env     map[string]string
		file    string
		wantErr string
	}{
		{name: "bad env duration", env: map[string]string{"BERTH_HEARTBEAT_INTERVAL": "soon"}, wantErr: "BERTH_HEARTBEAT_INTERVAL: invalid value for heartbeat-interval"},
		{name: "unknown key", file: unknown, wantErr: `unknown setting "lisen"`},
		{name: "broken yaml", file: broken, wantErr: "parse config"},
		{name: "missing file", file: filepath.Join(dir, "nope.yaml"), wantErr: "read config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.String("listen", ":8443", "")
			fs.Duration("heartbeat-interval", time.Second, "")
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			err := Apply(fs, lookup(tt.env), tt.file)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func lookup(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEmptyEnvSetsEmpty(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	metrics := fs.String("metrics-listen", ":9090", "")
	other := fs.String("listen", ":8443", "")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, lookup(map[string]string{"BERTH_METRICS_LISTEN": ""}), ""); err != nil {
		t.Fatal(err)
	}
	if *metrics != "" || *other != ":8443" {
		t.Fatalf("metrics-listen %q listen %q, want \"\" and the default", *metrics, *other)
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("heartbeat-grace"); got != "BERTH_HEARTBEAT_GRACE" {
		t.Fatalf("EnvName = %q", got)
	}
}
