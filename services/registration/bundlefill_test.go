package registration

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// uuidC3 is a third board's hardware UUID.
const uuidC3 = "4c4c4544-0042-3510-8051-b2c04f4e4d34"

func motd(s string) []bundle.File {
	return []bundle.File{{Path: "etc/motd", Mode: 0o644, Content: []byte(s)}}
}

// TestBundleCacheFill: a cache that starts with a fleet already there
// (a registration service restarted by a power restore) answers every
// approved node's Resume from memory, bundle or none, without one call to
// the bundle store; a later change still reaches Resume.
func TestBundleCacheFill(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		withBundle, without := e.newNode(uuidA), e.newNode(uuidB)
		id := e.register(t, withBundle, true).GetNodeId()
		e.register(t, without, true)
		pending := e.newNode(uuidC3)
		e.register(t, pending, false)
		e.putBundle(t, id, motd("one"))

		cache, src, _ := cachedEnv(t, e, e.reg)
		if n := cache.Len(); n != 2 {
			t.Errorf("filled %d entries, want the 2 approved nodes'", n)
		}
		for range 2 {
			if b := resumeBundle(t, withBundle); b.GetInfo().GetVersion() != 1 {
				t.Fatalf("Resume after the fill: version %d, want 1", b.GetInfo().GetVersion())
			}
			if b := resumeBundle(t, without); b != nil {
				t.Fatalf("Resume of a node without a bundle: version %d", b.GetInfo().GetVersion())
			}
		}
		if got := src.sealed.Load(); got != 0 {
			t.Fatalf("Resumes after the fill asked the bundle store %d times, want none", got)
		}
		// Another board's key is not answered from the fill.
		if _, err := cache.Sealed(context.Background(), id, []byte("another board")); err != nil {
			t.Fatal(err)
		}
		if got := src.sealed.Load(); got != 1 {
			t.Fatalf("another key asked the bundle store %d times, want 1", got)
		}

		next := e.nextBundleEvent(t)
		e.putBundle(t, id, motd("two"))
		if err := cache.WaitFor(t.Context(), next()); err != nil {
			t.Fatal(err)
		}
		if b := resumeBundle(t, withBundle); b.GetInfo().GetVersion() != 2 {
			t.Fatalf("Resume after a put: version %d, want 2", b.GetInfo().GetVersion())
		}
	})
}

// hookedNodes runs a function during the fill's first node list: after
// the fill read the bundles, before it keeps them.
type hookedNodes struct {
	NodeLister
	once sync.Once
	hook func()
}

func (h *hookedNodes) ListNodes(ctx context.Context, f regstore.NodeFilter) ([]regstore.Node, error) {
	h.once.Do(h.hook)
	return h.NodeLister.ListNodes(ctx, f)
}

// TestBundleCacheFillRace: a bundle put while the fill runs, after it
// read the bundles, is not left behind: its event, applied after the
// fill, drops the old bundle the fill kept.
func TestBundleCacheFillRace(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		n := e.newNode(uuidA)
		id := e.register(t, n, true).GetNodeId()
		e.putBundle(t, id, motd("one"))
		next := e.nextBundleEvent(t)
		cache, _, _ := cachedEnv(t, e, &hookedNodes{NodeLister: e.reg, hook: func() { e.putBundle(t, id, motd("two")) }})
		if err := cache.WaitFor(t.Context(), next()); err != nil {
			t.Fatal(err)
		}
		if b := resumeBundle(t, n); b.GetInfo().GetVersion() != 2 {
			t.Fatalf("Resume after a put during the fill: version %d, want 2", b.GetInfo().GetVersion())
		}
	})
}

// TestBundleCacheFillBound: the fill stops at MaxBytes; what it did not
// keep is answered by misses, correctly.
func TestBundleCacheFillBound(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		nodes := map[string]*node{}
		for _, u := range []string{uuidA, uuidB, uuidC3} {
			n := e.newNode(u)
			id := e.register(t, n, true).GetNodeId()
			e.putBundle(t, id, motd(id))
			nodes[id] = n
		}
		cache, src, _ := cachedEnv(t, e, e.reg)
		var one int
		for _, e := range cache.entries {
			one = e.size
		}
		// Fill again under a bound of one and a half entries.
		cache.mu.Lock()
		cache.maxBytes = one + one/2
		cache.mu.Unlock()
		cache.setLive(true, 0)
		cache.fill(t.Context())
		if n := cache.Len(); n != 1 || cache.size() > cache.maxBytes {
			t.Fatalf("a bound of one and a half entries kept %d entries, %d bytes", n, cache.size())
		}
		var kept string
		for id := range cache.entries {
			kept = id
		}
		if b := resumeBundle(t, nodes[kept]); b.GetInfo().GetVersion() != 1 || src.sealed.Load() != 0 {
			t.Fatalf("Resume of the node kept: version %d, %d calls to the bundle store", b.GetInfo().GetVersion(), src.sealed.Load())
		}
		for id, n := range nodes {
			b := resumeBundle(t, n)
			opened, err := bundle.Open(n.bundleKey, b.GetSealed(), e.nodeVerifier(id, b.GetInfo().GetVersion()))
			if err != nil || len(opened.Files) != 1 || string(opened.Files[0].Content) != id {
				t.Fatalf("Resume of %s: version %d, the node cannot open it as its own: %v", id, b.GetInfo().GetVersion(), err)
			}
		}
		if got := src.sealed.Load(); got < 2 {
			t.Fatalf("the 2 nodes the fill left out made %d calls to the bundle store, want at least 2", got)
		}
	})
}

// oldBundleStore is a bundle store from before ListSealedBundles.
type oldBundleStore struct {
	berthv1.BundleAdminServiceClient
}

func (oldBundleStore) ListSealedBundles(context.Context, *berthv1.ListSealedBundlesRequest, ...grpc.CallOption) (*berthv1.ListSealedBundlesResponse, error) {
	return nil, status.Error(codes.Unimplemented, "unknown method ListSealedBundles")
}

// failingNodes is a registration store that cannot list nodes.
type failingNodes struct{}

func (failingNodes) ListNodes(context.Context, regstore.NodeFilter) ([]regstore.Node, error) {
	return nil, errors.New("database is down")
}

// countingNodes counts the node lists made.
type countingNodes struct {
	NodeLister
	lists atomic.Int32
}

func (c *countingNodes) ListNodes(ctx context.Context, f regstore.NodeFilter) ([]regstore.Node, error) {
	c.lists.Add(1)
	return c.NodeLister.ListNodes(ctx, f)
}

// TestBundleCacheFillFails: a fill that cannot list the bundles (a bundle
// store older than ListSealedBundles) or the nodes (the database down)
// keeps nothing it cannot vouch for; the cache is live, and each node's
// first Resume asks the bundle store, as before there was a fill. Without
// the bundles it does not read the nodes at all.
func TestBundleCacheFillFails(t *testing.T) {
	for _, tt := range []struct {
		name  string
		watch func(berthv1.BundleAdminServiceClient) berthv1.BundleAdminServiceClient
		nodes func(e *env) NodeLister
		lists int32
	}{
		{"old bundle store", func(c berthv1.BundleAdminServiceClient) berthv1.BundleAdminServiceClient { return oldBundleStore{c} },
			func(e *env) NodeLister { return e.reg }, 0},
		{"nodes not listed", func(c berthv1.BundleAdminServiceClient) berthv1.BundleAdminServiceClient { return c },
			func(*env) NodeLister { return failingNodes{} }, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, sqliteBackend)
			n := e.newNode(uuidA)
			id := e.register(t, n, true).GetNodeId()
			e.putBundle(t, id, motd("one"))
			src := &countingBundles{Bundles: e.bundles.get()}
			nodes := &countingNodes{NodeLister: tt.nodes(e)}
			cache := startCache(t, BundleCacheConfig{Source: src, Watch: tt.watch(berthv1.NewBundleAdminServiceClient(e.self)), Nodes: nodes})
			if n := cache.Len(); n != 0 {
				t.Fatalf("a failed fill kept %d entries", n)
			}
			if got := nodes.lists.Load(); got != tt.lists {
				t.Fatalf("the fill listed nodes %d times, want %d", got, tt.lists)
			}
			e.bundles.set(cache)
			for range 2 {
				if b := resumeBundle(t, n); b.GetInfo().GetVersion() != 1 {
					t.Fatalf("Resume: version %d, want 1", b.GetInfo().GetVersion())
				}
			}
			if got := src.sealed.Load(); got != 1 {
				t.Fatalf("2 Resumes asked the bundle store %d times, want 1 (the first)", got)
			}
		})
	}
}

// hangingNodes is a registration store whose list never answers, as a
// database behind a dropped network does until the call's deadline.
type hangingNodes struct{}

func (hangingNodes) ListNodes(ctx context.Context, _ regstore.NodeFilter) ([]regstore.Node, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestBundleCacheFillHangs: a fill whose store hangs gives up at its
// deadline, so the bundle events it held back are applied: a bundle put
// meanwhile reaches Resume.
func TestBundleCacheFillHangs(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	n := e.newNode(uuidA)
	id := e.register(t, n, true).GetNodeId()
	e.putBundle(t, id, motd("one"))
	src := &countingBundles{Bundles: e.bundles.get()}
	cache := startCache(t, BundleCacheConfig{Source: src, Watch: berthv1.NewBundleAdminServiceClient(e.self), Nodes: hangingNodes{}},
		func(c *BundleCache) { c.fillTimeout = 200 * time.Millisecond })
	e.bundles.set(cache)
	if b := resumeBundle(t, n); b.GetInfo().GetVersion() != 1 {
		t.Fatalf("Resume: version %d, want 1", b.GetInfo().GetVersion())
	}
	next := e.nextBundleEvent(t)
	e.putBundle(t, id, motd("two"))
	if err := cache.WaitFor(t.Context(), next()); err != nil {
		t.Fatal(err)
	}
	if b := resumeBundle(t, n); b.GetInfo().GetVersion() != 2 {
		t.Fatalf("Resume after a put: version %d, want 2", b.GetInfo().GetVersion())
	}
}
