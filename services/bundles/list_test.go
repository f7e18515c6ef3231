package bundles

import (
	"bytes"
	"context"
	"crypto/rand"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// listAll pages through ListSealedBundles (of nodes, when given) and
// returns every page's node IDs.
func listAll(t *testing.T, c berthv1.BundleAdminServiceClient, size int32, nodes ...string) (pages [][]string, sealed map[string][]byte) {
	t.Helper()
	sealed = map[string][]byte{}
	req := &berthv1.ListSealedBundlesRequest{PageSize: size, NodeIds: nodes}
	for {
		resp, err := c.ListSealedBundles(context.Background(), req)
		if err != nil {
			t.Fatalf("ListSealedBundles: %v", err)
		}
		var ids []string
		for _, b := range resp.GetBundles() {
			ids = append(ids, b.GetNodeId())
			sealed[b.GetNodeId()] = b.GetBundle().GetSealed()
		}
		pages = append(pages, ids)
		if resp.GetNextPageToken() == "" {
			return pages, sealed
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func TestListSealedBundles(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		reg := e.adminClient(t, e.identities(t)["registration"])
		want := map[string][]byte{}
		for _, id := range []string{"node-c", "node-a", "node-b"} {
			n := e.newNode(t, id, xwing)
			want[id] = e.config(t, n, id)
			putNode(t, e.nodeClient(t, n), 0, want[id])
		}
		// node-d's bundle was reset: it has none.
		d := e.newNode(t, "node-d", xwing)
		putNode(t, e.nodeClient(t, d), 0, e.config(t, d, "d"))
		if _, err := e.admin(t).ResetBundle(context.Background(), &berthv1.ResetBundleRequest{NodeId: "node-d"}); err != nil {
			t.Fatal(err)
		}

		pages, got := listAll(t, reg, 2)
		if w := [][]string{{"node-a", "node-b"}, {"node-c"}}; !equalPages(pages, w) {
			t.Errorf("pages of 2 = %v, want %v", pages, w)
		}
		for id, w := range want {
			if !bytes.Equal(got[id], w) {
				t.Errorf("%s: listed bundle differs from the one put", id)
			}
		}
		if _, ok := got["node-d"]; ok {
			t.Error("a reset bundle is listed")
		}
		if pages, _ := listAll(t, reg, 0); !equalPages(pages, [][]string{{"node-a", "node-b", "node-c"}}) {
			t.Errorf("default page = %v, want all three", pages)
		}
		// Named nodes: those with a bundle, in pages, in node ID order.
		pages, got = listAll(t, reg, 1, "node-c", "node-a", "node-d", "node-x")
		if w := [][]string{{"node-a"}, {"node-c"}}; !equalPages(pages, w) {
			t.Errorf("pages of 1 of named nodes = %v, want %v", pages, w)
		}
		if !bytes.Equal(got["node-c"], want["node-c"]) {
			t.Error("node-c: listed bundle differs from the one put")
		}
		// A valid token after the last node (a list read while the last
		// bundles were reset) is the end of the list, not an error.
		resp, err := reg.ListSealedBundles(context.Background(), &berthv1.ListSealedBundlesRequest{PageToken: ident.PageToken("node-z")})
		if err != nil || len(resp.GetBundles()) != 0 || resp.GetNextPageToken() != "" {
			t.Errorf("page after the last node: %d bundles, next token %q, err %v; want an empty last page",
				len(resp.GetBundles()), resp.GetNextPageToken(), err)
		}
	})
}

// TestListSealedBundlesPageBytes: a page ends before it passes 1 MiB of
// bundles, whatever its size, and always holds at least one bundle.
func TestListSealedBundlesPageBytes(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	for _, id := range []string{"node-a", "node-b", "node-c"} {
		n := e.newNode(t, id, xwing)
		text := make([]byte, 400<<10) // random: DEFLATE cannot shrink it
		rand.Read(text)
		putNode(t, e.nodeClient(t, n), 0, e.config(t, n, string(text)))
	}
	pages, got := listAll(t, e.admin(t), 1000)
	if w := [][]string{{"node-a", "node-b"}, {"node-c"}}; !equalPages(pages, w) {
		t.Errorf("pages of 400 KiB bundles = %v, want %v", pages, w)
	}
	for id, s := range got {
		if len(s) < 400<<10 {
			t.Errorf("%s: %d bytes listed", id, len(s))
		}
	}
}

func TestListSealedBundlesValidation(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	admin := e.admin(t)
	for _, tt := range []struct {
		name string
		req  *berthv1.ListSealedBundlesRequest
		msg  string
	}{
		{"negative page size", &berthv1.ListSealedBundlesRequest{PageSize: -1}, "page_size " + rulePageSize},
		{"page size over 1000", &berthv1.ListSealedBundlesRequest{PageSize: 1001}, "page_size " + rulePageSize},
		{"forged page token", &berthv1.ListSealedBundlesRequest{PageToken: "!!"}, "page_token " + rulePageToken},
		{"token of no node ID", &berthv1.ListSealedBundlesRequest{PageToken: ident.PageToken("Node/..")}, "page_token " + rulePageToken},
		{"node ID not one", &berthv1.ListSealedBundlesRequest{NodeIds: []string{"node-a", "Node/.."}}, "node_ids " + ruleNodeIDs},
		{"empty node ID", &berthv1.ListSealedBundlesRequest{NodeIds: []string{""}}, "node_ids " + ruleNodeIDs},
		{"over 1000 node IDs", &berthv1.ListSealedBundlesRequest{NodeIds: slices.Repeat([]string{"node-a"}, 1001)}, "node_ids " + ruleNodeIDs},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := admin.ListSealedBundles(context.Background(), tt.req)
			wantStatus(t, err, codes.InvalidArgument, tt.msg)
		})
	}
}

func equalPages(a, b [][]string) bool { return slices.EqualFunc(a, b, slices.Equal) }
