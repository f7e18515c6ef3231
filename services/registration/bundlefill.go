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
	listed, err := c.listBundles(ctx)
	if err != nil {
		c.log.Warn("bundle cache fill: listing the bundle store's bundles failed; Resume asks it for the rest", "err", err)
	}
	if !listed.complete && listed.upTo == "" {
		// No node is covered, so a node list would keep nothing.
		return
	}
	kept := 0
	for after := ""; ; {
		nodes, err := c.nodes.ListNodes(ctx, regstore.NodeFilter{Status: regstore.StatusApproved, AfterID: after, Limit: fillPage})
		if err != nil {
			c.log.Warn("bundle cache fill: listing nodes failed; Resume asks the bundle store for the rest", "err", err)
			break
		}
		n, full := c.keepAll(nodes, listed)
		kept += n
		if full || len(nodes) < fillPage {
			break
		}
		after = nodes[len(nodes)-1].ID
	}
	c.log.Info("bundle cache filled", "entries", kept, "bytes", c.size(), "took", time.Since(start).Round(time.Millisecond))
}

// listing is what listBundles read of the bundle store's current bundles.
type listing struct {
	bundles map[string]*berthv1.SealedBundle
	// upTo is the last node ID read; complete is true when the whole list
	// was. A node after upTo in an incomplete listing may have a bundle
	// that was not read.
	upTo     string
	complete bool
}

// covers reports whether the listing says all there is about node id.
func (l listing) covers(id string) bool {
	return l.complete || id <= l.upTo
}

// listBundles reads the bundle store's current bundles (of nodes, when
// given), up to the cache's size. On an error it returns what it read
// before it.
func (c *BundleCache) listBundles(ctx context.Context, nodes ...string) (listing, error) {
	l := listing{bundles: map[string]*berthv1.SealedBundle{}}
	req := &berthv1.ListSealedBundlesRequest{PageSize: fillPage, NodeIds: nodes}
	size := 0
	for {
		resp, err := c.watch.ListSealedBundles(ctx, req)
		if err != nil {
			return l, err
		}
		for _, b := range resp.GetBundles() {
			if size += len(b.GetBundle().GetSealed()); size > c.maxBytes {
				return l, nil
			}
			l.bundles[b.GetNodeId()], l.upTo = b.GetBundle(), b.GetNodeId()
		}
		if resp.GetNextPageToken() == "" {
			l.complete = true
			return l, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// keepAll keeps the entries of nodes; full when the cache is.
func (c *BundleCache) keepAll(nodes []regstore.Node, listed listing) (kept int, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range nodes {
		if !listed.covers(n.ID) {
			// Nodes are in ID order: none after this one is covered.
			return kept, true
		}
		b := listed.bundles[n.ID]
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
