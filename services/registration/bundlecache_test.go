package registration

import (
	"context"
	"crypto/sha256"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/services/bundles"
)

// countingBundles counts the calls that reach the bundle store.
type countingBundles struct {
	Bundles
	sealed atomic.Int64
}

func (c *countingBundles) Sealed(ctx context.Context, nodeID string, bundleKey []byte) (*berthv1.SealedBundle, error) {
	c.sealed.Add(1)
	return c.Bundles.Sealed(ctx, nodeID, bundleKey)
}

// bundleReplica is a second bundle store, on the env's stores, with a
// listener of its own that a test can stop and start again: the replica
// the registration service's cache reaches.
type bundleReplica struct {
	e    *env
	addr string
	srv  *rpc.Server
}

func (r *bundleReplica) start(t *testing.T) {
	t.Helper()
	svc, err := bundles.New(bundles.Config{Store: r.e.bs, TrustDomain: r.e.layout.TrustDomain, Roots: r.e.layout.RootPool()})
	if err != nil {
		t.Fatal(err)
	}
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	// The port of a stopped replica may take a moment to be free again.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if lis, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.addr = lis.Addr().String()
	r.srv = rpc.NewServer(rpc.ServerConfig{
		Name: "bundles", TrustDomain: r.e.layout.TrustDomain, Roots: r.e.layout.RootPool(),
		Cert: r.e.srv.ServiceCert(t, pki.ServiceBundles), Policy: svc.Policy(),
	})
	svc.Register(r.srv)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = svc.Run(ctx) }()
	go func() { _ = r.srv.Serve(lis) }()
	srv := r.srv
	t.Cleanup(func() { cancel(); srv.Stop() })
}

// cachedEnv puts a BundleCache, reaching a bundle store replica of its
// own, between the registration service and the bundle store.
// With nodes set the cache fills itself from them; cachedEnv returns once
// the fill ended.
func cachedEnv(t *testing.T, e *env, nodes NodeLister) (*BundleCache, *countingBundles, *bundleReplica) {
	t.Helper()
	r := &bundleReplica{e: e}
	r.start(t)
	cfg := mtls.ClientConfig(e.srv.ServiceCert(t, pki.ServiceRegistration), e.layout.RootPool())
	cfg.ServerName = "127.0.0.1"
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: r.addr, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	src := &countingBundles{Bundles: NewGRPCBundles(conn)}
	cache := startCache(t, BundleCacheConfig{Source: src, Watch: berthv1.NewBundleAdminServiceClient(conn), Nodes: nodes})
	e.bundles.set(cache)
	return cache, src, r
}

// startCache runs a cache, changed by each of mods first, until the test
// ends, and returns it once its watch is in place and its fill ended.
func startCache(t *testing.T, c BundleCacheConfig, mods ...func(*BundleCache)) *BundleCache {
	t.Helper()
	cache, err := NewBundleCache(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		m(cache)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitCache(t, cache, func() bool { return cache.live && cache.filled })
	return cache
}

// waitCache waits for a state of the cache; the deadline only bounds a
// failing test.
func waitCache(t *testing.T, c *BundleCache, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.waitUntil(ctx, cond); err != nil {
		t.Fatalf("bundle cache: %v", err)
	}
}

// nextBundleEvent opens an admin watch from now; the returned function
// gives the cursor of the next bundle event.
func (e *env) nextBundleEvent(t *testing.T) func() int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	s, err := berthv1.NewBundleAdminServiceClient(e.admin).WatchBundleEvents(ctx,
		&berthv1.WatchBundleEventsRequest{Filter: &berthv1.LifecycleFilter{FromNow: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	return func() int64 {
		t.Helper()
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return m.GetEvent().GetCursor()
	}
}

func resumeBundle(t *testing.T, n *node) *berthv1.SealedBundle {
	t.Helper()
	resp, err := n.client().Resume(context.Background(), &berthv1.ResumeRequest{})
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if !resp.GetCredentials().GetBundleChecked() {
		t.Fatal("Resume did not check the bundle")
	}
	return resp.GetCredentials().GetBundle()
}

// TestBundleCache: Resume answers from the cache, the bundle store's
// events drop what changed (a put on another replica included), and a
// revoked node is refused whatever the cache holds.
func TestBundleCache(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		cache, src, _ := cachedEnv(t, e, nil)
		n := e.newNode(uuidA)
		id := e.register(t, n, true).GetNodeId()
		next := e.nextBundleEvent(t)

		// No bundle yet: the registration of a new node answers "none"
		// without asking, and keeps it, so Resume does not ask either
		// and the first put's event queues a refresh.
		for range 3 {
			if b := resumeBundle(t, n); b != nil {
				t.Fatalf("Resume before any put: bundle %d", b.GetInfo().GetVersion())
			}
		}
		if got := src.sealed.Load(); got != 0 {
			t.Fatalf("registering and 3 Resumes asked the bundle store %d times, want none", got)
		}

		// A put (on the other replica: the env's server) drops the
		// entry once its event reached the cache, and the refresh reads
		// the new bundle back: Resume has it without asking.
		for _, want := range []int64{1, 2} {
			e.putBundle(t, id, []bundle.File{{Path: "etc/motd", Mode: 0o644, Content: []byte{byte(want)}}})
			if err := cache.WaitFor(t.Context(), next()); err != nil {
				t.Fatal(err)
			}
			waitCache(t, cache, func() bool { return len(cache.stale) == 0 })
			calls := src.sealed.Load()
			for range 2 {
				if b := resumeBundle(t, n); b.GetInfo().GetVersion() != want {
					t.Fatalf("Resume after put %d: version %d", want, b.GetInfo().GetVersion())
				}
			}
			if got := src.sealed.Load() - calls; got != 0 {
				t.Fatalf("2 Resumes after put %d and its refresh made %d calls to the bundle store, want none", want, got)
			}
		}

		// A reset (version 0: no bundle) is an event like a put.
		if _, err := berthv1.NewBundleAdminServiceClient(e.admin).ResetBundle(context.Background(), &berthv1.ResetBundleRequest{NodeId: id}); err != nil {
			t.Fatal(err)
		}
		if err := cache.WaitFor(t.Context(), next()); err != nil {
			t.Fatal(err)
		}
		if b := resumeBundle(t, n); b != nil {
			t.Fatalf("Resume after a reset: bundle %d", b.GetInfo().GetVersion())
		}

		// The node checks stay on every call: revoked, the cached entry
		// gives it nothing.
		if _, err := e.adminClient().RevokeNode(context.Background(), &berthv1.RevokeNodeRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		_, err := n.client().Resume(context.Background(), &berthv1.ResumeRequest{})
		grpctest.WantStatus(t, err, codes.PermissionDenied, msgRevoked)
	})
}

// TestBundleCacheStoreDown: with the bundle store down, the warm cache
// answers nothing (no change could reach it): Resume is Unavailable, as
// without a cache; back up, the cache refills.
func TestBundleCacheStoreDown(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		cache, src, replica := cachedEnv(t, e, nil)
		n := e.newNode(uuidA)
		id := e.register(t, n, true).GetNodeId()
		next := e.nextBundleEvent(t)
		e.putBundle(t, id, []bundle.File{{Path: "etc/motd", Mode: 0o644, Content: []byte("one")}})
		if err := cache.WaitFor(t.Context(), next()); err != nil {
			t.Fatal(err)
		}
		resumeBundle(t, n)
		if b := resumeBundle(t, n); b.GetInfo().GetVersion() != 1 || cache.Len() == 0 {
			t.Fatalf("warm cache: version %d, %d entries", b.GetInfo().GetVersion(), cache.Len())
		}

		replica.srv.Stop()
		waitCache(t, cache, func() bool { return !cache.live })
		if cache.Len() != 0 {
			t.Fatalf("a cache whose watch broke kept %d entries", cache.Len())
		}
		calls := src.sealed.Load()
		_, err := n.client().Resume(context.Background(), &berthv1.ResumeRequest{})
		grpctest.WantStatus(t, err, codes.Unavailable, msgBundlesDown)
		if src.sealed.Load() == calls {
			t.Fatal("Resume with the watch down did not ask the bundle store")
		}
		// Changed while the cache's replica was down: seen once it is back.
		e.putBundle(t, id, []bundle.File{{Path: "etc/motd", Mode: 0o644, Content: []byte("two")}})

		replica.start(t)
		waitCache(t, cache, func() bool { return cache.live })
		if b := resumeBundle(t, n); b.GetInfo().GetVersion() != 2 {
			t.Fatalf("Resume after the bundle store returned: version %d, want 2", b.GetInfo().GetVersion())
		}
	})
}

// fakeSealed is a bundle store whose answer a test holds back.
type fakeSealed struct {
	mu      sync.Mutex
	version int64
	// hold, when set, is waited for before answering; entered is told
	// first.
	hold, entered chan struct{}
}

func (f *fakeSealed) Sealed(context.Context, string, []byte) (*berthv1.SealedBundle, error) {
	f.mu.Lock()
	v, hold, entered := f.version, f.hold, f.entered
	f.mu.Unlock()
	if hold != nil {
		entered <- struct{}{}
		<-hold
	}
	return &berthv1.SealedBundle{Info: &berthv1.BundleInfo{Version: v}}, nil
}

func (f *fakeSealed) Delete(context.Context, string) error { return nil }

// TestBundleCacheRace: what a miss fetched while an event or a broken
// watch passed is answered once, never kept: it may predate the change.
func TestBundleCacheRace(t *testing.T) {
	for _, tt := range []struct {
		name   string
		during func(c *BundleCache)
	}{
		{"event", func(c *BundleCache) { c.invalidate("n1", 5) }},
		{"event of another node", func(c *BundleCache) { c.invalidate("n2", 5) }},
		{"watch broke", func(c *BundleCache) { c.setLive(false, 0); c.setLive(true, 6) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeSealed{version: 1, hold: make(chan struct{}), entered: make(chan struct{})}
			c, err := NewBundleCache(BundleCacheConfig{Source: src, Watch: berthv1.NewBundleAdminServiceClient(nil)})
			if err != nil {
				t.Fatal(err)
			}
			c.setLive(true, 1)
			got := make(chan int64)
			go func() {
				b, _ := c.Sealed(context.Background(), "n1", keyA)
				got <- b.GetInfo().GetVersion()
			}()
			<-src.entered
			tt.during(c)
			close(src.hold)
			if v := <-got; v != 1 {
				t.Fatalf("the miss answered %d", v)
			}
			if c.Len() != 0 {
				t.Fatal("a fetch that raced a change was kept")
			}
			src.mu.Lock()
			src.hold, src.version = nil, 2
			src.mu.Unlock()
			for range 2 {
				b, _ := c.Sealed(context.Background(), "n1", keyA)
				if b.GetInfo().GetVersion() != 2 {
					t.Fatalf("after the race: version %d", b.GetInfo().GetVersion())
				}
			}
			if c.Len() != 1 {
				t.Fatalf("a quiet miss was not kept: %d entries", c.Len())
			}
		})
	}
}

// TestBundleCacheBound: the cache keeps at most MaxBytes, evicting
// others to make room, and never a bundle larger than the bound.
func TestBundleCacheBound(t *testing.T) {
	src := &sizedBundles{}
	c, err := NewBundleCache(BundleCacheConfig{Source: src, Watch: berthv1.NewBundleAdminServiceClient(nil), MaxBytes: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	c.setLive(true, 1)
	for i := range 50 {
		if _, err := c.Sealed(context.Background(), string(rune('a'+i%26))+string(rune('a'+i/26)), keyA); err != nil {
			t.Fatal(err)
		}
		if c.bytes > 10_000 {
			t.Fatalf("after %d bundles the cache holds %d bytes", i+1, c.bytes)
		}
	}
	if n := c.Len(); n == 0 || n >= 50 {
		t.Fatalf("%d entries of 1 KiB bundles under a 10,000-byte bound", n)
	}
	src.size = 20_000
	c.Sealed(context.Background(), "huge", keyA)
	if _, ok := c.entries["huge"]; ok {
		t.Fatal("a bundle over the bound was kept")
	}
	if _, err := NewBundleCache(BundleCacheConfig{Source: src, Watch: berthv1.NewBundleAdminServiceClient(nil), MaxBytes: -1}); err == nil {
		t.Fatal("a negative bound was accepted")
	}
	if _, err := NewBundleCache(BundleCacheConfig{Source: src}); err == nil {
		t.Fatal("a cache without a watch was accepted")
	}
}

type sizedBundles struct{ size int }

func (s *sizedBundles) Sealed(context.Context, string, []byte) (*berthv1.SealedBundle, error) {
	return &berthv1.SealedBundle{Sealed: make([]byte, max(s.size, 1000))}, nil
}

func (s *sizedBundles) Delete(context.Context, string) error { return nil }

// keyA and keyB are two boards' bundle keys.
var keyA, keyB = []byte("bundle key of board A"), []byte("bundle key of board B")

// TestBundleCacheReplacedBoard: an entry answers only for the bundle key
// it was filled for, so a board that replaced the node (its bundles
// deleted on another registration replica, with no event) never gets the
// old board's bundle from this one.
func TestBundleCacheReplacedBoard(t *testing.T) {
	src := &fakeSealed{version: 3}
	c, err := NewBundleCache(BundleCacheConfig{Source: src, Watch: berthv1.NewBundleAdminServiceClient(nil)})
	if err != nil {
		t.Fatal(err)
	}
	c.setLive(true, 1)
	if b, _ := c.Sealed(context.Background(), "n1", keyA); b.GetInfo().GetVersion() != 3 {
		t.Fatalf("board A: version %d", b.GetInfo().GetVersion())
	}
	// Replaced elsewhere: the store dropped the bundles.
	src.mu.Lock()
	src.version = 0
	src.mu.Unlock()
	if b, _ := c.Sealed(context.Background(), "n1", keyA); b.GetInfo().GetVersion() != 3 {
		t.Fatalf("board A again: version %d, want the kept 3", b.GetInfo().GetVersion())
	}
	if b, _ := c.Sealed(context.Background(), "n1", keyB); b.GetInfo().GetVersion() != 0 {
		t.Fatalf("board B got version %d, the old board's bundle", b.GetInfo().GetVersion())
	}
	if b, _ := c.Sealed(context.Background(), "n1", keyB); b.GetInfo().GetVersion() != 0 || c.Len() != 1 {
		t.Fatalf("board B again: version %d, %d entries", b.GetInfo().GetVersion(), c.Len())
	}
}

// heldList is a bundle store whose lists a test holds back: each call
// reads the version, says so on entered, and answers once hold gives way.
type heldList struct {
	berthv1.BundleAdminServiceClient
	mu            sync.Mutex
	version       int64
	entered, hold chan struct{}
}

func (f *heldList) setVersion(v int64) {
	f.mu.Lock()
	f.version = v
	f.mu.Unlock()
}

func (f *heldList) ListSealedBundles(_ context.Context, req *berthv1.ListSealedBundlesRequest, _ ...grpc.CallOption) (*berthv1.ListSealedBundlesResponse, error) {
	f.mu.Lock()
	v := f.version
	f.mu.Unlock()
	f.entered <- struct{}{}
	<-f.hold
	resp := &berthv1.ListSealedBundlesResponse{}
	ids := slices.Sorted(slices.Values(req.GetNodeIds()))
	for _, id := range ids {
		resp.Bundles = append(resp.Bundles, &berthv1.NodeSealedBundle{NodeId: id, Bundle: &berthv1.SealedBundle{Info: &berthv1.BundleInfo{Version: v}}})
	}
	return resp, nil
}

// TestBundleCacheRefresh: a node's event queues its entry for a refresh,
// which keeps the bundle read back; what a refresh read while another
// event of the node or a broken watch passed is not kept (it may predate
// the change): the node is read again, or left to its next miss.
func TestBundleCacheRefresh(t *testing.T) {
	for _, tt := range []struct {
		name   string
		during func(c *BundleCache, f *heldList)
		again  bool  // a second list reads the node again
		want   int64 // the version kept; 0: none
	}{
		{"quiet", func(*BundleCache, *heldList) {}, false, 2},
		{"event of another node", func(c *BundleCache, _ *heldList) { c.invalidate("n2", 3) }, false, 2},
		{"event of the node", func(c *BundleCache, f *heldList) { f.setVersion(3); c.invalidate("n1", 3) }, true, 3},
		{"watch broke", func(c *BundleCache, _ *heldList) { c.setLive(false, 0); c.setLive(true, 4) }, false, 0},
		{"bundles deleted", func(c *BundleCache, _ *heldList) { _ = c.Delete(context.Background(), "n1") }, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &heldList{version: 2, entered: make(chan struct{}), hold: make(chan struct{})}
			c, err := NewBundleCache(BundleCacheConfig{Source: &fakeSealed{}, Watch: f})
			if err != nil {
				t.Fatal(err)
			}
			c.setLive(true, 1)
			c.mu.Lock()
			c.keep("n1", sha256.Sum256(keyA), &berthv1.SealedBundle{Info: &berthv1.BundleInfo{Version: 1}})
			c.mu.Unlock()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); c.refreshLoop(ctx) }()

			c.invalidate("n1", 2)
			<-f.entered
			tt.during(c, f)
			f.hold <- struct{}{}
			if tt.again {
				select {
				case <-f.entered:
				case <-time.After(time.Minute):
					t.Fatal("the node changed again was not read again")
				}
				f.hold <- struct{}{}
			}
			cancel()
			<-done
			c.mu.Lock()
			e, ok := c.entries["n1"]
			c.mu.Unlock()
			switch {
			case tt.want == 0 && ok:
				t.Fatalf("kept version %d, want nothing", e.b.GetInfo().GetVersion())
			case tt.want != 0 && (!ok || e.b.GetInfo().GetVersion() != tt.want):
				t.Fatalf("kept %v (present %v), want version %d", e.b, ok, tt.want)
			}
			if tt.want != 0 {
				b, err := c.Sealed(context.Background(), "n1", keyA)
				if err != nil || b.GetInfo().GetVersion() != tt.want {
					t.Fatalf("Sealed: version %d, %v; want %d from memory", b.GetInfo().GetVersion(), err, tt.want)
				}
			}
		})
	}
}

// TestBundleCacheCreated: a node registered just now is kept as having no
// bundle, unless a bundle event or a broken watch came between the epoch
// read before it was stored and the keep, or the watch is not in place.
func TestBundleCacheCreated(t *testing.T) {
	for _, tt := range []struct {
		name    string
		between func(c *BundleCache)
		kept    bool
	}{
		{"quiet", func(*BundleCache) {}, true},
		{"event of another node", func(c *BundleCache) { c.invalidate("n2", 2) }, false},
		{"watch broke", func(c *BundleCache) { c.setLive(false, 0); c.setLive(true, 3) }, false},
		{"watch down", func(c *BundleCache) { c.setLive(false, 0) }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewBundleCache(BundleCacheConfig{Source: &fakeSealed{version: 7}, Watch: berthv1.NewBundleAdminServiceClient(nil)})
			if err != nil {
				t.Fatal(err)
			}
			c.setLive(true, 1)
			epoch, live := c.Epoch()
			if !live {
				t.Fatal("Epoch says the watch is not in place")
			}
			tt.between(c)
			c.Created("n1", keyA, epoch)
			if got := c.Len() == 1; got != tt.kept {
				t.Fatalf("kept %v, want %v", got, tt.kept)
			}
			if tt.kept {
				// Answered from memory: the source would say version 7.
				if b, err := c.Sealed(context.Background(), "n1", keyA); err != nil || b != nil {
					t.Fatalf("Sealed: %v, %v; want none from memory", b, err)
				}
			}
		})
	}
}
