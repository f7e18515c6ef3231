package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// bundleHarness is one agent against a fake registration service and a
// fake bundle store, both over real TLS.
type bundleHarness struct {
	*harness
	bundles     *fakeBundles
	bundlesAddr string
	// creds edits what Resume returns; it points at the bundle store.
	creds func(*berthv1.NodeCredentials)
	logs  bytes.Buffer
}

// newBundleHarness starts both fakes; with down, the bundle store's port
// refuses connections until startBundles.
func newBundleHarness(t *testing.T, down bool) *bundleHarness {
	t.Helper()
	reg := &fakeRegistration{}
	h := &bundleHarness{harness: newHarness(t, reg), bundles: &fakeBundles{}}
	lis := listen(t)
	h.bundlesAddr = lis.Addr().String()
	if down {
		lis.Close()
	} else {
		serveBundles(t, h.pki, h.bundles, lis)
	}
	reg.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		c := approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)
		c.Endpoints = &berthv1.Endpoints{Bundles: h.bundlesAddr}
		if h.creds != nil {
			h.creds(c)
		}
		return &berthv1.ResumeResponse{Credentials: c}, nil
	}
	h.cfg.Logger = slog.New(slog.NewTextHandler(&h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return h
}

// startBundles brings a store that was down up on its port.
func (h *bundleHarness) startBundles(t *testing.T) error {
	l, err := net.Listen("tcp", h.bundlesAddr)
	if err != nil {
		return err
	}
	serveBundles(t, h.pki, h.bundles, l)
	return nil
}

// seal seals files for the harness's node to its bundle key, signed by an
// admin of the deployment for version v.
func (h *bundleHarness) seal(t *testing.T, v int64, files []bundle.File) []byte {
	t.Helper()
	return sealTo(t, h.cfg.Keys, nodeID, v, files, h.pki.adminSigner(t, testTrustDomain))
}

func sealTo(t *testing.T, src keys.Source, node string, v int64, files []bundle.File, s *bundle.Signer) []byte {
	t.Helper()
	kemID, pub := keys.BundlePublic(src.BundleKey())
	sealed, err := bundle.Seal(bundle.Target{NodeID: node, KEM: kemID, Public: pub, Version: v}, bundle.Contents{Files: files}, s)
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

// adminSigner issues an admin certificate in td under the PKI's
// intermediate and returns it as a bundle signer.
func (p *testPKI) adminSigner(t *testing.T, td string) *bundle.Signer {
	t.Helper()
	return p.signerFor(t, (&url.URL{Scheme: "spiffe", Host: td, Path: "/admin/ops"}).String())
}

// signerFor issues an admin certificate with the URI SAN uri and returns
// it as a bundle signer.
func (p *testPKI) signerFor(t *testing.T, uri string) *bundle.Signer {
	t.Helper()
	leaf, key := p.leafFor(t, uri)
	s, err := bundle.NewAdminSigner([]*x509.Certificate{leaf, p.inter}, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// leafFor issues a certificate with the URI SAN uri under the
// intermediate.
func (p *testPKI) leafFor(t *testing.T, uri string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.serial++
	serial := p.serial
	p.mu.Unlock()
	now := time.Now()
	leaf := mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "signer"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.inter, key.Public(), p.interKey)
	return leaf, key
}

// withChain swaps the signer's chain of an admin-signed bundle for chain,
// as a forger holding some other certificate of the deployment would.
func withChain(t *testing.T, sealed []byte, chain ...*x509.Certificate) []byte {
	t.Helper()
	p, err := bundle.Parse(sealed)
	if err != nil {
		t.Fatal(err)
	}
	p.Signature.Chain = nil
	for _, c := range chain {
		p.Signature.Chain = append(p.Signature.Chain, c.Raw)
	}
	return append(bytes.Clone(p.Sealed), p.Signature.Encode()...)
}

// unsigned turns a sealed bundle into format version 1, unsigned, as
// stores may still hold from before bundles were signed.
func unsigned(t *testing.T, sealed []byte) []byte {
	t.Helper()
	p, err := bundle.Parse(sealed)
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte(bundle.Magic), bundle.VersionUnsigned)
	b = append(b, sealed[9:15]...)
	return append(b, p.Sealed[bundle.HeaderSize:]...)
}

func sealedBundle(version int64, state berthv1.BundleState, sealed []byte) *berthv1.SealedBundle {
	return &berthv1.SealedBundle{
		Info:   &berthv1.BundleInfo{NodeId: nodeID, Version: version, State: state, Size: int64(len(sealed)), Sha256: bundle.Digest(sealed)},
		Sealed: sealed,
	}
}

var testFiles = []bundle.File{
	{Path: "etc/app/app.conf", Mode: 0o640, Content: []byte("listen = :80\n")},
	{Path: "etc/motd", Mode: 0o644, Content: []byte("managed by berth\n")},
}

// checkApplied checks that files are under the root, byte for byte, with
// their modes.
func checkApplied(t *testing.T, root string, files []bundle.File) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(root, f.Path)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", f.Path, err)
			continue
		}
		if !bytes.Equal(b, f.Content) {
			t.Errorf("%s = %q, want %q", f.Path, b, f.Content)
		}
		if st, _ := os.Lstat(p); st.Mode() != f.Mode {
			t.Errorf("%s mode = %v, want %v", f.Path, st.Mode(), f.Mode)
		}
	}
}

func checkEmpty(t *testing.T, root string) {
	t.Helper()
	if entries, err := os.ReadDir(root); err != nil || len(entries) != 0 {
		t.Errorf("root holds %v (%v), want nothing", entries, err)
	}
}

// checkNodePeers checks that every call to the store came with the node's
// issued certificate.
func (h *bundleHarness) checkNodePeers(t *testing.T) {
	t.Helper()
	want, _ := mtls.KeyHash(pubOf(h.cfg.Keys))
	h.bundles.mu.Lock()
	defer h.bundles.mu.Unlock()
	for i, p := range h.bundles.peers {
		if p.Kind != mtls.KindNode || p.Name != nodeID || p.KeySHA256 != want {
			t.Errorf("bundle store call %d came from %v, want node %s with its issued certificate", i, p, nodeID)
		}
	}
}

// jsonResult is the agent's JSON object as a map, to see field names.
func (h *bundleHarness) jsonResult(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(h.stdout.Bytes()))
	if err := dec.Decode(&m); err != nil || dec.More() {
		t.Fatalf("stdout %q is not one JSON object (%v)", h.stdout.String(), err)
	}
	return m
}

func TestBootAppliesBundle(t *testing.T) {
	tests := []struct {
		name       string
		inline     bool
		wantSource string
		wantCalls  []string
	}{
		{"inline with the credentials", true, BundleSourceInline, nil},
		{"fetched from the bundle store", false, BundleSourceFetched, []string{"GetBundle"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBundleHarness(t, false)
			sb := sealedBundle(7, berthv1.BundleState_BUNDLE_STATE_APPROVED, h.seal(t, 7, testFiles))
			if tt.inline {
				h.creds = func(c *berthv1.NodeCredentials) { c.BundleChecked, c.Bundle = true, sb }
			} else {
				h.bundles.get = func(context.Context) (*berthv1.GetBundleResponse, error) {
					return &berthv1.GetBundleResponse{Bundle: sb}, nil
				}
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkApplied(t, h.cfg.Root, testFiles)
			checkCredentialFiles(t, h.harness)
			if calls := h.bundles.Calls(); !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("bundle store calls = %v, want %v", calls, tt.wantCalls)
			}
			h.checkNodePeers(t)
			got := h.jsonResult(t)
			want := map[string]any{
				"node_id": nodeID, "status": "approved", "action": "resumed",
				"bundle": "applied", "bundle_source": tt.wantSource, "bundle_state": "approved",
				"bundle_version": float64(7), "files_applied": float64(2), "root": h.cfg.Root,
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			if n, _ := h.clock.Slept(); n != 0 {
				t.Errorf("slept %d times", n)
			}
		})
	}
}

func TestBootWithoutBundle(t *testing.T) {
	tests := []struct {
		name       string
		creds      func(*berthv1.NodeCredentials)
		output     Output
		wantBundle string
		wantCalls  []string
		wantText   string
	}{
		{
			name:       "inline none",
			creds:      func(c *berthv1.NodeCredentials) { c.BundleChecked = true },
			output:     OutputJSON,
			wantBundle: BundleNone,
		},
		{
			name:       "store has none",
			output:     OutputJSON,
			wantBundle: BundleNone,
			wantCalls:  []string{"GetBundle"},
		},
		{
			name:       "no bundle store known",
			creds:      func(c *berthv1.NodeCredentials) { c.Endpoints = nil },
			output:     OutputJSON,
			wantBundle: BundleUnchecked,
		},
		{
			name:      "text",
			output:    OutputText,
			wantCalls: []string{"GetBundle"},
			wantText:  "\nno bundle\n",
		},
		{
			name:      "text, no bundle store known",
			creds:     func(c *berthv1.NodeCredentials) { c.Endpoints = nil },
			output:    OutputText,
			wantText:  "\nno bundle store known; bundle not checked\n",
			wantCalls: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBundleHarness(t, false)
			h.creds = tt.creds
			h.cfg.Output = tt.output
			err := h.run(t)
			if err != nil || ExitCode(err) != ExitOK {
				t.Fatalf("Run: %v", err)
			}
			if calls := h.bundles.Calls(); !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("bundle store calls = %v, want %v", calls, tt.wantCalls)
			}
			checkEmpty(t, h.cfg.Root)
			if tt.output == OutputText {
				if !strings.HasPrefix(h.stdout.String(), "node n-0001 approved") || !strings.HasSuffix(h.stdout.String(), tt.wantText) {
					t.Errorf("stdout = %q, want it to end in %q", h.stdout.String(), tt.wantText)
				}
				return
			}
			got := h.jsonResult(t)
			for k, v := range map[string]any{"bundle": tt.wantBundle, "bundle_version": float64(0), "files_applied": float64(0)} {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			for _, k := range []string{"bundle_source", "bundle_state", "root"} {
				if _, ok := got[k]; ok {
					t.Errorf("%s set without a bundle: %v", k, got)
				}
			}
		})
	}
}

// configureScript writes two files into the staging directory, checking
// the environment it was promised, and talks on both streams.
const configureScript = `set -e
test "$1" = "$BERTH_STAGING_DIR"
test -z "${BERTH_TOKEN:-}"
test "$(stat -c %a "$1")" = 700
test "$PWD" = "$1"
mkdir -p "$1/etc/app"
printf 'node=%s host=%s\n' "$BERTH_NODE_ID" "$BERTH_HOSTNAME" > "$1/etc/app/node.conf"
chmod 0640 "$1/etc/app/node.conf"
printf '#!/bin/sh\necho hello\n' > "$1/hello"
chmod 0755 "$1/hello"
echo "configured $BERTH_NODE_ID"
echo "a warning" >&2`

var configuredFiles = []bundle.File{
	{Path: "etc/app/node.conf", Mode: 0o640, Content: []byte("node=n-0001 host=node-1\n")},
	{Path: "hello", Mode: 0o755, Content: []byte("#!/bin/sh\necho hello\n")},
}

func TestBootConfigures(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		inline    bool // the registration service checked: no GetBundle
		state     berthv1.BundleState
		wantFiles []bundle.File
		wantCalls []string
		wantState string
	}{
		{"store has no bundle", configureScript, false, berthv1.BundleState_BUNDLE_STATE_APPROVED, configuredFiles, []string{"GetBundle", "GetBundleVersions", "PutBundle"}, BundleStateApproved},
		{"inline none", configureScript, true, berthv1.BundleState_BUNDLE_STATE_APPROVED, configuredFiles, []string{"GetBundleVersions", "PutBundle"}, BundleStateApproved},
		{"held for approval", configureScript, false, berthv1.BundleState_BUNDLE_STATE_PENDING, configuredFiles, []string{"GetBundle", "GetBundleVersions", "PutBundle"}, BundleStatePending},
		{"command writes nothing", `echo "configured $BERTH_NODE_ID"; echo "a warning" >&2`, false, berthv1.BundleState_BUNDLE_STATE_APPROVED, nil, []string{"GetBundle", "GetBundleVersions", "PutBundle"}, BundleStateApproved},
	}
	// The bootstrap token is none of the command's business.
	t.Setenv("BERTH_TOKEN", "tok1.secret")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBundleHarness(t, false)
			h.cfg.Configure = tt.script
			if tt.inline {
				h.creds = func(c *berthv1.NodeCredentials) { c.BundleChecked = true }
			}
			// The store has used versions up to 3 (a reset, say).
			h.bundles.versions = func(context.Context) (*berthv1.GetBundleVersionsResponse, error) {
				return &berthv1.GetBundleVersionsResponse{Next: 4}, nil
			}
			h.bundles.put = func(_ context.Context, r *berthv1.PutBundleRequest) (*berthv1.PutBundleResponse, error) {
				return &berthv1.PutBundleResponse{Info: &berthv1.BundleInfo{NodeId: nodeID, Version: 4, State: tt.state, Sha256: bundle.Digest(r.GetSealed())}}, nil
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v\nlogs:\n%s", err, h.logs.String())
			}
			if calls := h.bundles.Calls(); !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("bundle store calls = %v, want %v", calls, tt.wantCalls)
			}
			h.checkNodePeers(t)

			// The store saw only ciphertext, which the node's key opens to
			// the staged files.
			puts := h.bundles.Puts()
			if len(puts) != 1 {
				t.Fatalf("%d uploads, want 1", len(puts))
			}
			up := puts[0]
			if up.GetExpectedVersion() != 0 || up.GetRequireApproval() {
				t.Errorf("upload expected_version = %d, require_approval = %v; want 0, false", up.GetExpectedVersion(), up.GetRequireApproval())
			}
			for _, f := range tt.wantFiles {
				if bytes.Contains(up.GetSealed(), f.Content) || bytes.Contains(up.GetSealed(), []byte(f.Path)) {
					t.Errorf("the upload holds %s in clear text", f.Path)
				}
			}
			// Signed with the node's identity key, for the next version.
			v := bundle.Verifier{TrustDomain: testTrustDomain, NodeID: nodeID, Version: 4, NodeKey: pubOf(h.cfg.Keys)}
			opened, err := bundle.Open(h.cfg.Keys.BundleKey(), up.GetSealed(), v)
			if err != nil {
				t.Fatalf("the upload does not open with the node's key: %v", err)
			}
			if !slices.EqualFunc(opened.Files, tt.wantFiles, sameFile) || opened.SignedBy.String() != "node" {
				t.Errorf("the upload opens to %v signed by %v, want %v signed by the node", opened.Files, opened.SignedBy, tt.wantFiles)
			}
			v.NodeID = "n-0002"
			if _, err := bundle.Open(h.cfg.Keys.BundleKey(), up.GetSealed(), v); !errors.Is(err, bundle.ErrWrongTarget) {
				t.Errorf("the upload opens for another node: %v", err)
			}

			checkApplied(t, h.cfg.Root, tt.wantFiles)
			got := h.jsonResult(t)
			want := map[string]any{
				"bundle": "applied", "bundle_source": "configured", "bundle_state": tt.wantState,
				"bundle_version": float64(4), "files_applied": float64(len(tt.wantFiles)),
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			// The command's output went to the log, not to stdout.
			logs := h.logs.String()
			for _, want := range []string{`stream=stdout line="configured n-0001"`, `stream=stderr line="a warning"`} {
				if !strings.Contains(logs, want) {
					t.Errorf("logs do not hold %s:\n%s", want, logs)
				}
			}
			if strings.Contains(h.stdout.String(), "configured n-0001") {
				t.Error("the command's output reached stdout")
			}
			// The staging directory is gone.
			_, after, ok := strings.Cut(logs, "staging_dir=")
			staging, _, _ := strings.Cut(after, "\n")
			if !ok || !strings.Contains(staging, "berth-configure-") {
				t.Fatalf("no staging_dir in the logs:\n%s", logs)
			}
			if _, err := os.Stat(staging); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("staging directory %s left behind: %v", staging, err)
			}
		})
	}
}

func TestBootConfigureRefused(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		setup   func(t *testing.T, h *bundleHarness)
		wantErr string
	}{
		{
			name:    "command fails",
			script:  `echo partial > "$1/x"; echo "cannot reach the CMDB" >&2; exit 3`,
			wantErr: "configure command failed with exit status 3; nothing was uploaded",
		},
		{
			name:    "command leaves a symlink",
			script:  `ln -s /etc/shadow "$1/shadow"`,
			wantErr: "shadow is a symlink; only regular files can go into a bundle",
		},
		{
			name:    "command leaves a named pipe",
			script:  `mkfifo "$1/pipe"`,
			wantErr: "pipe is a named pipe",
		},
		{
			name:   "files cannot be applied under the root",
			script: `mkdir "$1/etc"; echo x > "$1/etc/passwd"`,
			setup: func(t *testing.T, h *bundleHarness) {
				symlink(t, t.TempDir(), filepath.Join(h.cfg.Root, "etc"))
			},
			wantErr: `bundle file "etc/passwd" would be written through the symlink "etc"`,
		},
		{
			name:   "no bundle store to upload to",
			script: `echo x > "$1/x"`,
			setup: func(t *testing.T, h *bundleHarness) {
				h.creds = func(c *berthv1.NodeCredentials) { c.BundleChecked, c.Endpoints = true, nil }
			},
			wantErr: "--configure needs the bundle store",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBundleHarness(t, false)
			h.cfg.Configure = tt.script
			if tt.setup != nil {
				tt.setup(t, h)
			}
			before := snapshot(t, h.cfg.Root)
			err := h.run(t)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if ExitCode(err) != ExitFailure {
				t.Errorf("exit = %d, want %d", ExitCode(err), ExitFailure)
			}
			if puts := h.bundles.Puts(); len(puts) != 0 {
				t.Errorf("%d uploads, want none", len(puts))
			}
			checkUnchanged(t, "root", before, snapshot(t, h.cfg.Root))
			if h.stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", h.stdout.String())
			}
		})
	}
}

func TestBootConfigureUploadConflict(t *testing.T) {
	engineFiles := []bundle.File{{Path: "etc/engine.conf", Mode: 0o600, Content: []byte("from the engine\n")}}
	tests := []struct {
		name       string
		current    bool // the store holds a version when asked again
		wantFiles  []bundle.File
		wantSource string
		wantState  string
		wantVer    float64
	}{
		{"the engine supplied a bundle meanwhile", true, engineFiles, BundleSourceFetched, BundleStateApproved, 2},
		{"an earlier upload waits for approval", false, configuredFiles, BundleSourceConfigured, BundleStatePending, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBundleHarness(t, false)
			h.cfg.Configure = configureScript
			var gets atomic.Int32
			engine := sealedBundle(2, berthv1.BundleState_BUNDLE_STATE_APPROVED, h.seal(t, 2, engineFiles))
			h.bundles.get = func(context.Context) (*berthv1.GetBundleResponse, error) {
				if gets.Add(1) == 1 || !tt.current {
					return nil, status.Error(codes.NotFound, "no bundle")
				}
				return &berthv1.GetBundleResponse{Bundle: engine}, nil
			}
			var putDone atomic.Bool
			h.bundles.put = func(context.Context, *berthv1.PutBundleRequest) (*berthv1.PutBundleResponse, error) {
				putDone.Store(true)
				return nil, status.Error(codes.FailedPrecondition, "an upload of this node's bundle is waiting for approval")
			}
			// Asked again after the refused upload, the store says why.
			h.bundles.versions = func(context.Context) (*berthv1.GetBundleVersionsResponse, error) {
				switch {
				case !putDone.Load():
					return &berthv1.GetBundleVersionsResponse{Next: 1}, nil
				case tt.current:
					return &berthv1.GetBundleVersionsResponse{Current: 2, Next: 3}, nil
				}
				return &berthv1.GetBundleVersionsResponse{Pending: 1, Next: 2}, nil
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if calls := h.bundles.Calls(); !slices.Equal(calls, []string{"GetBundle", "GetBundleVersions", "PutBundle", "GetBundleVersions", "GetBundle"}) {
				t.Errorf("bundle store calls = %v", calls)
			}
			checkApplied(t, h.cfg.Root, tt.wantFiles)
			got := h.jsonResult(t)
			for k, v := range map[string]any{"bundle_source": tt.wantSource, "bundle_state": tt.wantState, "bundle_version": tt.wantVer} {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
		})
	}
}

func TestBootBundleStoreDownThenUp(t *testing.T) {
	tests := []struct {
		name      string
		down      bool // the port refuses connections until the second backoff
		configure bool // no bundle: --configure makes and uploads one
		inline    bool // the registration service checked: no GetBundle
		getErrs   []error
		putErrs   []error
		wantSleep int
		wantCalls []string
	}{
		{name: "fetch, connection refused", down: true, wantSleep: 2, wantCalls: []string{"GetBundle"}},
		{
			name:      "fetch, Unavailable and DeadlineExceeded",
			getErrs:   []error{status.Error(codes.Unavailable, "store is down"), status.Error(codes.DeadlineExceeded, "slow")},
			wantSleep: 2, wantCalls: []string{"GetBundle", "GetBundle", "GetBundle"},
		},
		{name: "upload, connection refused", down: true, configure: true, inline: true, wantSleep: 2, wantCalls: []string{"GetBundleVersions", "PutBundle"}},
		{
			name: "upload, Unavailable", configure: true,
			putErrs:   []error{status.Error(codes.Unavailable, "store is down")},
			wantSleep: 1, wantCalls: []string{"GetBundle", "GetBundleVersions", "PutBundle", "PutBundle"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBundleHarness(t, tt.down)
			sb := sealedBundle(3, berthv1.BundleState_BUNDLE_STATE_APPROVED, h.seal(t, 3, testFiles))
			want := testFiles
			if tt.configure {
				h.cfg.Configure = configureScript
				want = configuredFiles
			}
			if tt.inline {
				h.creds = func(c *berthv1.NodeCredentials) { c.BundleChecked = true }
			}
			var gets, puts atomic.Int32
			h.bundles.get = func(context.Context) (*berthv1.GetBundleResponse, error) {
				if n := int(gets.Add(1)); n <= len(tt.getErrs) {
					return nil, tt.getErrs[n-1]
				}
				if tt.configure {
					return nil, status.Error(codes.NotFound, "no bundle")
				}
				return &berthv1.GetBundleResponse{Bundle: sb}, nil
			}
			h.bundles.put = func(context.Context, *berthv1.PutBundleRequest) (*berthv1.PutBundleResponse, error) {
				if n := int(puts.Add(1)); n <= len(tt.putErrs) {
					return nil, tt.putErrs[n-1]
				}
				return &berthv1.PutBundleResponse{Info: &berthv1.BundleInfo{Version: 1, State: berthv1.BundleState_BUNDLE_STATE_APPROVED}}, nil
			}
			h.clock.onSleep = func(n int, _ time.Duration) error {
				if tt.down && n == 2 {
					return h.startBundles(t)
				}
				return nil
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkApplied(t, h.cfg.Root, want)
			// Full jitter drawn at its ceiling: 250ms, then 500ms.
			if want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond}[:tt.wantSleep]; !slices.Equal(h.clock.sleeps, want) {
				t.Errorf("sleeps = %v, want %v", h.clock.sleeps, want)
			}
			if calls := h.bundles.Calls(); !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("bundle store calls = %v, want %v", calls, tt.wantCalls)
			}
		})
	}
}

func TestBootBundleStoreDownPastWait(t *testing.T) {
	tests := []struct {
		name    string
		down    bool
		get     error
		wantErr string
	}{
		{"connection refused", true, nil, "refused"},
		{"Unavailable", false, status.Error(codes.Unavailable, "bundle store database is down"), "bundle store database is down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBundleHarness(t, tt.down)
			h.bundles.get = func(context.Context) (*berthv1.GetBundleResponse, error) { return nil, tt.get }
			h.cfg.Wait = 20 * time.Second
			err := h.run(t)
			if err == nil || !strings.Contains(err.Error(), "bundle store "+h.bundlesAddr+" unreachable for 20s") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want the bundle store unreachable: %s", err, tt.wantErr)
			}
			if ExitCode(err) != ExitFailure {
				t.Errorf("exit = %d", ExitCode(err))
			}
			if _, total := h.clock.Slept(); total != 20*time.Second {
				t.Errorf("waited %s, want exactly --wait (20s)", total)
			}
			checkEmpty(t, h.cfg.Root)
			if h.stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", h.stdout.String())
			}
		})
	}
}

// TestBootBundleDoesNotApply serves bundles the agent must refuse, each
// for its reason: the node keeps the files it had, and the error says why.
func TestBootBundleDoesNotApply(t *testing.T) {
	other, err := keys.NewSeed(bytes.Repeat([]byte("another node's seed "), 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	adminTD := "spiffe://" + testTrustDomain + "/admin/"
	tests := []struct {
		name    string
		sealed  func(t *testing.T, h *bundleHarness) []byte
		setup   func(t *testing.T, h *bundleHarness)
		wantErr string
	}{
		{
			name: "tampered ciphertext",
			sealed: func(t *testing.T, h *bundleHarness) []byte {
				b := h.seal(t, 5, testFiles)
				b[bundle.HeaderSize+100] ^= 1
				return b
			},
			wantErr: "bundle version 5 refused, nothing applied (the node's files are as they were): open bundle: bundle signature does not verify",
		},
		{
			name: "tampered signature",
			sealed: func(t *testing.T, h *bundleHarness) []byte {
				b := h.seal(t, 5, testFiles)
				b[len(b)-1] ^= 1
				return b
			},
			wantErr: "bundle signature does not verify",
		},
		{
			name:    "unsigned (format version 1)",
			sealed:  func(t *testing.T, h *bundleHarness) []byte { return unsigned(t, h.seal(t, 5, testFiles)) },
			wantErr: "bundle version 5 refused, nothing applied (the node's files are as they were): open bundle: bundle is unsigned (format version 1); re-put it",
		},
		{
			name: "admin-signed for another node",
			sealed: func(t *testing.T, h *bundleHarness) []byte {
				return sealTo(t, h.cfg.Keys, "n-0002", 5, testFiles, h.pki.adminSigner(t, testTrustDomain))
			},
			wantErr: "bundle is signed for another node: signed for node n-0002, not n-0001",
		},
		{
			name:    "an older version replayed",
			sealed:  func(t *testing.T, h *bundleHarness) []byte { return h.seal(t, 4, testFiles) },
			wantErr: "bundle is signed for another version: signed for version 4, served as version 5",
		},
		{
			name: "admin of another trust domain",
			sealed: func(t *testing.T, h *bundleHarness) []byte {
				return sealTo(t, h.cfg.Keys, nodeID, 5, testFiles, h.pki.adminSigner(t, "other.test"))
			},
			wantErr: `signed in trust domain "other.test", not "berth.test"`,
		},
		{
			name: "admin of another deployment",
			sealed: func(t *testing.T, h *bundleHarness) []byte {
				return sealTo(t, h.cfg.Keys, nodeID, 5, testFiles, newPKI(t).adminSigner(t, testTrustDomain))
			},
			wantErr: "bundle signer is not trusted: " + adminTD + "ops does not chain to the pinned root",
		},
		{
			name: "a node certificate as the signer",
			sealed: func(t *testing.T, h *bundleHarness) []byte {
				leaf, _ := h.pki.leafFor(t, "spiffe://"+testTrustDomain+"/node/n-0002")
				return withChain(t, h.seal(t, 5, testFiles), leaf, h.pki.inter)
			},
			wantErr: "spiffe://berth.test/node/n-0002 is not an admin identity",
		},
		{
			name: "a service certificate as the signer",
			sealed: func(t *testing.T, h *bundleHarness) []byte {
				leaf, _ := h.pki.leafFor(t, "spiffe://"+testTrustDomain+"/service/bundles")
				return withChain(t, h.seal(t, 5, testFiles), leaf, h.pki.inter)
			},
			wantErr: "spiffe://berth.test/service/bundles is not an admin identity",
		},
		{
			name: "self-signed by another key",
			sealed: func(t *testing.T, h *bundleHarness) []byte {
				s, err := bundle.NewNodeSigner(testTrustDomain, newKey(t))
				if err != nil {
					t.Fatal(err)
				}
				return sealTo(t, h.cfg.Keys, nodeID, 5, testFiles, s)
			},
			wantErr: "a node self-signature that this node's identity key did not make",
		},
		{
			name: "sealed to another key",
			sealed: func(t *testing.T, h *bundleHarness) []byte {
				return sealTo(t, other, nodeID, 5, testFiles, h.pki.adminSigner(t, testTrustDomain))
			},
			wantErr: "open bundle: bundle does not open with this key for this node",
		},
		{
			name:    "not a bundle",
			sealed:  func(*testing.T, *bundleHarness) []byte { return []byte("etc/passwd in clear text") },
			wantErr: "bundle version 5 refused, nothing applied (the node's files are as they were): open bundle: not a berth bundle",
		},
		{
			name:   "would write through a symlink in the root",
			sealed: func(t *testing.T, h *bundleHarness) []byte { return h.seal(t, 5, testFiles) },
			setup: func(t *testing.T, h *bundleHarness) {
				symlink(t, t.TempDir(), filepath.Join(h.cfg.Root, "etc"))
			},
			wantErr: `bundle version 5: refusing to apply the bundle under`,
		},
	}
	for _, tt := range tests {
		for _, inline := range []bool{true, false} {
			name := tt.name + ", fetched"
			if inline {
				name = tt.name + ", inline"
			}
			t.Run(name, func(t *testing.T) {
				h := newBundleHarness(t, false)
				sb := sealedBundle(5, berthv1.BundleState_BUNDLE_STATE_APPROVED, tt.sealed(t, h))
				if inline {
					h.creds = func(c *berthv1.NodeCredentials) { c.BundleChecked, c.Bundle = true, sb }
				} else {
					h.bundles.get = func(context.Context) (*berthv1.GetBundleResponse, error) {
						return &berthv1.GetBundleResponse{Bundle: sb}, nil
					}
				}
				if tt.setup != nil {
					tt.setup(t, h)
				} else {
					// The node's state before: a file an earlier boot wrote.
					if err := os.WriteFile(filepath.Join(h.cfg.Root, "motd"), []byte("before\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				before := snapshot(t, h.cfg.Root)
				err := h.run(t)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if ExitCode(err) != ExitFailure {
					t.Errorf("exit = %d", ExitCode(err))
				}
				checkUnchanged(t, "root", before, snapshot(t, h.cfg.Root))
				if n, _ := h.clock.Slept(); n != 0 {
					t.Errorf("retried %d times", n)
				}
			})
		}
	}
}

func TestBootBundleStoreUntrusted(t *testing.T) {
	h := newBundleHarness(t, true)
	// A store with a certificate from another deployment.
	other := newPKI(t)
	lis, err := net.Listen("tcp", h.bundlesAddr)
	if err != nil {
		t.Fatal(err)
	}
	serveGRPC(t, h.pki.root, other.servers[mtls.ServiceBundles], lis, func(s *grpc.Server) { berthv1.RegisterBundleServiceServer(s, h.bundles) })
	err = h.run(t)
	if err == nil || !strings.Contains(err.Error(), "bundle store is not trusted") {
		t.Fatalf("err = %v, want an untrusted bundle store", err)
	}
	if n, _ := h.clock.Slept(); n != 0 {
		t.Errorf("retried an untrusted store %d times", n)
	}
	if calls := h.bundles.Calls(); len(calls) != 0 {
		t.Errorf("store saw calls %v", calls)
	}
}

func TestResultBundleJSON(t *testing.T) {
	r := &Result{NodeID: "n-1", Status: "approved"}
	bundleOutcome{bundle: BundleApplied, source: BundleSourceConfigured, state: BundleStatePending, version: 4, files: 3}.fill(r, "/sysroot")
	var buf bytes.Buffer
	if err := r.Write(&buf, OutputJSON); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{
		"bundle": "applied", "bundle_source": "configured", "bundle_state": "pending",
		"bundle_version": float64(4), "files_applied": float64(3), "root": "/sysroot",
	} {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	buf.Reset()
	if err := r.Write(&buf, OutputText); err != nil {
		t.Fatal(err)
	}
	if want := "bundle version 4 applied (configured, upload pending approval): 3 files under /sysroot\n"; !strings.HasSuffix(buf.String(), want) {
		t.Errorf("text = %q, want it to end in %q", buf.String(), want)
	}
}
