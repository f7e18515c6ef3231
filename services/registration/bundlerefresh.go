package registration

import (
	"context"
	"crypto/sha256"
)

// staleEntry is a node whose entry an event dropped: the bundle key the
// entry was for, and the epoch of its last event. A refresh keeps what it
// read only if no event of the node came since (same gen).
type staleEntry struct {
	key [sha256.Size]byte
	gen uint64
}

// markStale queues a node for a refresh on one of its events; c.mu is
// held. A node without an entry (never asked for, or evicted) is not
// refreshed: without its key the cache cannot know whom the bundle is
// for, and its next Resume's miss fills it.
func (c *BundleCache) markStale(nodeID string) {
	if e, ok := c.entries[nodeID]; ok {
		c.stale[nodeID] = staleEntry{key: e.key, gen: c.epoch}
	} else if s, ok := c.stale[nodeID]; ok {
		s.gen = c.epoch
		c.stale[nodeID] = s
	} else {
		return
	}
	select {
	case c.refresh <- struct{}{}:
	default:
	}
}

// Epoch is the cache's count of events and watch breaks, for Created;
// false while the watch is not in place.
func (c *BundleCache) Epoch() (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch, c.live
}

// Created keeps that a node registered just now has no bundle, so that
// an event of its first bundle queues a refresh (which needs the node's
// bundle key). epoch is Epoch read before the node was stored: a node
// that did not exist had no bundle, and any change since (an event, or a
// broken watch) may have given it one, so then nothing is kept.
func (c *BundleCache) Created(nodeID string, bundleKey []byte, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live && c.epoch == epoch {
		c.keep(nodeID, sha256.Sum256(bundleKey), nil)
	}
}

// newNodes is a Bundles that keeps what Register knows of a new node: a
// BundleCache.
type newNodes interface {
	Epoch() (uint64, bool)
	Created(nodeID string, bundleKey []byte, epoch uint64)
}

// refreshLoop refreshes the stale nodes until ctx ends, a batch at a
// time, while the watch is in place.
func (c *BundleCache) refreshLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.refresh:
		}
		for ctx.Err() == nil && c.refreshOnce(ctx) {
		}
	}
}

// refreshOnce reads back up to a page of stale nodes' bundles in one list
// and keeps those whose nodes had no event since; it reports whether
// stale nodes are left. A list that fails keeps what it read before and
// gives the rest up: their next Resume's miss fills them, as without a
// refresh.
func (c *BundleCache) refreshOnce(ctx context.Context) bool {
	c.mu.Lock()
	n := min(len(c.stale), fillPage)
	batch := make(map[string]staleEntry, n)
	ids := make([]string, 0, n)
	for id, s := range c.stale {
		if len(ids) == fillPage {
			break
		}
		batch[id] = s
		ids = append(ids, id)
	}
	c.mu.Unlock()
	if len(ids) == 0 {
		return false
	}
	listed, err := c.listBundles(ctx, ids...)
	if err != nil && ctx.Err() == nil {
		c.log.Warn("bundle cache refresh: listing changed bundles failed; Resume asks the bundle store for them", "nodes", len(ids), "err", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, s := range batch {
		if cur, ok := c.stale[id]; !ok || cur.gen != s.gen {
			continue // changed again (or the watch broke): the next batch
		}
		delete(c.stale, id)
		if c.live && listed.covers(id) {
			c.keep(id, s.key, listed.bundles[id])
		}
	}
	c.wakeWaiters()
	return len(c.stale) > 0
}
