package console

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/clock"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// counts are the Fleet page's totals.
type counts struct {
	Total    int            `json:"total"`
	ByStatus map[string]int `json:"by_status"`
	// ByHealth counts the nodes that ever beat by liveness state; the
	// rest ("unknown") never did.
	ByHealth map[string]int `json:"by_health"`
	// At is when they were counted.
	At time.Time `json:"at"`
}

// countPage is the page size the counts are read with, the services'
// largest.
const countPage = 1000

// countTTL is how long counts are served from the cache: counting reads
// the whole fleet (ten pages at 10,000 nodes), so every open Fleet page
// refreshing after each event must not recount each time.
const countTTL = 2 * time.Second

// countCache keeps the last counts of each principal: counts made with
// one principal's calls are never shown to another, whom the matrix might
// refuse.
type countCache struct {
	clock clock.Clock
	mu    sync.Mutex // held while counting: one count at a time
	last  map[string]counts
	// refreshing names the principals whose counts are being made in
	// the background.
	bg         sync.Mutex
	refreshing map[string]bool
}

func newCountCache(c clock.Clock) *countCache {
	return &countCache{clock: c, last: map[string]counts{}, refreshing: map[string]bool{}}
}

func (c *countCache) invalidate() {
	c.mu.Lock()
	clear(c.last)
	c.mu.Unlock()
}

// get returns p's counts; ctx must carry p (as). Counts older than
// countTTL are made again first, unless stale is allowed: a page then
// shows the last counts at once (saying when they were made) and they
// are made again in the background, so that no page load waits for a
// whole-fleet count but the first.
func (c *countCache) get(ctx context.Context, a api, p Principal, stale bool) (counts, error) {
	c.mu.Lock()
	last, ok := c.last[p.Forward]
	fresh := ok && c.clock.Now().Sub(last.At) < countTTL
	if fresh || (ok && stale) {
		c.mu.Unlock()
		if !fresh {
			c.refresh(ctx, a, p)
		}
		return last, nil
	}
	defer c.mu.Unlock()
	return c.countLocked(ctx, a, p)
}

func (c *countCache) countLocked(ctx context.Context, a api, p Principal) (counts, error) {
	n, err := count(ctx, a)
	if err != nil {
		return counts{}, err
	}
	n.At = c.clock.Now()
	c.last[p.Forward] = n
	return n, nil
}

// refresh counts again in the background, once at a time per principal.
func (c *countCache) refresh(ctx context.Context, a api, p Principal) {
	c.bg.Lock()
	if c.refreshing[p.Forward] {
		c.bg.Unlock()
		return
	}
	c.refreshing[p.Forward] = true
	c.bg.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	go func() {
		defer cancel()
		c.mu.Lock()
		c.countLocked(ctx, a, p) // an error keeps the last counts
		c.mu.Unlock()
		c.bg.Lock()
		delete(c.refreshing, p.Forward)
		c.bg.Unlock()
	}()
}

// count reads every node and every health record, page by page.
func count(ctx context.Context, a api) (counts, error) {
	n := counts{ByStatus: map[string]int{}, ByHealth: map[string]int{}}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		req := &berthv1.ListNodesRequest{PageSize: countPage}
		for {
			resp, err := a.nodes.ListNodes(gctx, req)
			if err != nil {
				return err
			}
			for _, nd := range resp.GetNodes() {
				n.ByStatus[nodeStatus(nd.GetStatus())]++
				n.Total++
			}
			if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
				return nil
			}
		}
	})
	health := map[string]int{}
	g.Go(func() error {
		req := &berthv1.ListNodeHealthRequest{PageSize: countPage}
		for {
			resp, err := a.health.ListNodeHealth(gctx, req)
			if err != nil {
				return err
			}
			for _, h := range resp.GetNodes() {
				health[liveness(h.GetState())]++
			}
			if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
				return nil
			}
		}
	})
	if err := g.Wait(); err != nil {
		return counts{}, err
	}
	n.ByHealth = health
	return n, nil
}

// fleetCounts serves the counts to the Fleet page's script.
func (s *Console) fleetCounts(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := callContext(r)
	defer cancel()
	if r.URL.Query().Has("fresh") {
		s.counts.invalidate()
	}
	c, err := s.counts.get(as(ctx, ss.principal), s.api, ss.principal, false)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(httpStatus(err))
		json.NewEncoder(w).Encode(map[string]string{"error": errorText(err)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(c)
}
