package registration

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// NodeLister lists registered nodes: the registration store.
type NodeLister interface {
	ListNodes(ctx context.Context, f regstore.NodeFilter) ([]regstore.Node, error)
}

// fillPage is the page size of both lists the fill reads.
const fillPage = 500

// fillTimeout bounds a fill. The watch's events wait while it runs, so a
// store that hangs must not hold them back for longer: a fill cut short
// keeps what it had, and misses fill the rest.
const fillTimeout = 10 * time.Second

// fill keeps every approved node's current bundle, or that it has none,
// until the cache is full. It is called with the watch in place and
// before any of its events is applied (see BundleCache). A failure ends
// the fill early: what it kept is still right, and misses fill the rest.
func (c *BundleCache) fill(ctx context.Context) {
	defer c.fillEnded()
	if c.nodes == nil {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.fillTimeout)
	defer cancel()
	bundles, upTo, err := c.listBundles(ctx)
	if err != nil {
		c.log.Warn("bundle cache fill: listing the bundle store's bundles failed; Resume asks it for the rest", "err", err)
	}
	kept := 0
	for after := ""; ; {
		nodes, err := c.nodes.ListNodes(ctx, regstore.NodeFilter{Status: regstore.StatusApproved, AfterID: after, Limit: fillPage})
		if err != nil {
			c.log.Warn("bundle cache fill: listing nodes failed; Resume asks the bundle store for the rest", "err", err)
			break
		}
		n, full := c.keepAll(nodes, bundles, upTo)
		kept += n
		if full || len(nodes) < fillPage {
			break
		}
		after = nodes[len(nodes)-1].ID
	}
	c.log.Info("bundle cache filled", "entries", kept, "bytes", c.size(), "took", time.Since(start).Round(time.Millisecond))
}

// listBundles reads the bundle store's current bundles, up to the cache's
// size. upTo is the last node ID the listing covers: a node after it may
// have a bundle not read ("" with more to read: none covered; the whole
// list read: every node is covered).
func (c *BundleCache) listBundles(ctx context.Context) (_ map[string]*berthv1.SealedBundle, upTo string, err error) {
	out := map[string]*berthv1.SealedBundle{}
	req := &berthv1.ListSealedBundlesRequest{PageSize: fillPage}
	size := 0
	for {
		resp, err := c.watch.ListSealedBundles(ctx, req)
		if err != nil {
			return out, upTo, err
		}
		for _, b := range resp.GetBundles() {
			if size += len(b.GetBundle().GetSealed()); size > c.maxBytes {
				return out, upTo, nil
			}
			out[b.GetNodeId()], upTo = b.GetBundle(), b.GetNodeId()
		}
		if resp.GetNextPageToken() == "" {
			return out, everyNode, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// everyNode is listBundles's upTo when it read the whole list: above
// every node ID.
const everyNode = "\xff"

// keepAll keeps the entries of nodes; full when the cache is.
func (c *BundleCache) keepAll(nodes []regstore.Node, bundles map[string]*berthv1.SealedBundle, upTo string) (kept int, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range nodes {
		b := bundles[n.ID]
		if b == nil && n.ID > upTo {
			// Not covered by the listing: it may have a bundle.
			return kept, true
		}
		if c.bytes+entrySize(n.ID, b) > c.maxBytes {
			return kept, true
		}
		c.keep(n.ID, sha256.Sum256(n.BundleKey), b)
		kept++
	}
	return kept, false
}

func (c *BundleCache) fillEnded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.filled = true
	c.advance(0)
}

func (c *BundleCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
