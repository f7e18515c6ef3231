package registration

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// putBundle seals files to the node's registered bundle key, as the engine
// does, and stores them through the admin API.
func (e *env) putBundle(t testing.TB, nodeID string, files []bundle.File) *berthv1.BundleInfo {
	t.Helper()
	ctx := context.Background()
	got, err := e.adminClient().GetNode(ctx, &berthv1.GetNodeRequest{Id: nodeID})
	if err != nil {
		t.Fatal(err)
	}
	key := got.GetNode().GetBundleKey()
	sealed, err := bundle.Seal(uint16(key.GetKemId()), key.GetPublicKey(), nodeID, files)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := berthv1.NewBundleAdminServiceClient(e.admin).PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{NodeId: nodeID, Sealed: sealed})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetInfo()
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
		opened, err := bundle.Open(n.bundleKey, creds.GetNodeId(), b.GetSealed())
		if err != nil || len(opened) != 1 || !bytes.Equal(opened[0].Content, files[0].Content) {
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
