package cli_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/cli"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// bundleNodeID is the node the bundle tests write for.
const bundleNodeID = "n-7f3a9c"

// fakeDigest stands for a sealed bundle's SHA-256 in the fake's answers:
// sealing is randomised, so the real digest would change every run.
const fakeSize = 2345

const fakeDigest = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"

// nodeKey is a node's bundle key pair, made at run time.
func nodeKey(t *testing.T) hpke.PrivateKey {
	t.Helper()
	k, err := hpke.MLKEM768X25519().GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keyedNode is nodeApproved with key's public half as its bundle key.
func keyedNode(key hpke.PrivateKey) *berthv1.Node {
	n := nodeApproved()
	n.BundleKey = &berthv1.BundleKey{KemId: uint32(key.KEM().ID()), PublicKey: key.PublicKey().Bytes()}
	return n
}

// Sample bundle versions, at fixed offsets from testNow.
func bundleV(version int64, state berthv1.BundleState, author string, age time.Duration) *berthv1.BundleInfo {
	b := &berthv1.BundleInfo{
		NodeId:    bundleNodeID,
		Version:   version,
		State:     state,
		Size:      1800 + version,
		Sha256:    fakeDigest[:60] + strings.Repeat(string(rune('0'+version)), 4),
		KemId:     0x647a,
		Author:    author,
		CreatedAt: ts(testNow.Add(-age)),
	}
	if state == berthv1.BundleState_BUNDLE_STATE_RESET {
		b.Size, b.Sha256, b.KemId = 0, "", 0
	}
	return b
}

func currentV3() *berthv1.BundleInfo {
	b := bundleV(3, berthv1.BundleState_BUNDLE_STATE_APPROVED, "admin:admin", 26*time.Hour)
	b.SignedBy = "spiffe://" + trustDomain + "/admin/admin"
	return b
}

func pendingV4() *berthv1.BundleInfo {
	b := bundleV(4, berthv1.BundleState_BUNDLE_STATE_PENDING, "node:"+bundleNodeID, 5*time.Minute)
	b.SignedBy = "node"
	return b
}

func history() []*berthv1.BundleInfo {
	return []*berthv1.BundleInfo{
		pendingV4(),
		currentV3(),
		bundleV(2, berthv1.BundleState_BUNDLE_STATE_RESET, "admin:ops", 3*24*time.Hour),
		bundleV(1, berthv1.BundleState_BUNDLE_STATE_SUPERSEDED, "node:"+bundleNodeID, 9*24*time.Hour),
	}
}

// bundleFakes returns a NodeAdminService that knows node and a
// BundleAdminService whose current version is current (nil: none) and
// which stores every put as the version after the expected one.
func bundleFakes(node *berthv1.Node, current *berthv1.BundleInfo) (*fakeAdmin, *fakeBundles) {
	admin := &fakeAdmin{getNode: func(_ context.Context, r *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
		if r.GetId() != node.GetId() {
			return nil, status.Error(codes.NotFound, "node not found")
		}
		return &berthv1.GetNodeResponse{Node: node}, nil
	}}
	bundles := &fakeBundles{
		getBundleInfo: func(context.Context, *berthv1.GetBundleInfoRequest) (*berthv1.GetBundleInfoResponse, error) {
			if current == nil {
				return nil, status.Error(codes.NotFound, "no bundle")
			}
			return &berthv1.GetBundleInfoResponse{Current: current}, nil
		},
		listBundleHistory: func(context.Context, *berthv1.ListBundleHistoryRequest) (*berthv1.ListBundleHistoryResponse, error) {
			if current == nil {
				return &berthv1.ListBundleHistoryResponse{NextVersion: 1}, nil
			}
			return &berthv1.ListBundleHistoryResponse{Versions: []*berthv1.BundleInfo{current}, NextVersion: current.GetVersion() + 1}, nil
		},
		putBundle: func(_ context.Context, r *berthv1.BundleAdminServicePutBundleRequest) (*berthv1.BundleAdminServicePutBundleResponse, error) {
			p, err := bundle.Parse(r.GetSealed())
			if err != nil || p.Signature == nil {
				return nil, status.Error(codes.InvalidArgument, "sealed must be a bundle sealed and signed in berth's bundle format, version 2")
			}
			return &berthv1.BundleAdminServicePutBundleResponse{Info: &berthv1.BundleInfo{
				NodeId:    r.GetNodeId(),
				Version:   p.Signature.Version,
				State:     berthv1.BundleState_BUNDLE_STATE_APPROVED,
				Size:      fakeSize, // signatures vary in length
				Sha256:    fakeDigest,
				KemId:     uint32(p.Header.KEM),
				Author:    "admin:admin",
				CreatedAt: ts(testNow),
				SignedBy:  p.SignedBy(),
			}}, nil
		},
	}
	return admin, bundles
}

// writeTree writes files under a new directory with exactly their modes,
// whatever the umask, and returns the directory.
func writeTree(t *testing.T, files []bundle.File) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sampleFiles are a node's configuration files, with contents long and
// distinctive enough to be found if they leaked into a request.
func sampleFiles() []bundle.File {
	return []bundle.File{
		{Path: "etc/berth/secret.token", Mode: 0o600, Content: []byte("PLAINTEXT-SECRET-tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0\n")},
		{Path: "etc/hostname", Mode: 0o644, Content: []byte("hv01.rack1.example.internal\n")},
		{Path: "usr/local/bin/firstboot.sh", Mode: 0o755, Content: []byte("#!/bin/sh\necho PLAINTEXT-SCRIPT-configure-the-hypervisor-now\n")},
	}
}

// putRequest returns the one PutBundle request the fake received.
func putRequest(t *testing.T, f *fakeBundles) *berthv1.BundleAdminServicePutBundleRequest {
	t.Helper()
	for _, c := range f.received() {
		if c.method == "PutBundle" {
			return c.req.(*berthv1.BundleAdminServicePutBundleRequest)
		}
	}
	t.Fatalf("no PutBundle request; received %v", f.received())
	return nil
}

// nodeOpens opens a bundle as the node would, served as version v: signed
// by the admin credential for it, for v.
func nodeOpens(t *testing.T, pki *testPKI, key hpke.PrivateKey, v int64, sealed []byte) *bundle.Opened {
	t.Helper()
	got, err := bundle.Open(key, sealed, bundle.Verifier{TrustDomain: trustDomain, NodeID: bundleNodeID, Version: v, Roots: pki.roots})
	if err != nil {
		t.Fatalf("the node cannot open the uploaded bundle as version %d: %v", v, err)
	}
	if want := "spiffe://" + trustDomain + "/admin/admin"; got.SignedBy.String() != want {
		t.Errorf("signed by %v, want %s", got.SignedBy, want)
	}
	return got
}

// checkSealed opens the uploaded bundle as the node, served as version v,
// compares its files with want, and checks that nothing of the plaintext
// travelled in clear.
func checkSealed(t *testing.T, pki *testPKI, key hpke.PrivateKey, v int64, req *berthv1.BundleAdminServicePutBundleRequest, want []bundle.File) {
	t.Helper()
	got := nodeOpens(t, pki, key, v, req.GetSealed()).Files
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files in the uploaded bundle (-want +got):\n%s", diff)
	}
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range want {
		for _, secret := range [][]byte{f.Content, []byte(f.Path), []byte(filepath.Base(f.Path))} {
			if bytes.Contains(wire, bytes.TrimSpace(secret)) {
				t.Errorf("the request holds %q in clear", secret)
			}
		}
	}
}

func TestBundlesPut(t *testing.T) {
	pki := newTestPKI(t)
	key := nodeKey(t)
	src := writeTree(t, sampleFiles())
	local := func(p string) string { return filepath.Join(src, filepath.FromSlash(p)) }
	fileArgs := []string{
		"--file", local("etc/berth/secret.token") + "=etc/berth/secret.token",
		"--file", local("etc/hostname") + "=etc/hostname",
		"--file", local("usr/local/bin/firstboot.sh") + "=usr/local/bin/firstboot.sh",
	}
	for _, tc := range []struct {
		name   string
		args   []string
		golden string
	}{
		{"files table", append([]string{"bundles", "put", bundleNodeID}, fileArgs...), "bundles_put_table"},
		{"files json", append(append([]string{"-o", "json", "bundles", "put"}, fileArgs...), bundleNodeID), "bundles_put_json"},
		{"dir table", []string{"bundles", "put", bundleNodeID, "--dir", src}, "bundles_put_table"},
		{"dir with trailing slash", []string{"bundles", "put", "--dir", src + "/", bundleNodeID, "-o", "json"}, "bundles_put_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin, bundles := bundleFakes(keyedNode(key), currentV3())
			r := startAll(t, pki, admin, bundles).run(tc.args...)
			checkOK(t, r)
			checkGolden(t, tc.golden, r.stdout)
			checkRequests(t, admin, &berthv1.GetNodeRequest{Id: bundleNodeID})
			req := putRequest(t, bundles)
			checkRequests(t, bundles, &berthv1.ListBundleHistoryRequest{NodeId: bundleNodeID},
				&berthv1.BundleAdminServicePutBundleRequest{NodeId: bundleNodeID, ExpectedVersion: 3, Sealed: req.GetSealed()})
			checkSealed(t, pki, key, 4, req, sampleFiles())
		})
	}
}

func TestBundlesPutFileOptions(t *testing.T) {
	pki := newTestPKI(t)
	key := nodeKey(t)
	src := writeTree(t, []bundle.File{
		{Path: "hostname", Mode: 0o664, Content: []byte("hv01\n")},
		{Path: "run.sh", Mode: 0o750, Content: []byte("#!/bin/sh\n")},
		{Path: "key=value.conf", Mode: 0o640, Content: []byte("a=b\n")},
		{Path: "empty", Mode: 0o400, Content: []byte{}},
	})
	local := func(p string) string { return filepath.Join(src, p) }
	for _, tc := range []struct {
		name string
		args []string
		want []bundle.File
	}{
		{"destination defaults to the base name", []string{"--file", local("hostname")},
			[]bundle.File{{Path: "hostname", Mode: 0o664, Content: []byte("hv01\n")}}},
		{"destination after the first =", []string{"--file", local("hostname") + "=etc/a=b/hostname"},
			[]bundle.File{{Path: "etc/a=b/hostname", Mode: 0o664, Content: []byte("hv01\n")}}},
		{"modes kept by default", []string{"--file", local("run.sh") + "=opt/run.sh", "--file", local("empty")},
			[]bundle.File{{Path: "empty", Mode: 0o400, Content: []byte{}}, {Path: "opt/run.sh", Mode: 0o750, Content: []byte("#!/bin/sh\n")}}},
		{"--mode-from-file given", []string{"--mode-from-file", "--file", local("run.sh")},
			[]bundle.File{{Path: "run.sh", Mode: 0o750, Content: []byte("#!/bin/sh\n")}}},
		{"--mode-from-file=false", []string{"--mode-from-file=false", "--file", local("run.sh"), "--file", local("hostname"), "--file", local("empty")},
			[]bundle.File{
				{Path: "empty", Mode: 0o644, Content: []byte{}},
				{Path: "hostname", Mode: 0o644, Content: []byte("hv01\n")},
				{Path: "run.sh", Mode: 0o755, Content: []byte("#!/bin/sh\n")},
			}},
		{"owner and group", []string{"--owner", "root", "--group", "0", "--file", local("hostname") + "=etc/hostname"},
			[]bundle.File{{Path: "etc/hostname", Mode: 0o664, Owner: "root", Group: "0", Content: []byte("hv01\n")}}},
		{"dir keeps names with =", []string{"--dir", src, "--owner", "1000"},
			[]bundle.File{
				{Path: "empty", Mode: 0o400, Owner: "1000", Content: []byte{}},
				{Path: "hostname", Mode: 0o664, Owner: "1000", Content: []byte("hv01\n")},
				{Path: "key=value.conf", Mode: 0o640, Owner: "1000", Content: []byte("a=b\n")},
				{Path: "run.sh", Mode: 0o750, Owner: "1000", Content: []byte("#!/bin/sh\n")},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin, bundles := bundleFakes(keyedNode(key), nil)
			r := startAll(t, pki, admin, bundles).run(append([]string{"bundles", "put", bundleNodeID, "-o", "json"}, tc.args...)...)
			checkOK(t, r)
			got := nodeOpens(t, pki, key, 1, putRequest(t, bundles).GetSealed()).Files
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			var out map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatal(err)
			}
			if out["files"] != float64(len(tc.want)) {
				t.Errorf("files = %v, want %d", out["files"], len(tc.want))
			}
		})
	}
}

// TestBundlesPutDHKEM seals to a P-256 key, the KEM of TPM-held keys.
func TestBundlesPutDHKEM(t *testing.T) {
	key, err := hpke.DHKEM(ecdh.P256()).GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	src := writeTree(t, sampleFiles()[:1])
	admin, bundles := bundleFakes(keyedNode(key), nil)
	pki := newTestPKI(t)
	r := startAll(t, pki, admin, bundles).run("bundles", "put", bundleNodeID, "--dir", src)
	checkOK(t, r)
	checkSealed(t, pki, key, 1, putRequest(t, bundles), sampleFiles()[:1])
	if !strings.Contains(r.stdout, "KEM:      0x0010 (DHKEM(P-256))") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
}

func TestBundlesPutExpectedVersion(t *testing.T) {
	pki := newTestPKI(t)
	key := nodeKey(t)
	src := writeTree(t, sampleFiles()[1:2])
	for _, tc := range []struct {
		name    string
		current *berthv1.BundleInfo
		pending bool // history holds only a pending version
		args    []string
		// wantInfo is whether berthctl asks for the current version.
		wantInfo     bool
		wantExpected int64
	}{
		{"default is the current version", currentV3(), false, nil, true, 3},
		{"default without a bundle is 0", nil, false, nil, true, 0},
		{"default with only a pending upload is 0", nil, true, nil, true, 0},
		{"explicit", currentV3(), false, []string{"--expected-version", "7"}, false, 7},
		{"explicit 0", currentV3(), false, []string{"--expected-version=0"}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin, bundles := bundleFakes(keyedNode(key), tc.current)
			next := tc.current.GetVersion() + 1
			if tc.pending {
				next = 5
				bundles.listBundleHistory = func(context.Context, *berthv1.ListBundleHistoryRequest) (*berthv1.ListBundleHistoryResponse, error) {
					return &berthv1.ListBundleHistoryResponse{Versions: []*berthv1.BundleInfo{pendingV4()}, NextVersion: 5}, nil
				}
			}
			args := append([]string{"bundles", "put", bundleNodeID, "--dir", src, "-o", "json"}, tc.args...)
			r := startAll(t, pki, admin, bundles).run(args...)
			checkOK(t, r)
			req := putRequest(t, bundles)
			want := []proto.Message{&berthv1.BundleAdminServicePutBundleRequest{
				NodeId: bundleNodeID, ExpectedVersion: tc.wantExpected, Sealed: req.GetSealed(),
			}}
			// The next version is asked for in any case: it is what the
			// bundle is signed for.
			want = append([]proto.Message{&berthv1.ListBundleHistoryRequest{NodeId: bundleNodeID}}, want...)
			checkRequests(t, bundles, want...)
			var out map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatal(err)
			}
			if out["version"] != float64(next) {
				t.Errorf("version = %v, want %d", out["version"], next)
			}
			nodeOpens(t, pki, key, next, req.GetSealed())
		})
	}
}

// TestBundlePutJSONContract pins the field names and types of the JSON
// contract independently of the golden files, which -update rewrites.
func TestBundlePutJSONContract(t *testing.T) {
	key := nodeKey(t)
	src := writeTree(t, sampleFiles())
	admin, bundles := bundleFakes(keyedNode(key), currentV3())
	r := startAll(t, newTestPKI(t), admin, bundles).run("bundles", "put", bundleNodeID, "--dir", src, "-o", "json")
	checkOK(t, r)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"node_id":    bundleNodeID,
		"version":    float64(4),
		"state":      "approved",
		"size":       float64(fakeSize),
		"sha256":     fakeDigest,
		"kem_id":     float64(0x647a),
		"author":     "admin:admin",
		"created_at": "2026-11-21T12:00:00Z",
		"files":      float64(3),
		"signed_by":  "spiffe://" + trustDomain + "/admin/admin",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
}

func TestBundlesGet(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name   string
		resp   *berthv1.GetBundleInfoResponse
		args   []string
		golden string
	}{
		{"table", &berthv1.GetBundleInfoResponse{Current: currentV3(), Pending: pendingV4()}, nil, "bundles_get_table"},
		{"json", &berthv1.GetBundleInfoResponse{Current: currentV3(), Pending: pendingV4()}, []string{"-o", "json"}, "bundles_get_json"},
		{"current only table", &berthv1.GetBundleInfoResponse{Current: currentV3()}, nil, "bundles_get_current_table"},
		{"pending only json", &berthv1.GetBundleInfoResponse{Pending: pendingV4()}, []string{"-o", "json"}, "bundles_get_pending_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundles := &fakeBundles{getBundleInfo: func(context.Context, *berthv1.GetBundleInfoRequest) (*berthv1.GetBundleInfoResponse, error) {
				return tc.resp, nil
			}}
			r := startAll(t, pki, nil, bundles).run(append([]string{"bundles", "get", bundleNodeID}, tc.args...)...)
			checkOK(t, r)
			checkGolden(t, tc.golden, r.stdout)
			checkRequests(t, bundles, &berthv1.GetBundleInfoRequest{NodeId: bundleNodeID})
		})
	}
}

func TestBundlesGetJSONContract(t *testing.T) {
	bundles := &fakeBundles{getBundleInfo: func(context.Context, *berthv1.GetBundleInfoRequest) (*berthv1.GetBundleInfoResponse, error) {
		return &berthv1.GetBundleInfoResponse{Pending: pendingV4()}, nil
	}}
	r := startAll(t, newTestPKI(t), nil, bundles).run("bundles", "get", bundleNodeID, "-o", "json")
	checkOK(t, r)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"current": nil,
		"pending": map[string]any{
			"node_id":    bundleNodeID,
			"version":    float64(4),
			"state":      "pending",
			"size":       float64(1804),
			"sha256":     fakeDigest[:60] + "4444",
			"signed_by":  "node",
			"kem_id":     float64(0x647a),
			"author":     "node:" + bundleNodeID,
			"created_at": "2026-11-21T11:55:00Z",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
}

func TestBundlesHistory(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name     string
		versions []*berthv1.BundleInfo
		args     []string
		golden   string
		want     string
	}{
		{"table", history(), nil, "bundles_history_table", ""},
		{"json", history(), []string{"-o", "json"}, "bundles_history_json", ""},
		{"empty table", nil, nil, "", "No bundle versions for node " + bundleNodeID + ".\n"},
		{"empty json", nil, []string{"-o", "json"}, "", "[]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundles := &fakeBundles{listBundleHistory: func(context.Context, *berthv1.ListBundleHistoryRequest) (*berthv1.ListBundleHistoryResponse, error) {
				return &berthv1.ListBundleHistoryResponse{Versions: tc.versions}, nil
			}}
			r := startAll(t, pki, nil, bundles).run(append([]string{"bundles", "history", bundleNodeID}, tc.args...)...)
			checkOK(t, r)
			if tc.golden != "" {
				checkGolden(t, tc.golden, r.stdout)
			} else if r.stdout != tc.want {
				t.Errorf("stdout %q, want %q", r.stdout, tc.want)
			}
			checkRequests(t, bundles, &berthv1.ListBundleHistoryRequest{NodeId: bundleNodeID})
		})
	}
}

func TestBundlesApproveAndReset(t *testing.T) {
	pki := newTestPKI(t)
	approved := pendingV4()
	approved.State = berthv1.BundleState_BUNDLE_STATE_APPROVED
	reset := bundleV(5, berthv1.BundleState_BUNDLE_STATE_RESET, "admin:admin", 0)
	fake := func() *fakeBundles {
		return &fakeBundles{
			approveBundle: func(context.Context, *berthv1.ApproveBundleRequest) (*berthv1.ApproveBundleResponse, error) {
				return &berthv1.ApproveBundleResponse{Info: approved}, nil
			},
			resetBundle: func(context.Context, *berthv1.ResetBundleRequest) (*berthv1.ResetBundleResponse, error) {
				return &berthv1.ResetBundleResponse{Info: reset}, nil
			},
		}
	}
	for _, tc := range []struct {
		name       string
		args       []string
		wantReq    proto.Message
		wantStdout string
		wantJSON   map[string]any
	}{
		{"approve", []string{"bundles", "approve", bundleNodeID, "4"},
			&berthv1.ApproveBundleRequest{NodeId: bundleNodeID, Version: 4},
			"Approved bundle version 4 of node n-7f3a9c; state approved.\n", nil},
		{"approve json", []string{"-o", "json", "bundles", "approve", bundleNodeID, "4"},
			&berthv1.ApproveBundleRequest{NodeId: bundleNodeID, Version: 4},
			"", map[string]any{"node_id": bundleNodeID, "version": float64(4), "state": "approved"}},
		{"reset", []string{"bundles", "reset", bundleNodeID},
			&berthv1.ResetBundleRequest{NodeId: bundleNodeID},
			"Reset the bundle of node n-7f3a9c (history version 5); it configures itself again on its next boot.\n", nil},
		{"reset json", []string{"bundles", "reset", bundleNodeID, "-o", "json"},
			&berthv1.ResetBundleRequest{NodeId: bundleNodeID},
			"", map[string]any{"node_id": bundleNodeID, "version": float64(5), "state": "reset", "size": float64(0), "sha256": "", "author": "admin:admin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fake()
			r := startAll(t, pki, nil, f).run(tc.args...)
			checkOK(t, r)
			checkRequests(t, f, tc.wantReq)
			if tc.wantJSON == nil {
				if r.stdout != tc.wantStdout {
					t.Errorf("stdout %q, want %q", r.stdout, tc.wantStdout)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("stdout is not a JSON object: %v\n%s", err, r.stdout)
			}
			for k, v := range tc.wantJSON {
				if !cmp.Equal(v, got[k]) {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestBundlesUsageErrors(t *testing.T) {
	key := nodeKey(t)
	admin, bundles := bundleFakes(keyedNode(key), currentV3())
	h := startAll(t, newTestPKI(t), admin, bundles)
	src := writeTree(t, []bundle.File{
		{Path: "hostname", Mode: 0o644, Content: []byte("hv01\n")},
		{Path: "etc/hosts", Mode: 0o644, Content: []byte("127.0.0.1 localhost\n")},
	})
	hostname := filepath.Join(src, "hostname")
	empty := t.TempDir()
	withLink := writeTree(t, []bundle.File{{Path: "a", Mode: 0o644}})
	if err := os.Symlink("a", filepath.Join(withLink, "b")); err != nil {
		t.Fatal(err)
	}
	// A sparse file just over the payload limit costs no disk space.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, bundle.MaxPayload); err != nil {
		t.Fatal(err)
	}

	put := "berthctl bundles put"
	for _, tc := range []struct {
		name string
		args []string
		want string // first line of stderr
		hint string // second line: the command whose help is suggested
	}{
		{"missing bundles command", []string{"bundles"},
			"berthctl: bundles: missing command (one of: put, seal, get, history, approve, reset)", "berthctl bundles"},
		{"unknown bundles command", []string{"bundles", "show", "n"},
			`berthctl: bundles: unknown command "show" (one of: put, seal, get, history, approve, reset)`, "berthctl bundles"},
		{"put without node", []string{"bundles", "put", "--file", hostname},
			"berthctl: bundles put: missing node ID", put},
		{"put two nodes", []string{"bundles", "put", "a", "b", "--file", hostname},
			`berthctl: bundles put: unexpected argument "b"`, put},
		{"put without files", []string{"bundles", "put", bundleNodeID},
			"berthctl: bundles put: missing files: give --file PATH[=DEST] or --dir DIR", put},
		{"put with both", []string{"bundles", "put", bundleNodeID, "--file", hostname, "--dir", src},
			"berthctl: bundles put: give --file or --dir, not both", put},
		{"put dir twice", []string{"bundles", "put", bundleNodeID, "--dir", src, "--dir", src},
			`berthctl: bundles put: invalid value "` + src + `" for flag -dir: given twice`, put},
		{"put empty file flag", []string{"bundles", "put", bundleNodeID, "--file", ""},
			`berthctl: bundles put: invalid value "" for flag -file: want PATH or PATH=DEST`, put},
		{"put file without path", []string{"bundles", "put", bundleNodeID, "--file", "=etc/hostname"},
			`berthctl: bundles put: invalid value "=etc/hostname" for flag -file: want PATH or PATH=DEST`, put},
		{"put empty destination", []string{"bundles", "put", bundleNodeID, "--file", hostname + "="},
			`berthctl: bundles put: invalid value "` + hostname + `=" for flag -file: empty destination after '='`, put},
		{"put absolute destination", []string{"bundles", "put", bundleNodeID, "--file", hostname + "=/etc/hostname"},
			`berthctl: bundles put: --file ` + hostname + `=/etc/hostname: invalid bundle file: path "/etc/hostname" is absolute; paths are relative to the root the bundle is applied under`, put},
		{"put destination leaving the root", []string{"bundles", "put", bundleNodeID, "--file", hostname + "=../etc/hostname"},
			`berthctl: bundles put: --file ` + hostname + `=../etc/hostname: invalid bundle file: path "../etc/hostname" is not clean: it must not hold empty, '.' or '..' elements or end in '/'`, put},
		{"put destination as a directory", []string{"bundles", "put", bundleNodeID, "--file", hostname + "=etc/"},
			`berthctl: bundles put: --file ` + hostname + `=etc/: invalid bundle file: path "etc/" is not clean: it must not hold empty, '.' or '..' elements or end in '/'`, put},
		{"put destination with a control character", []string{"bundles", "put", bundleNodeID, "--file", hostname + "=etc/host\tname"},
			`berthctl: bundles put: --file ` + hostname + `=etc/host name: invalid bundle file: path "etc/host\tname" holds a NUL or control character`, put},
		{"put same destination twice", []string{"bundles", "put", bundleNodeID, "--file", hostname, "--file", filepath.Join(src, "etc", "hosts") + "=hostname"},
			"berthctl: bundles put: invalid bundle file: hostname appears twice", put},
		{"put file under a file", []string{"bundles", "put", bundleNodeID, "--file", hostname + "=etc", "--file", filepath.Join(src, "etc", "hosts") + "=etc/hosts"},
			"berthctl: bundles put: invalid bundle file: etc is a file and also the directory of etc/hosts", put},
		{"put a directory as a file", []string{"bundles", "put", bundleNodeID, "--file", src + "=etc"},
			"berthctl: bundles put: --file " + src + "=etc: " + src + " is a directory; bundles carry regular files only (--dir puts a directory's files)", put},
		{"put dir that is a file", []string{"bundles", "put", bundleNodeID, "--dir", hostname},
			"berthctl: bundles put: --dir " + hostname + " is not a directory", put},
		{"put empty dir", []string{"bundles", "put", bundleNodeID, "--dir", empty},
			"berthctl: bundles put: --dir " + empty + " holds no files (bundles reset removes a node's bundle)", put},
		{"put dir with a link", []string{"bundles", "put", bundleNodeID, "--dir", withLink},
			"berthctl: bundles put: --dir " + withLink + ": " + filepath.Join(withLink, "b") + " is a symbolic link; bundles carry regular files only", put},
		{"put too large", []string{"bundles", "put", bundleNodeID, "--file", big, "--file", hostname},
			"berthctl: bundles put: bundle exceeds a format limit: the 2 files add up to more than the 16777216 bytes a bundle holds", put},
		{"put bad owner", []string{"bundles", "put", bundleNodeID, "--file", hostname, "--owner", "-root"},
			`berthctl: bundles put: invalid --owner "-root": want a user name or a numeric ID`, put},
		{"put bad group", []string{"bundles", "put", bundleNodeID, "--file", hostname, "--group", "wheel group"},
			`berthctl: bundles put: invalid --group "wheel group": want a group name or a numeric ID`, put},
		{"put negative expected version", []string{"bundles", "put", bundleNodeID, "--file", hostname, "--expected-version", "-1"},
			`berthctl: bundles put: invalid value "-1" for flag -expected-version: want the version being replaced, or 0 for none`, put},
		{"put expected version not a number", []string{"bundles", "put", bundleNodeID, "--file", hostname, "--expected-version", "latest"},
			`berthctl: bundles put: invalid value "latest" for flag -expected-version: want the version being replaced, or 0 for none`, put},
		{"put bad mode-from-file", []string{"bundles", "put", bundleNodeID, "--file", hostname, "--mode-from-file=maybe"},
			`berthctl: bundles put: invalid boolean value "maybe" for -mode-from-file: parse error`, put},
		{"get without node", []string{"bundles", "get"},
			"berthctl: bundles get: missing node ID", "berthctl bundles get"},
		{"get empty node", []string{"bundles", "get", ""},
			"berthctl: bundles get: empty node ID", "berthctl bundles get"},
		{"get flag of put", []string{"bundles", "get", bundleNodeID, "--file", hostname},
			"berthctl: bundles get: unknown flag -file", "berthctl bundles get"},
		{"history without node", []string{"bundles", "history", "-o", "json"},
			"berthctl: bundles history: missing node ID", "berthctl bundles history"},
		{"history two nodes", []string{"bundles", "history", "a", "b"},
			`berthctl: bundles history: unexpected argument "b"`, "berthctl bundles history"},
		{"approve without node", []string{"bundles", "approve"},
			"berthctl: bundles approve: missing node ID", "berthctl bundles approve"},
		{"approve without version", []string{"bundles", "approve", bundleNodeID},
			"berthctl: bundles approve: missing version", "berthctl bundles approve"},
		{"approve version 0", []string{"bundles", "approve", bundleNodeID, "0"},
			`berthctl: bundles approve: invalid version "0": want a positive whole number (bundles get n-7f3a9c shows the pending one)`, "berthctl bundles approve"},
		{"approve version not a number", []string{"bundles", "approve", bundleNodeID, "v4"},
			`berthctl: bundles approve: invalid version "v4": want a positive whole number (bundles get n-7f3a9c shows the pending one)`, "berthctl bundles approve"},
		{"approve three arguments", []string{"bundles", "approve", bundleNodeID, "4", "5"},
			`berthctl: bundles approve: unexpected argument "5"`, "berthctl bundles approve"},
		{"reset without node", []string{"bundles", "reset"},
			"berthctl: bundles reset: missing node ID", "berthctl bundles reset"},
		{"reset two nodes", []string{"bundles", "reset", "a", "b"},
			`berthctl: bundles reset: unexpected argument "b"`, "berthctl bundles reset"},
		{"bad bundles server flag value", []string{"bundles", "get", bundleNodeID, "--bundles-server"},
			"berthctl: bundles get: flag needs an argument: -bundles-server", "berthctl bundles get"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run(tc.args...)
			if r.code != cli.ExitUsage {
				t.Errorf("exit %d, want %d", r.code, cli.ExitUsage)
			}
			want := tc.want + "\nRun '" + tc.hint + " -h' for usage.\n"
			if r.stderr != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
	if calls := append(admin.received(), bundles.received()...); len(calls) != 0 {
		t.Errorf("usage errors reached the server: %v", calls)
	}
}

func TestBundlesPutUnreadable(t *testing.T) {
	key := nodeKey(t)
	admin, bundles := bundleFakes(keyedNode(key), currentV3())
	h := startAll(t, newTestPKI(t), admin, bundles)
	src := writeTree(t, []bundle.File{
		{Path: "ok", Mode: 0o644, Content: []byte("x")},
		{Path: "secret", Mode: 0o000, Content: []byte("x")},
		{Path: "locked/inner", Mode: 0o644, Content: []byte("x")},
	})
	missing := filepath.Join(src, "missing")
	type readCase struct {
		name string
		args []string
		want string
	}
	cases := []readCase{
		{"missing file", []string{"--file", missing + "=etc/x"},
			"berthctl: put bundle for node n-7f3a9c: read " + missing + ": no such file or directory\n"},
		{"missing dir", []string{"--dir", missing},
			"berthctl: put bundle for node n-7f3a9c: read " + missing + ": no such file or directory\n"},
	}
	// Permissions do not stop root; these run when the tests do not run as
	// root.
	if os.Geteuid() != 0 {
		locked := filepath.Join(src, "locked")
		if err := os.Chmod(locked, 0o000); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(locked, 0o755) })
		secret := filepath.Join(src, "secret")
		cases = append(cases,
			readCase{"unreadable file", []string{"--file", filepath.Join(src, "ok"), "--file", secret},
				"berthctl: put bundle for node n-7f3a9c: read " + secret + ": permission denied\n"},
			readCase{"unreadable directory", []string{"--dir", src},
				"berthctl: put bundle for node n-7f3a9c: read " + locked + ": permission denied\n"},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run(append([]string{"bundles", "put", bundleNodeID}, tc.args...)...)
			if r.code != cli.ExitError || r.stderr != tc.want || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, stderr %q", r.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
	if calls := append(admin.received(), bundles.received()...); len(calls) != 0 {
		t.Errorf("local errors reached the server: %v", calls)
	}
}

func TestBundlesServerErrors(t *testing.T) {
	pki := newTestPKI(t)
	key := nodeKey(t)
	src := writeTree(t, sampleFiles()[1:2])
	fail := func(code codes.Code, msg string) error { return status.Error(code, msg) }
	for _, tc := range []struct {
		name  string
		setup func(a *fakeAdmin, b *fakeBundles)
		args  []string
		want  string
		// wantPut is whether the bundle was uploaded before the failure.
		wantPut bool
	}{
		{"put stale", func(_ *fakeAdmin, b *fakeBundles) {
			b.putBundle = func(context.Context, *berthv1.BundleAdminServicePutBundleRequest) (*berthv1.BundleAdminServicePutBundleResponse, error) {
				return nil, fail(codes.FailedPrecondition, "expected_version is not the current version of the bundle; get the current version and retry")
			}
		}, []string{"bundles", "put", bundleNodeID, "--dir", src, "--expected-version", "2"},
			"berthctl: put bundle for node n-7f3a9c: expected_version is not the current version of the bundle; get the current version and retry", true},
		{"put too large", func(_ *fakeAdmin, b *fakeBundles) {
			b.putBundle = func(context.Context, *berthv1.BundleAdminServicePutBundleRequest) (*berthv1.BundleAdminServicePutBundleResponse, error) {
				return nil, fail(codes.ResourceExhausted, "bundle is 1829 bytes; the limit is 1024")
			}
		}, []string{"bundles", "put", bundleNodeID, "--dir", src},
			"berthctl: put bundle for node n-7f3a9c: bundle is 1829 bytes; the limit is 1024", true},
		{"put permission denied", func(_ *fakeAdmin, b *fakeBundles) {
			b.putBundle = func(context.Context, *berthv1.BundleAdminServicePutBundleRequest) (*berthv1.BundleAdminServicePutBundleResponse, error) {
				return nil, fail(codes.PermissionDenied, "caller may not write this bundle")
			}
		}, []string{"bundles", "put", bundleNodeID, "--dir", src},
			"berthctl: put bundle for node n-7f3a9c: caller may not write this bundle", true},
		{"put unknown node", nil, []string{"bundles", "put", "n-unknown", "--dir", src},
			"berthctl: get bundle key of node n-unknown: node not found", false},
		{"put node without bundle key", func(a *fakeAdmin, _ *fakeBundles) {
			a.getNode = func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
				return &berthv1.GetNodeResponse{Node: nodeApproved()}, nil
			}
		}, []string{"bundles", "put", bundleNodeID, "--dir", src},
			"berthctl: put bundle for node n-7f3a9c: the node has no bundle key", false},
		{"put node with a bad bundle key", func(a *fakeAdmin, _ *fakeBundles) {
			n := keyedNode(key)
			n.BundleKey.PublicKey = n.BundleKey.PublicKey[:10]
			a.getNode = func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
				return &berthv1.GetNodeResponse{Node: n}, nil
			}
		}, []string{"bundles", "put", bundleNodeID, "--dir", src},
			"berthctl: put bundle for node n-7f3a9c: seal bundle: unsupported or malformed bundle key: public key does not parse for KEM 0x647a", false},
		{"put current version unavailable", func(_ *fakeAdmin, b *fakeBundles) {
			b.listBundleHistory = func(context.Context, *berthv1.ListBundleHistoryRequest) (*berthv1.ListBundleHistoryResponse, error) {
				return nil, fail(codes.Internal, "internal error")
			}
		}, []string{"bundles", "put", bundleNodeID, "--dir", src},
			"berthctl: put bundle for node n-7f3a9c: get the current version: internal error", false},
		{"get not found", func(_ *fakeAdmin, b *fakeBundles) {
			b.getBundleInfo = func(context.Context, *berthv1.GetBundleInfoRequest) (*berthv1.GetBundleInfoResponse, error) {
				return nil, fail(codes.NotFound, "no bundle")
			}
		}, []string{"bundles", "get", bundleNodeID, "-o", "json"}, "berthctl: get bundle for node n-7f3a9c: no bundle", false},
		{"get invalid node ID", func(_ *fakeAdmin, b *fakeBundles) {
			b.getBundleInfo = func(context.Context, *berthv1.GetBundleInfoRequest) (*berthv1.GetBundleInfoResponse, error) {
				return nil, fail(codes.InvalidArgument, "node_id must match ^[a-z0-9][a-z0-9-]{0,62}$")
			}
		}, []string{"bundles", "get", "N_1"}, "berthctl: get bundle for node N_1: node_id must match ^[a-z0-9][a-z0-9-]{0,62}$", false},
		{"history permission denied", func(_ *fakeAdmin, b *fakeBundles) {
			b.listBundleHistory = func(context.Context, *berthv1.ListBundleHistoryRequest) (*berthv1.ListBundleHistoryResponse, error) {
				return nil, fail(codes.PermissionDenied, "caller is not permitted to call this method")
			}
		}, []string{"bundles", "history", bundleNodeID}, "berthctl: list bundle history for node n-7f3a9c: caller is not permitted to call this method", false},
		{"approve not pending", func(_ *fakeAdmin, b *fakeBundles) {
			b.approveBundle = func(context.Context, *berthv1.ApproveBundleRequest) (*berthv1.ApproveBundleResponse, error) {
				return nil, fail(codes.FailedPrecondition, "this bundle version is not waiting for approval")
			}
		}, []string{"bundles", "approve", bundleNodeID, "3"}, "berthctl: approve bundle version 3 for node n-7f3a9c: this bundle version is not waiting for approval", false},
		{"approve not found", func(_ *fakeAdmin, b *fakeBundles) {
			b.approveBundle = func(context.Context, *berthv1.ApproveBundleRequest) (*berthv1.ApproveBundleResponse, error) {
				return nil, fail(codes.NotFound, "no such bundle version")
			}
		}, []string{"bundles", "approve", bundleNodeID, "9"}, "berthctl: approve bundle version 9 for node n-7f3a9c: no such bundle version", false},
		{"reset not found, on one line", func(_ *fakeAdmin, b *fakeBundles) {
			b.resetBundle = func(context.Context, *berthv1.ResetBundleRequest) (*berthv1.ResetBundleResponse, error) {
				return nil, fail(codes.NotFound, "no\nbundle")
			}
		}, []string{"bundles", "reset", bundleNodeID}, "berthctl: reset bundle for node n-7f3a9c: no bundle", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin, bundles := bundleFakes(keyedNode(key), currentV3())
			if tc.setup != nil {
				tc.setup(admin, bundles)
			}
			r := startAll(t, pki, admin, bundles).run(tc.args...)
			if r.code != cli.ExitError || r.stderr != tc.want+"\n" || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, stderr %q", r.code, r.stdout, r.stderr, tc.want+"\n")
			}
			put := false
			for _, c := range bundles.received() {
				put = put || c.method == "PutBundle"
			}
			if put != tc.wantPut {
				t.Errorf("bundle uploaded: %v, want %v", put, tc.wantPut)
			}
		})
	}
}

// TestBundlesServerAddress checks where bundle calls go: --bundles-server,
// else BERTH_BUNDLES_SERVER, else --server / BERTH_SERVER; and that put
// still reads the node's key from the registration service.
func TestBundlesServerAddress(t *testing.T) {
	pki := newTestPKI(t)
	key := nodeKey(t)
	src := writeTree(t, sampleFiles()[1:2])
	dead := deadAddr(t)
	listing := func() *fakeBundles {
		return &fakeBundles{listBundleHistory: func(context.Context, *berthv1.ListBundleHistoryRequest) (*berthv1.ListBundleHistoryResponse, error) {
			return &berthv1.ListBundleHistoryResponse{Versions: history()}, nil
		}}
	}
	for _, tc := range []struct {
		name string
		// env changes the registration harness's environment; args follow
		// the command. "REG" and "BUN" stand for the two servers' addresses.
		env  map[string]string
		args []string
		// wantOn is where the bundle call must land: "registration" (the
		// combined server) or "bundles" (the separate one).
		wantOn     string
		wantCode   int
		wantStderr string
	}{
		{"default is the --server address", nil, nil, "registration", cli.ExitOK, ""},
		{"default follows the --server flag", map[string]string{"BERTH_SERVER": dead}, []string{"--server", "REG"}, "registration", cli.ExitOK, ""},
		{"env", map[string]string{"BERTH_BUNDLES_SERVER": "BUN"}, nil, "bundles", cli.ExitOK, ""},
		{"flag", nil, []string{"--bundles-server", "BUN"}, "bundles", cli.ExitOK, ""},
		{"flag beats env", map[string]string{"BERTH_BUNDLES_SERVER": dead}, []string{"--bundles-server", "BUN"}, "bundles", cli.ExitOK, ""},
		{"env beats the default from --server", map[string]string{"BERTH_BUNDLES_SERVER": "BUN"}, []string{"--server", dead}, "bundles", cli.ExitOK, ""},
		{"only the bundles address", map[string]string{"BERTH_SERVER": "", "BERTH_BUNDLES_SERVER": "BUN"}, nil, "bundles", cli.ExitOK, ""},
		{"flag beats env, even a wrong one", map[string]string{"BERTH_BUNDLES_SERVER": "BUN"}, []string{"--bundles-server", dead}, "", cli.ExitError,
			"berthctl: list bundle history for node n-7f3a9c: cannot reach server " + dead + ": dial tcp " + dead + ": connect: connection refused\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			combined := listing()
			separate := listing()
			reg := startAll(t, pki, &fakeAdmin{}, combined)
			bun := startAll(t, pki, nil, separate)
			subst := func(s string) string {
				return strings.NewReplacer("REG", reg.addr, "BUN", bun.addr).Replace(s)
			}
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = subst(v)
			}
			args := []string{"bundles", "history", bundleNodeID, "-o", "json"}
			for _, a := range tc.args {
				args = append(args, subst(a))
			}
			r := runEnv(t, reg.withEnv(env), args...)
			if r.code != tc.wantCode || r.stderr != tc.wantStderr {
				t.Fatalf("exit %d, stderr %q; want exit %d, stderr %q", r.code, r.stderr, tc.wantCode, tc.wantStderr)
			}
			on := map[string]int{"registration": len(combined.received()), "bundles": len(separate.received())}
			for where, n := range on {
				if want := map[bool]int{true: 1, false: 0}[where == tc.wantOn]; n != want {
					t.Errorf("%d calls on the %s server, want %d", n, where, want)
				}
			}
		})
	}

	// put reads the key on --server and writes on --bundles-server.
	t.Run("put across two servers", func(t *testing.T) {
		admin, bundles := bundleFakes(keyedNode(key), currentV3())
		reg := start(t, pki, admin)
		bun := startAll(t, pki, nil, bundles)
		r := reg.run("bundles", "put", bundleNodeID, "--dir", src, "--bundles-server", bun.addr)
		checkOK(t, r)
		checkRequests(t, admin, &berthv1.GetNodeRequest{Id: bundleNodeID})
		checkSealed(t, pki, key, 4, putRequest(t, bundles), sampleFiles()[1:2])
	})

	// A registration server, reached through the default, is refused as
	// the bundles service it is not, and the message says why.
	t.Run("no bundles service at the default address", func(t *testing.T) {
		reg := start(t, pki, &fakeAdmin{})
		r := reg.run("bundles", "get", bundleNodeID)
		want := "berthctl: get bundle for node n-7f3a9c: " + reg.addr + " is not the bundles service: " +
			"expected spiffe://berth.local/service/bundles or spiffe://berth.local/service/api, found spiffe://berth.local/service/registration, spiffe://berth.local/service/heartbeat " +
			"(the address comes from BERTH_SERVER; set --bundles-server or BERTH_BUNDLES_SERVER)\n"
		if r.code != cli.ExitError || r.stderr != want {
			t.Errorf("exit %d, stderr %q; want exit 1, stderr %q", r.code, r.stderr, want)
		}
		r = reg.run("bundles", "reset", bundleNodeID, "--bundles-server", reg.addr)
		want = "berthctl: reset bundle for node n-7f3a9c: " + reg.addr + " is not the bundles service: " +
			"expected spiffe://berth.local/service/bundles or spiffe://berth.local/service/api, found spiffe://berth.local/service/registration, spiffe://berth.local/service/heartbeat " +
			"(check --bundles-server)\n"
		if r.code != cli.ExitError || r.stderr != want {
			t.Errorf("exit %d, stderr %q; want exit 1, stderr %q", r.code, r.stderr, want)
		}
	})

	// A server that is the bundles service by its certificate but does not
	// serve its admin API (another version, say) is explained too.
	t.Run("bundles identity without the bundles service", func(t *testing.T) {
		reg := startAs(t, pki, []string{"registration", "bundles"}, &fakeAdmin{}, nil, nil)
		r := reg.run("bundles", "get", bundleNodeID)
		want := "berthctl: get bundle for node n-7f3a9c: " + reg.addr + " has no bundles service (the address comes from BERTH_SERVER; set --bundles-server or BERTH_BUNDLES_SERVER)\n"
		if r.code != cli.ExitError || r.stderr != want {
			t.Errorf("exit %d, stderr %q; want exit 1, stderr %q", r.code, r.stderr, want)
		}
	})
}

func TestBundlesMissingCredentials(t *testing.T) {
	h := startAll(t, newTestPKI(t), &fakeAdmin{}, &fakeBundles{})
	src := writeTree(t, sampleFiles()[1:2])
	for _, tc := range []struct {
		name  string
		unset []string
		args  []string
		want  string
	}{
		{"get without any address", []string{"BERTH_SERVER"}, []string{"bundles", "get", bundleNodeID},
			"berthctl: missing connection settings: set --bundles-server or BERTH_BUNDLES_SERVER (or --server or BERTH_SERVER)"},
		{"get without key", []string{"BERTH_KEY"}, []string{"bundles", "get", bundleNodeID},
			"berthctl: missing connection settings: set --key or BERTH_KEY"},
		{"put without any address", []string{"BERTH_SERVER"}, []string{"bundles", "put", bundleNodeID, "--dir", src},
			"berthctl: missing connection settings: set --server or BERTH_SERVER"},
		{"put with only the bundles address", []string{"BERTH_SERVER"}, []string{"bundles", "put", bundleNodeID, "--dir", src, "--bundles-server", h.addr},
			"berthctl: missing connection settings: set --server or BERTH_SERVER"},
		{"put without anything", []string{"BERTH_SERVER", "BERTH_CA", "BERTH_CERT", "BERTH_KEY"}, []string{"bundles", "put", bundleNodeID, "--dir", src},
			"berthctl: missing connection settings: set --server or BERTH_SERVER, --ca or BERTH_CA, --cert or BERTH_CERT, --key or BERTH_KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changes := map[string]string{}
			for _, k := range tc.unset {
				changes[k] = ""
			}
			r := runEnv(t, h.withEnv(changes), tc.args...)
			want := tc.want + "\nRun 'berthctl " + strings.Join(tc.args[:2], " ") + " -h' for usage.\n"
			if r.code != cli.ExitUsage || r.stderr != want {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2, stderr:\n%s", r.code, r.stderr, want)
			}
		})
	}
	if calls := append(h.fake.received(), h.bundles.received()...); len(calls) != 0 {
		t.Errorf("calls reached the server: %v", calls)
	}
}
