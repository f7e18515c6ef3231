package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/rpc"
)

func TestRunExitStatus(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("rolee: ca\n"), 0o600)
	oldDir := filepath.Join(dir, "old")
	os.MkdirAll(filepath.Join(oldDir, "services"), 0o700)
	badValue := filepath.Join(dir, "bad-value.yaml")
	os.WriteFile(badValue, []byte("heartbeat-interval: soon\n"), 0o600)
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no command", args: nil, wantCode: 2, wantStderr: "Usage:"},
		{name: "unknown command", args: []string{"launch"}, wantCode: 2, wantStderr: `unknown command "launch"`},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStdout: "berthd init"},
		{name: "init needs --dir", args: []string{"init"}, wantCode: 2, wantStderr: "berthd init: --dir is required"},
		{name: "init unknown flag", args: []string{"init", "--dri", "x"}, wantCode: 2, wantStderr: "flag provided but not defined"},
		{name: "init", args: []string{"init", "--dir", pkiDir, "--san", "berth.example.com"}, wantCode: 0, wantStdout: "CA hash (berth-agent --ca-hash, berth.ca_hash=): sha256:"},
		{name: "init again keeps the PKI", args: []string{"init", "--dir", pkiDir}, wantCode: 0, wantStdout: "kept it unchanged"},
		{name: "init dir from env", args: []string{"init"}, env: map[string]string{"BERTH_DIR": pkiDir}, wantCode: 0, wantStdout: "kept it unchanged"},
		{name: "serve bad role", args: []string{"serve", "--role", "dns", "--pki-dir", pkiDir, "--data-dir", dir}, wantCode: 1, wantStderr: "--role must be one of"},
		{name: "serve bad duration env", args: []string{"serve"}, env: map[string]string{"BERTH_CERT_LIFETIME": "forever"}, wantCode: 1, wantStderr: `berthd serve: invalid value "forever" for BERTH_CERT_LIFETIME: must be a duration`},
		{name: "serve unknown config key", args: []string{"serve", "--config", cfg}, wantCode: 1, wantStderr: `unknown setting "rolee"`},
		{name: "serve stray argument", args: []string{"serve", "ca"}, wantCode: 2, wantStderr: `unexpected argument "ca"`},
		{name: "serve bad log level", args: []string{"serve", "--log-level", "loud", "--pki-dir", pkiDir, "--data-dir", dir}, wantCode: 2, wantStderr: "--log-level must be"},
		{name: "health needs --pki-dir", args: []string{"health"}, wantCode: 2, wantStderr: "--pki-dir is required"},
		{name: "init dir from an empty variable", args: []string{"init"}, env: map[string]string{"BERTH_DIR": ""}, wantCode: 2, wantStderr: "berthd init: --dir is required (see berthd init -h)"},
		{name: "init flag beats variable", args: []string{"init", "--dir", pkiDir}, env: map[string]string{"BERTH_DIR": filepath.Join(dir, "other")}, wantCode: 0, wantStdout: "PKI already present in " + pkiDir + "; kept it unchanged"},
		{name: "single-dash flags", args: []string{"init", "-dir", pkiDir, "-trust-domain=berth.local"}, wantCode: 0, wantStdout: "kept it unchanged"},
		{name: "version", args: []string{"--version"}, wantCode: 0, wantStdout: "berthd "},
		{name: "completion", args: []string{"completion", "zsh"}, wantCode: 0, wantStdout: "#compdef berthd"},
		{name: "help of a command names variables", args: []string{"serve", "-h"}, wantCode: 0, wantStdout: "(default 127.0.0.1:9090, env BERTH_METRICS_LISTEN)"},
		{name: "serve negative limit", args: []string{"serve", "--max-streams", "-1", "--pki-dir", pkiDir, "--data-dir", dir}, wantCode: 2, wantStderr: "berthd serve: --max-streams must not be negative (0 turns the limit off)"},
		{name: "serve negative connect rate", args: []string{"serve", "--heartbeat-max-connect-rate", "-1", "--pki-dir", pkiDir, "--data-dir", dir}, wantCode: 2,
			wantStderr: "berthd serve: --heartbeat-max-connect-rate must be a finite number of at least 0 (0 turns the limit off), not -1"},
		{name: "serve NaN beat rate", args: []string{"serve", "--heartbeat-max-rate", "NaN", "--pki-dir", pkiDir, "--data-dir", dir}, wantCode: 2,
			wantStderr: "berthd serve: --heartbeat-max-rate must be a finite number of at least 0 (0 turns the limit off), not NaN"},
		{name: "serve contradictory limits", args: []string{"serve", "--max-unauthenticated", "10", "--pki-dir", pkiDir, "--data-dir", dir}, wantCode: 2, wantStderr: "the per-source unauthenticated connection limit (256) is above the listener's (10)"},
		{name: "serve bad limit env", args: []string{"serve"}, env: map[string]string{"BERTH_IDLE_TIMEOUT": "a while"}, wantCode: 1, wantStderr: `invalid value "a while" for BERTH_IDLE_TIMEOUT`},
		{name: "serve CRL on a role without the CA", args: []string{"serve", "--role", "heartbeat", "--ca-addr", "127.0.0.1:1", "--crl-listen", "127.0.0.1:0", "--pki-dir", pkiDir, "--data-dir", dir}, wantCode: 1, wantStderr: "--crl-listen serves the CA's revocation list; the heartbeat role has none"},
		{name: "help command", args: []string{"help", "health"}, wantCode: 0, wantStdout: "Usage:\n  berthd health [flags]"},
		{name: "completion of nothing", args: []string{"completion"}, wantCode: 2, wantStderr: "berthd: completion: name one shell: bash, zsh or fish (see berthd completion -h)"},
		{name: "help of nothing", args: []string{"help", "launch"}, wantCode: 2, wantStderr: `berthd: help: unknown command "launch" (see berthd -h)`},
		{name: "serve bad file value", args: []string{"serve", "--config", badValue}, wantCode: 1, wantStderr: `invalid value "soon" for heartbeat-interval in ` + badValue},
		{name: "health of nothing", args: []string{"health", "--pki-dir", pkiDir, "--addr", "127.0.0.1:1", "--timeout", "200ms"}, wantCode: 1, wantStderr: "health check of 127.0.0.1:1"},
		{name: "init tells where the root key is", args: []string{"init", "--dir", filepath.Join(dir, "pki2")}, wantCode: 0,
			wantStdout: "The root key is " + filepath.Join(dir, "pki2", "root", "root.key") + ": move it offline"},
		{name: "init prints the admin directory", args: []string{"init", "--dir", pkiDir}, wantCode: 0,
			wantStdout: "BERTH_CA=" + filepath.Join(pkiDir, "admin", "ca.crt") + "\n  BERTH_CERT=" + filepath.Join(pkiDir, "admin", "admin.crt")},
		{name: "serve with another role's directory", args: []string{"serve", "--role", "heartbeat", "--pki-dir", filepath.Join(pkiDir, "registration"), "--data-dir", dir, "--ca-addr", "127.0.0.1:1"},
			wantCode: 1, wantStderr: filepath.Join(pkiDir, "registration", "service.crt") + " is the certificate of spiffe://berth.local/service/registration, not of the heartbeat role"},
		{name: "serve the old layout", args: []string{"serve", "--role", "ca", "--pki-dir", oldDir, "--data-dir", dir},
			wantCode: 1, wantStderr: `run "berthd init --dir ` + oldDir + `" once`},
		{name: "health expects a service", args: []string{"health", "--pki-dir", pkiDir, "--expect", "dns"}, wantCode: 2, wantStderr: "--expect must be one of"},
		{name: "ca alone", args: []string{"ca"}, wantCode: 2, wantStderr: "berthd ca: name a command: rotate-intermediate"},
		{name: "rotate needs the root key", args: []string{"ca", "rotate-intermediate", "--pki-dir", pkiDir}, wantCode: 2, wantStderr: "--root-key is required"},
		{name: "rotate with a key that is not the root's", args: []string{"ca", "rotate-intermediate", "--pki-dir", pkiDir, "--root-key", filepath.Join(pkiDir, "ca", "intermediate.key")},
			wantCode: 1, wantStderr: "intermediate.key is not the key of the root in " + filepath.Join(pkiDir, "ca", "ca.crt")},
		{name: "rotate", args: []string{"ca", "rotate-intermediate", "--pki-dir", filepath.Join(pkiDir, "ca"), "--root-key", filepath.Join(pkiDir, "root", "root.key")},
			wantCode: 0, wantStdout: "Issued a new intermediate CA"},
		{name: "inspect a role's directory", args: []string{"pki", "inspect", filepath.Join(pkiDir, "registration")}, wantCode: 0,
			wantStdout: "private_key  key of spiffe://berth.local/service/registration"},
		{name: "inspect the root key", args: []string{"pki", "inspect", "--json", filepath.Join(pkiDir, "root"), filepath.Join(pkiDir, "ca.crt")}, wantCode: 0,
			wantStdout: `"kind": "private_key",` + "\n    \"ca\": \"root\""},
		{name: "pki alone", args: []string{"pki"}, wantCode: 2, wantStderr: "name a command: inspect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("stdout %q stderr %q, want %q and %q", stdout.String(), stderr.String(), tt.wantStdout, tt.wantStderr)
			}
			if code != 0 && strings.Count(strings.TrimSpace(stderr.String()), "\n") > 0 && tt.wantStderr != "Usage:" && !strings.Contains(tt.wantStderr, "unknown command") && !strings.Contains(tt.wantStderr, "flag provided") {
				t.Fatalf("error is not one line: %q", stderr.String())
			}
		})
	}
}

// TestServeSettings: off turns the HTTP listeners off, the limit flags
// default to rpc's defaults and 0 turns a limit off.
func TestServeSettings(t *testing.T) {
	for in, want := range map[string]string{"off": "", "": "", ":9090": ":9090", "127.0.0.1:9191": "127.0.0.1:9191"} {
		var c daemon.Config
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		resolve := serveFlags(fs, &c, ":8443")
		if err := fs.Parse([]string{"--metrics-listen", in, "--crl-listen", in}); err != nil {
			t.Fatal(err)
		}
		if err := resolve(); err != nil {
			t.Fatal(err)
		}
		if c.MetricsListen != want || c.CRLListen != want {
			t.Errorf("listen %q: metrics %q, CRL %q, want %q", in, c.MetricsListen, c.CRLListen, want)
		}
	}
	var c daemon.Config
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	resolve := serveFlags(fs, &c, ":8443")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := resolve(); err != nil {
		t.Fatal(err)
	}
	want := rpc.Limits{
		MaxConnections: rpc.DefaultMaxConnections, MaxUnauthenticated: rpc.DefaultMaxUnauthenticated,
		MaxUnauthenticatedPerSource: rpc.DefaultMaxUnauthenticatedPerSource, MaxConcurrentStreams: rpc.DefaultMaxConcurrentStreams,
		HandshakeTimeout: rpc.DefaultHandshakeTimeout, IdleTimeout: rpc.DefaultIdleTimeout,
		UnauthenticatedMaxAge: rpc.DefaultUnauthenticatedMaxAge,
	}
	if c.Limits != want || c.MetricsListen != "127.0.0.1:9090" || c.CRLListen != "" {
		t.Errorf("defaults: limits %+v, metrics %q, CRL %q", c.Limits, c.MetricsListen, c.CRLListen)
	}
	if err := fs.Parse([]string{"--max-connections=0", "--max-unauthenticated=0", "--max-unauthenticated-per-source=0", "--max-streams=0", "--handshake-timeout=0", "--idle-timeout=0", "--unauthenticated-max-age=0"}); err != nil {
		t.Fatal(err)
	}
	if err := resolve(); err != nil {
		t.Fatal(err)
	}
	off := rpc.Limits{MaxConnections: -1, MaxUnauthenticated: -1, MaxUnauthenticatedPerSource: -1, MaxConcurrentStreams: -1,
		HandshakeTimeout: -1, IdleTimeout: -1, UnauthenticatedMaxAge: -1}
	if c.Limits != off {
		t.Errorf("limits turned off: %+v, want %+v", c.Limits, off)
	}
}
