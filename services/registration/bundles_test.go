package registration

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// putBundle seals files to the node's registered bundle key and signs them
// with the admin credential for the next version, as the engine does, and
// stores them through the admin API.
func (e *env) putBundle(t testing.TB, nodeID string, files []bundle.File) *berthv1.BundleInfo {
	t.Helper()
	ctx := context.Background()
	got, err := e.adminClient().GetNode(ctx, &berthv1.GetNodeRequest{Id: nodeID})
	if err != nil {
		t.Fatal(err)
	}
	key := got.GetNode().GetBundleKey()
	admin := berthv1.NewBundleAdminServiceClient(e.admin)
	h, err := admin.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: nodeID})
	if err != nil {
		t.Fatal(err)
	}
	var current int64
	for _, v := range h.GetVersions() {
		if v.GetState() == berthv1.BundleState_BUNDLE_STATE_APPROVED {
			current = v.GetVersion()
		}
	}
	sealed, err := bundle.Seal(bundle.Target{NodeID: nodeID, KEM: uint16(key.GetKemId()), Public: key.GetPublicKey(), Version: h.GetNextVersion()},
		bundle.Contents{Files: files}, e.adminSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := admin.PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{NodeId: nodeID, ExpectedVersion: current, Sealed: sealed})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetInfo()
}

// adminSigner is the deployment's admin credential as a bundle signer.
func (e *env) adminSigner(t testing.TB) *bundle.Signer {
	t.Helper()
	cert := e.srv.AdminCert(t)
	chain := grpctest.Chain(t, cert)
	s, err := bundle.NewAdminSigner(chain, cert.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// nodeVerifier is what node nodeID checks a bundle served as version v
// against.
func (e *env) nodeVerifier(nodeID string, v int64) bundle.Verifier {
	return bundle.Verifier{TrustDomain: e.layout.TrustDomain, NodeID: nodeID, Version: v, Roots: e.layout.RootPool()}
}

func TestResumeReturnsSealedBundleInline(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		n := e.newNode(uuidA)
		creds := e.register(t, n, true)
		if !creds.GetBundleChecked() || creds.GetBundle() != nil {
			t.Fatalf("new node: bundle_checked %v bundle %v, want checked and none", creds.GetBundleChecked(), creds.GetBundle())
		}
		files := []bundle.File{{Path: "etc/hostname", Mode: 0o644, Content: []byte("hv-01\n")}}
		info := e.putBundle(t, creds.GetNodeId(), files)
		resp, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		b := resp.GetCredentials().GetBundle()
		if b.GetInfo().GetVersion() != info.GetVersion() || len(b.GetSealed()) == 0 {
			t.Fatalf("Resume bundle = %v, want version %d", b.GetInfo(), info.GetVersion())
		}
		opened, err := bundle.Open(n.bundleKey, b.GetSealed(), e.nodeVerifier(creds.GetNodeId(), b.GetInfo().GetVersion()))
		if err != nil || len(opened.Files) != 1 || !bytes.Equal(opened.Files[0].Content, files[0].Content) {
			t.Fatalf("node cannot open its inline bundle: %v %v", opened, err)
		}
		// A pending node gets no bundle, and is not told it has none.
		p := e.newNode("00000000-0000-4000-8000-000000000001")
		pending := e.register(t, p, false)
		if pending.GetBundleChecked() || pending.GetBundle() != nil {
			t.Fatal("a pending node was told about bundles")
		}
	})
}

func TestDeleteAndReplaceDropBundles(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	ctx := context.Background()
	files := []bundle.File{{Path: "etc/motd", Mode: 0o644, Content: []byte("hi")}}

	gone := e.newNode(uuidA)
	id := e.register(t, gone, true).GetNodeId()
	e.putBundle(t, id, files)
	if _, err := e.adminClient().DeleteNode(ctx, &berthv1.DeleteNodeRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.bs.Get(ctx, id); !errors.Is(err, bundlestore.ErrNotFound) {
		t.Fatalf("bundle of a deleted node: %v, want ErrNotFound", err)
	}

	old := e.newNode("00000000-0000-4000-8000-000000000001")
	id = e.register(t, old, true).GetNodeId()
	e.putBundle(t, id, files)
	if _, err := e.adminClient().AllowReplacement(ctx, &berthv1.AllowReplacementRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	board := e.newNode("00000000-0000-4000-8000-000000000001")
	creds := e.register(t, board, true)
	if creds.GetNodeId() != id || creds.GetBundle() != nil {
		t.Fatalf("replacement: node %s bundle %v, want node %s without the old bundle", creds.GetNodeId(), creds.GetBundle(), id)
	}
}

// TestRegisterAsksNoBundleStore: a node's first registration answers "no
// bundle" without asking the bundle store, which can hold none for a node
// made by that very call, so it succeeds while the store is down; a known
// key registering again is answered like a Resume, from the store, and
// gets Unavailable.
func TestRegisterAsksNoBundleStore(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.bundlesDown()
		n := e.newNode(uuidA)
		req := n.registerRequest(t, e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true}))
		resp, err := n.client().Register(context.Background(), req)
		if err != nil {
			t.Fatalf("first Register with the bundle store down: %v", err)
		}
		if creds := resp.GetCredentials(); !creds.GetBundleChecked() || creds.GetBundle() != nil || len(creds.GetCertificateChain()) == 0 {
			t.Fatalf("first Register: bundle_checked %v bundle %v chain %d; want checked, none, a certificate",
				creds.GetBundleChecked(), creds.GetBundle(), len(creds.GetCertificateChain()))
		}
		_, err = n.client().Register(context.Background(), req)
		grpctest.WantStatus(t, err, codes.Unavailable, msgBundlesDown)
	})
}
