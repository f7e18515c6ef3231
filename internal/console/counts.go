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
}

func newCountCache(c clock.Clock) *countCache {
	return &countCache{clock: c, last: map[string]counts{}}
}

func (c *countCache) invalidate() {
	c.mu.Lock()
	clear(c.last)
	c.mu.Unlock()
}

// get returns p's counts; ctx must carry p (as).
func (c *countCache) get(ctx context.Context, a api, p Principal) (counts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.last[p.Forward]; ok && c.clock.Now().Sub(last.At) < countTTL {
		return last, nil
	}
	n, err := count(ctx, a)
	if err != nil {
		return counts{}, err
	}
	n.At = c.clock.Now()
	c.last[p.Forward] = n
	return n, nil
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
	c, err := s.counts.get(as(ctx, ss.principal), s.api, ss.principal)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(httpStatus(err))
		json.NewEncoder(w).Encode(map[string]string{"error": errorText(err)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(c)
}
