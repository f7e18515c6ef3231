package registration

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/internal/lifecycle"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// DefaultBundleCacheBytes bounds the sealed bundles a BundleCache keeps:
// 10,000 nodes of 6 KiB each, a power-restore storm's worth.
const DefaultBundleCacheBytes = 64 << 20

// BundleCache answers Resume's Sealed from memory, so that a booting node
// gets its bundle without a round trip from the registration service to
// the bundle store. A miss asks the bundle store (Source) and keeps the
// answer, "no bundle" included; each bundle event of a node, which the
// bundle store appends in the transaction that changes the node's
// bundles, drops the node's entry.
//
// The cache answers only while its watch of the bundle events is in
// place (the store sent lifecycle.StartHeader): while the watch is broken
// no change would reach it, so every call goes to the bundle store, as
// without a cache, and the entries are dropped. A bundle store that is
// down is therefore Unavailable to Resume, cache or not (README, what
// disappears). What the cache adds is delay, not staleness beyond it: a
// bundle approved on another replica of the bundle store reaches Resume
// once that replica's event reaches the watch (the event log's poll
// period, eventlog.DefaultPollPeriod); a node told of it on its
// heartbeat stream fetches it from the bundle store itself.
//
// Each time its watch is in place the cache fills itself (Nodes set):
// every approved node's current bundle, or the fact that it has none,
// bound to the node's bundle key, up to MaxBytes. A power restore
// restarts this service with its fleet, and without the fill each
// booting node's first Resume would ask the bundle store. The fill runs
// before the watch's events are applied, so a change committed after the
// watch started drops what the fill kept of it, as any entry; a fill
// takes at most 10 s (fillTimeout), so it delays them no longer.
//
// An event drops the node's entry and, when there was one, queues the
// node for a refresh: a batch of up to 500 such nodes is read back from
// the bundle store in one list (bundlerefresh.go), so that a storm right
// after a fleet-wide bundle change (put, then reboot) finds the new
// bundles in memory instead of asking once per node. Register keeps a
// new node's entry ("none", Created), so that nodes registered since the
// fill have one too.
//
// Security checks are not cached: Resume checks the node (status, key,
// revocation) in the registration store on every call, as before.
type BundleCache struct {
	src      Bundles
	watch    berthv1.BundleAdminServiceClient
	nodes    NodeLister
	maxBytes int
	// fillTimeout is the fill's deadline: the const fillTimeout, shorter
	// in tests.
	fillTimeout time.Duration
	log         *slog.Logger

	mu sync.Mutex
	// live: the watch is in place and entries may be answered from.
	live bool
	// epoch counts invalidations and watch breaks; a miss keeps what it
	// fetched only when none happened while it fetched.
	epoch   uint64
	entries map[string]cachedBundle
	bytes   int
	// seen is the cursor of the last bundle event applied (or of the
	// watch's start): tests wait for it to pass a change's cursor.
	seen int64
	// filled: the fill of the watch in place ended (tests wait for it).
	filled  bool
	changed chan struct{}
	// stale holds the nodes whose entries events dropped, to refresh;
	// refresh wakes the refresher.
	stale   map[string]staleEntry
	refresh chan struct{}
}

type cachedBundle struct {
	b    *berthv1.SealedBundle // nil: the node has no bundle
	size int
	// key is the SHA-256 of the bundle key the node had when the entry
	// was filled: an entry answers only for that key.
	key [sha256.Size]byte
}

// BundleCacheConfig configures a BundleCache.
type BundleCacheConfig struct {
	// Source answers misses: the bundle store over gRPC. Required.
	Source Bundles
	// Watch follows the bundle store's events, and lists its bundles
	// for the fill. Required.
	Watch berthv1.BundleAdminServiceClient
	// Nodes lists the registered nodes with their bundle keys, for the
	// fill; nil: no fill, entries come from misses only.
	Nodes NodeLister
	// MaxBytes bounds the sealed bytes kept (DefaultBundleCacheBytes).
	MaxBytes int
	Logger   *slog.Logger
}

// NewBundleCache builds a cache; it answers from memory once Run has its
// watch in place.
func NewBundleCache(c BundleCacheConfig) (*BundleCache, error) {
	if c.Source == nil || c.Watch == nil {
		return nil, errors.New("registration: BundleCacheConfig needs Source and Watch")
	}
	if c.MaxBytes < 0 {
		return nil, errors.New("registration: BundleCacheConfig.MaxBytes is negative")
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultBundleCacheBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &BundleCache{
		src: c.Source, watch: c.Watch, nodes: c.Nodes, maxBytes: c.MaxBytes, fillTimeout: fillTimeout, log: c.Logger,
		entries: map[string]cachedBundle{}, changed: make(chan struct{}),
		stale: map[string]staleEntry{}, refresh: make(chan struct{}, 1),
	}, nil
}

// Sealed returns the node's current sealed bundle, or nil when it has
// none, from memory when the watch is in place and the node's entry is
// kept for the same bundle key, else from the bundle store.
//
// The key matters when another board replaced the node: the registration
// replica that registered it deleted the node's bundles (sealed to the
// old board's key), which appends no bundle event, so a cache on another
// replica learns of it only through the key the node now has.
func (c *BundleCache) Sealed(ctx context.Context, nodeID string, bundleKey []byte) (*berthv1.SealedBundle, error) {
	key := sha256.Sum256(bundleKey)
	c.mu.Lock()
	if e, ok := c.entries[nodeID]; ok && c.live && e.key == key {
		c.mu.Unlock()
		return e.b, nil
	}
	live, epoch := c.live, c.epoch
	c.mu.Unlock()
	b, err := c.src.Sealed(ctx, nodeID, bundleKey)
	if err != nil || !live {
		return b, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// An event or a break while fetching: what was fetched may already be
	// old, so it is answered once and not kept.
	if c.live && c.epoch == epoch {
		c.keep(nodeID, key, b)
	}
	return b, nil
}

// Delete removes every bundle of a node, and its entry.
func (c *BundleCache) Delete(ctx context.Context, nodeID string) error {
	err := c.src.Delete(ctx, nodeID)
	c.mu.Lock()
	c.drop(nodeID)
	// A refresh reading the node now may read what was just deleted.
	delete(c.stale, nodeID)
	c.mu.Unlock()
	return err
}

// keep stores an entry, first evicting others (in the map's random
// order, which costs nothing to keep) until it fits.
func (c *BundleCache) keep(nodeID string, key [sha256.Size]byte, b *berthv1.SealedBundle) {
	size := entrySize(nodeID, b)
	if size > c.maxBytes {
		return
	}
	c.drop(nodeID)
	for id := range c.entries {
		if c.bytes+size <= c.maxBytes {
			break
		}
		c.drop(id)
	}
	c.entries[nodeID] = cachedBundle{b: b, size: size, key: key}
	c.bytes += size
}

// entrySize is what an entry counts against MaxBytes.
func entrySize(nodeID string, b *berthv1.SealedBundle) int {
	size := len(nodeID) + 64
	if b != nil {
		size += proto.Size(b)
	}
	return size
}

func (c *BundleCache) drop(nodeID string) {
	if e, ok := c.entries[nodeID]; ok {
		delete(c.entries, nodeID)
		c.bytes -= e.size
	}
}

// invalidate drops a node's entry on one of its bundle events (every
// entry for an event that names no node).
func (c *BundleCache) invalidate(nodeID string, cursor int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if nodeID == "" {
		clear(c.entries)
		clear(c.stale)
		c.bytes = 0
	} else {
		c.markStale(nodeID)
		c.drop(nodeID)
	}
	c.advance(cursor)
}

// setLive starts answering from memory (the watch started after cursor),
// or stops and forgets every entry.
func (c *BundleCache) setLive(live bool, cursor int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.live = live
	clear(c.entries)
	clear(c.stale)
	c.bytes = 0
	c.seen = 0
	c.filled = false
	c.advance(cursor)
}

// advance records the cursor seen and wakes the waiters; c.mu is held.
func (c *BundleCache) advance(cursor int64) {
	c.seen = max(c.seen, cursor)
	c.wakeWaiters()
}

// wakeWaiters wakes waitUntil's callers; c.mu is held.
func (c *BundleCache) wakeWaiters() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// WaitFor blocks until the cache is live and has applied the bundle
// events through cursor, or ctx ends.
func (c *BundleCache) WaitFor(ctx context.Context, cursor int64) error {
	return c.waitUntil(ctx, func() bool { return c.live && c.seen >= cursor })
}

// waitUntil blocks until cond, read under c.mu, holds or ctx ends.
func (c *BundleCache) waitUntil(ctx context.Context, cond func() bool) error {
	for {
		c.mu.Lock()
		ok, ch := cond(), c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Len is the number of entries kept.
func (c *BundleCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Run follows the bundle store's events until ctx ends, answering from
// memory while the watch is in place; a broken watch is opened again with
// backoff (up to 10 s), from now, with an empty cache.
func (c *BundleCache) Run(ctx context.Context) error {
	for n := 0; ctx.Err() == nil; n++ {
		if c.follow(ctx) {
			n = 0
		}
		c.setLive(false, 0)
		if ctx.Err() != nil {
			break
		}
		d := min(time.Duration(1<<min(n, 5))*250*time.Millisecond, 10*time.Second)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	return nil
}

// follow runs one watch; true when it was in place for a while.
func (c *BundleCache) follow(ctx context.Context) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.watch.WatchBundleEvents(ctx, &berthv1.WatchBundleEventsRequest{Filter: &berthv1.LifecycleFilter{FromNow: true}})
	if err != nil {
		c.broke(ctx, err)
		return false
	}
	// The header comes once the store fixed where the watch starts: every
	// change committed after it reaches this stream, so the misses from
	// now on may be kept.
	md, err := s.Header()
	if err != nil {
		c.broke(ctx, err)
		return false
	}
	start, ok := startCursor(md)
	if !ok {
		// A bundle store that predates the header: no way to know when
		// the watch is in place, so no caching.
		c.log.Warn("bundle store sends no watch start; Resume asks it for every bundle")
		<-ctx.Done()
		return false
	}
	c.setLive(true, start)
	c.log.Info("bundle cache live", "after_cursor", start)
	c.fill(ctx)
	refreshed := make(chan struct{})
	go func() { defer close(refreshed); c.refreshLoop(ctx) }()
	defer func() { cancel(); <-refreshed }()
	for {
		m, err := s.Recv()
		if err != nil {
			c.broke(ctx, err)
			return true
		}
		e := m.GetEvent()
		c.invalidate(e.GetNodeId(), e.GetCursor())
	}
}

func (c *BundleCache) broke(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	if status.Code(err) == codes.Unimplemented || status.Code(err) == codes.PermissionDenied {
		c.log.Error("bundle cache cannot watch the bundle store; Resume asks it for every bundle", "err", err)
		return
	}
	c.log.Warn("bundle cache watch broke; Resume asks the bundle store until it is back", "err", err)
}

func startCursor(md metadata.MD) (int64, bool) {
	v := md.Get(lifecycle.StartHeader)
	if len(v) != 1 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	return n, err == nil && n >= 0
}
