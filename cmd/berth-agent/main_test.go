package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func runAgent(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func seedFile(t *testing.T, size int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.seed")
	if err := os.WriteFile(p, bytes.Repeat([]byte{7}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunUsageErrors(t *testing.T) {
	seed := seedFile(t, 32)
	noCmdline := filepath.Join(t.TempDir(), "cmdline")
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"unknown flag", nil, []string{"--bogus"}, "flag provided but not defined: -bogus"},
		{"bad duration", nil, []string{"--wait", "soon"}, `invalid value "soon" for flag -wait`},
		{"negative wait", nil, []string{"--wait=-1s", "--seed-file", seed}, "--wait must not be negative"},
		{"bad output", nil, []string{"-o", "yaml"}, `--output: unknown output format "yaml"`},
		{"bad identity", nil, []string{"--identity", "disk"}, `unknown identity source "disk"`},
		{"bad KEM", nil, []string{"--bundle-kem", "rsa"}, `unknown bundle KEM "rsa"`},
		{"bad log level", nil, []string{"--log-level", "loud"}, `unknown level "loud"`},
		{"stray argument", nil, []string{"register"}, `unexpected argument "register"`},
		{"bad environment", map[string]string{"BERTH_WAIT": "later"}, nil, `invalid value "later" for BERTH_WAIT`},
		{"tpm that is not there", nil, []string{"--identity", "tpm", "--tpm-device", "mssim://127.0.0.1:1"}, "mssim://127.0.0.1:1"},
		{"no seed", nil, nil, "needs --seed-file (BERTH_SEED_FILE) or --site-secret-file"},
		{"seed too short", nil, []string{"--seed-file", seedFile(t, 31)}, "need at least 32"},
		{"no CA hash", nil, []string{"--seed-file", seed, "--server", "127.0.0.1:1", "--cmdline", noCmdline},
			"no CA hash: set --ca-hash, BERTH_CA_HASH or berth.ca_hash="},
		{"flag beats environment", map[string]string{"BERTH_IDENTITY": "disk", "BERTH_SEED_FILE": seed},
			[]string{"--identity", "seed", "--server", "127.0.0.1:1", "--cmdline", noCmdline}, "no CA hash"},
		{"environment fills flags", map[string]string{"BERTH_SEED_FILE": seed, "BERTH_SERVER": "127.0.0.1:1", "BERTH_CA_HASH": "sha256:00", "BERTH_CMDLINE": noCmdline},
			nil, `CA hash "sha256:00"`},
		{"no server", map[string]string{"BERTH_SEED_FILE": seed, "BERTH_CA_HASH": mtls.CAHash(&x509.Certificate{})}, []string{"--cmdline", noCmdline, "--resolv-conf", noCmdline},
			"no registration server: set --server, BERTH_SERVER or berth.server="},
		{"bad status", nil, []string{"--seed-file", seed, "--status", "sleepy"}, `--status: unknown status "sleepy" (want up, degraded or maintenance)`},
		{"bad status from the environment", map[string]string{"BERTH_STATUS": "sleepy"}, []string{"--seed-file", seed}, `unknown status "sleepy"`},
		{"bad boot ID", nil, []string{"--seed-file", seed, "--boot-id", "not/a boot id"}, `--boot-id "not/a boot id"`},
		{"bad no-heartbeat", map[string]string{"BERTH_NO_HEARTBEAT": "maybe"}, nil, `invalid value "maybe" for BERTH_NO_HEARTBEAT`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runAgent(t, tt.args...)
			if code != 2 {
				t.Errorf("exit = %d, want 2 (stderr %q)", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if !strings.HasPrefix(stderr, "berth-agent: ") || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr = %q, want a message containing %q", stderr, tt.wantErr)
			}
			if lines := strings.Count(stderr, "\n"); lines != 1 {
				t.Errorf("stderr has %d lines, want one: %q", lines, stderr)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	code, stdout, stderr := runAgent(t, "-h")
	if code != 0 || stderr != "" {
		t.Fatalf("exit = %d, stderr = %q", code, stderr)
	}
	for _, want := range []string{"Usage:\n  berth-agent [flags]", "BERTH_CA_HASH", "berth.server=", "_berth._tcp", "Exit status",
		"-server", "-ca-hash", "-token", "-identity", "-seed-file", "-site-secret-file", "-hardware-uuid",
		"-hostname", "-key-dir", "-root", "-configure", "BERTH_STAGING_DIR", "-cert-dir", "-wait", "-once", "-output", "-cmdline", "-bundle-kem", "-log-level",
		"-no-heartbeat", "-boot-id", "-status", "heartbeat"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help does not mention %q", want)
		}
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// resumeServer answers Resume with a certificate signed by a root made at
// run time and returns the root's pin.
type resumeServer struct {
	berthv1.UnimplementedRegistrationServiceServer
	t       *testing.T
	root    *x509.Certificate
	rootKey crypto.Signer
	deny    bool
	// bundle, when set, makes Resume say it checked the node's bundle and
	// return what bundle gives (nil: none). No bundle store is named.
	bundle func() *berthv1.SealedBundle
}

func (s *resumeServer) Resume(ctx context.Context, _ *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
	id, _, ok := mtls.PeerIdentity(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no client certificate")
	}
	if s.deny {
		return nil, status.Error(codes.PermissionDenied, "node n-1 is revoked")
	}
	leaf := sign(s.t, &x509.Certificate{
		SerialNumber: big.NewInt(0x1f2e), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{mtls.NodeURI("berth.test", "n-1")},
	}, s.root, id.Leaf.PublicKey, s.rootKey)
	nc := &berthv1.NodeCredentials{
		NodeId: "n-1", Status: berthv1.NodeStatus_NODE_STATUS_APPROVED,
		CertificateChain: [][]byte{leaf.Raw}, TrustBundle: [][]byte{s.root.Raw},
	}
	if s.bundle != nil {
		nc.BundleChecked, nc.Bundle = true, s.bundle()
	}
	return &berthv1.ResumeResponse{Credentials: nc}, nil
}

func startServer(t *testing.T, srv *resumeServer) (addr, pin string) {
	t.Helper()
	srv.rootKey = newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	srv.root = sign(t, tmpl, tmpl, srv.rootKey.Public(), srv.rootKey)
	srvKey := newKey(t)
	leaf := sign(t, &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		URIs: []*url.URL{mtls.ServiceURI("berth.test", mtls.ServiceRegistration)},
	}, srv.root, srvKey.Public(), srv.rootKey)
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw, srv.root.Raw}, PrivateKey: srvKey}
	pool := x509.NewCertPool()
	pool.AddCert(srv.root)
	gs := grpc.NewServer(grpc.Creds(mtls.NewServerCredentials(credentials.NewTLS(mtls.ServerConfig(cert)), "berth.test", pool)))
	berthv1.RegisterRegistrationServiceServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String(), mtls.CAHash(srv.root)
}

func TestRunOnceJSON(t *testing.T) {
	addr, pin := startServer(t, &resumeServer{t: t})
	certDir := filepath.Join(t.TempDir(), "run")
	t.Setenv("BERTH_CA_HASH", pin)
	code, stdout, stderr := runAgent(t, "--server", addr, "--seed-file", seedFile(t, 64), "--cert-dir", certDir,
		"--cmdline", filepath.Join(t.TempDir(), "none"), "--once", "-o", "json", "--log-level", "error")
	if code != 0 {
		t.Fatalf("exit = %d, stderr = %q", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr = %q, want nothing at --log-level error", stderr)
	}
	var got map[string]any
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&got); err != nil || dec.More() {
		t.Fatalf("stdout %q is not exactly one JSON object (%v)", stdout, err)
	}
	if got["node_id"] != "n-1" || got["status"] != "approved" || got["action"] != "resumed" || got["cert_serial"] != "1f2e" {
		t.Errorf("result = %v", got)
	}
	// The server names no heartbeat endpoint.
	if got["heartbeat"] != "none" {
		t.Errorf("heartbeat = %v, want none", got["heartbeat"])
	}
	for _, name := range []string{"node.crt", "node.key", "ca.crt"} {
		if _, err := os.Stat(filepath.Join(certDir, name)); err != nil {
			t.Error(err)
		}
	}
}

func TestRunNoHeartbeatFromEnvironment(t *testing.T) {
	addr, pin := startServer(t, &resumeServer{t: t})
	t.Setenv("BERTH_NO_HEARTBEAT", "1")
	code, stdout, stderr := runAgent(t, "--server", addr, "--ca-hash", pin, "--seed-file", seedFile(t, 32),
		"--cert-dir", t.TempDir(), "--cmdline", filepath.Join(t.TempDir(), "none"), "--boot-id", "b-1", "--status", "maintenance",
		"--once", "-o", "json", "--log-level", "error")
	if code != 0 {
		t.Fatalf("exit = %d, stderr = %q", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if got["heartbeat"] != "disabled" {
		t.Errorf("heartbeat = %v, want disabled", got["heartbeat"])
	}
}

func TestRunRevokedExitsNonZero(t *testing.T) {
	addr, pin := startServer(t, &resumeServer{t: t, deny: true})
	code, stdout, stderr := runAgent(t, "--server", addr, "--ca-hash", pin, "--seed-file", seedFile(t, 32),
		"--cert-dir", t.TempDir(), "--cmdline", filepath.Join(t.TempDir(), "none"), "--once", "--log-level", "error")
	if code != 4 {
		t.Errorf("exit = %d, want 4", code)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing in text mode", stdout)
	}
	if stderr != "berth-agent: registration denied: node n-1 is revoked\n" {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestRunAppliesBundle(t *testing.T) {
	seed := seedFile(t, 64)
	src, err := keys.Open(t.Context(), keys.Config{Kind: keys.KindSeed, SeedFile: seed})
	if err != nil {
		t.Fatal(err)
	}
	kemID, pub := keys.BundlePublic(src.BundleKey())
	// Signed by the node itself, as --configure does.
	signer, err := bundle.NewNodeSigner("berth.test", src.Identity())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := bundle.Seal(bundle.Target{NodeID: "n-1", KEM: kemID, Public: pub, Version: 4},
		bundle.Contents{Files: []bundle.File{{Path: "etc/berth/node.conf", Mode: 0o600, Content: []byte("role=hypervisor\n")}}}, signer)
	if err != nil {
		t.Fatal(err)
	}
	addr, pin := startServer(t, &resumeServer{t: t, bundle: func() *berthv1.SealedBundle {
		return &berthv1.SealedBundle{Info: &berthv1.BundleInfo{NodeId: "n-1", Version: 4}, Sealed: sealed}
	}})
	root := t.TempDir()
	t.Setenv("BERTH_ROOT", root)
	code, stdout, stderr := runAgent(t, "--server", addr, "--ca-hash", pin, "--seed-file", seed, "--cert-dir", t.TempDir(),
		"--cmdline", filepath.Join(t.TempDir(), "none"), "--once", "-o", "json", "--log-level", "error")
	if code != 0 {
		t.Fatalf("exit = %d, stderr = %q", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if got["bundle_version"] != float64(4) || got["files_applied"] != float64(1) || got["bundle"] != "applied" || got["root"] != root {
		t.Errorf("result = %v", got)
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/berth/node.conf"))
	if err != nil || string(b) != "role=hypervisor\n" {
		t.Errorf("node.conf = %q, %v", b, err)
	}
}

func TestRunBundleFailures(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		sealed     []byte // nil: no bundle
		wantCode   int
		wantStdout string
		wantErr    string
	}{
		{
			name:       "no bundle",
			wantStdout: "\nno bundle\n",
		},
		{
			name:     "configure from the environment, no store to upload to",
			env:      map[string]string{"BERTH_CONFIGURE": `echo x > "$1/x"`},
			wantCode: 1,
			wantErr:  "berth-agent: --configure needs the bundle store to upload to, but the registration service named no bundles endpoint\n",
		},
		{
			name:     "bundle does not open",
			sealed:   []byte("BERTHBDL not really"),
			wantCode: 1,
			wantErr:  "berth-agent: bundle version 9 refused, nothing applied (the node's files are as they were): open bundle: not a berth bundle of a supported format",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			addr, pin := startServer(t, &resumeServer{t: t, bundle: func() *berthv1.SealedBundle {
				if tt.sealed == nil {
					return nil
				}
				return &berthv1.SealedBundle{Info: &berthv1.BundleInfo{Version: 9}, Sealed: tt.sealed}
			}})
			root := t.TempDir()
			code, stdout, stderr := runAgent(t, "--server", addr, "--ca-hash", pin, "--seed-file", seedFile(t, 32), "--cert-dir", t.TempDir(),
				"--root", root, "--cmdline", filepath.Join(t.TempDir(), "none"), "--once", "--log-level", "error")
			if code != tt.wantCode {
				t.Errorf("exit = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.HasSuffix(stdout, tt.wantStdout) || (tt.wantStdout == "") != (stdout == "") {
				t.Errorf("stdout = %q, want it to end in %q", stdout, tt.wantStdout)
			}
			if !strings.HasPrefix(stderr, tt.wantErr) || strings.Count(stderr, "\n") > 1 {
				t.Errorf("stderr = %q, want one line starting %q", stderr, tt.wantErr)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Errorf("root holds %v", entries)
			}
		})
	}
}

// TestRunOutputVariables: the agent's output format is BERTH_AGENT_OUTPUT.
// berthctl's BERTH_OUTPUT (table|json) in the same environment must not
// break it; an old BERTH_OUTPUT=json still works, with a warning.
func TestRunOutputVariables(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantJSON bool
		wantWarn bool
	}{
		{name: "berthctl's table", env: map[string]string{"BERTH_OUTPUT": "table"}},
		{name: "berthctl's table, agent's json", env: map[string]string{"BERTH_OUTPUT": "table", "BERTH_AGENT_OUTPUT": "json"}, wantJSON: true},
		{name: "agent's text beats the old variable", env: map[string]string{"BERTH_OUTPUT": "json", "BERTH_AGENT_OUTPUT": "text"}},
		{name: "old variable, json", env: map[string]string{"BERTH_OUTPUT": "json"}, wantJSON: true, wantWarn: true},
		{name: "empty agent variable is unset", env: map[string]string{"BERTH_AGENT_OUTPUT": "", "BERTH_OUTPUT": "table"}},
		{name: "flag beats both", env: map[string]string{"BERTH_OUTPUT": "json", "BERTH_AGENT_OUTPUT": "json"}, args: []string{"-o", "text"}},
		{name: "explicitly empty flag is text", env: map[string]string{"BERTH_AGENT_OUTPUT": "json"}, args: []string{"--output="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, pin := startServer(t, &resumeServer{t: t})
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"--server", addr, "--ca-hash", pin, "--seed-file", seedFile(t, 32), "--cert-dir", t.TempDir(),
				"--cmdline", filepath.Join(t.TempDir(), "none"), "--once", "--log-level", "warn"}, tt.args...)
			code, stdout, stderr := runAgent(t, args...)
			if code != 0 {
				t.Fatalf("exit = %d, stderr = %q", code, stderr)
			}
			var got map[string]any
			isJSON := json.Unmarshal([]byte(stdout), &got) == nil
			if isJSON != tt.wantJSON || !strings.Contains(stdout, "n-1") {
				t.Errorf("stdout = %q, want JSON: %v", stdout, tt.wantJSON)
			}
			if warned := strings.Contains(stderr, "set BERTH_AGENT_OUTPUT instead"); warned != tt.wantWarn {
				t.Errorf("stderr = %q, want the warning: %v", stderr, tt.wantWarn)
			}
		})
	}
}

// TestRunBadOutputVariable: a bad BERTH_AGENT_OUTPUT is the agent's
// configuration error, named as coming from the variable's flag.
func TestRunBadOutputVariable(t *testing.T) {
	t.Setenv("BERTH_AGENT_OUTPUT", "table")
	code, stdout, stderr := runAgent(t, "--seed-file", seedFile(t, 32))
	if code != 2 || stdout != "" || stderr != "berth-agent: --output: unknown output format \"table\" (want text or json)\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestRunVersionAndCompletion(t *testing.T) {
	code, stdout, stderr := runAgent(t, "--version")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "berth-agent ") || !strings.Contains(stdout, runtime.Version()) {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runAgent(t, "completion", "bash")
	if code != 0 || stderr != "" || !strings.Contains(stdout, "# bash completion V2 for berth-agent") {
		t.Errorf("completion bash: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runAgent(t, "completion", "powershell")
	if code != 2 || stderr != "berth-agent: completion: unknown shell \"powershell\" (want bash, zsh or fish) (see berth-agent completion -h)\n" {
		t.Errorf("completion powershell: exit %d, stderr %q", code, stderr)
	}
}

// TestRunSingleDashFlags: command lines written for Go's flag package
// keep working.
func TestRunSingleDashFlags(t *testing.T) {
	addr, pin := startServer(t, &resumeServer{t: t})
	code, stdout, stderr := runAgent(t, "-server", addr, "-ca-hash", pin, "-seed-file", seedFile(t, 32), "-cert-dir", t.TempDir(),
		"-cmdline", filepath.Join(t.TempDir(), "none"), "-once", "-output", "json", "-log-level", "error")
	var got map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || got["node_id"] != "n-1" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
