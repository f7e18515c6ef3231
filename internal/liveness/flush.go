package liveness

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// Flush writes the nodes that beat since the last flush to the store in one
// batch. What fails to be written (the newest beat of each node) is kept and
// retried by the next flush. Run calls it every FlushPeriod.
//
// Beats are acknowledged before they are flushed, so a replica that dies
// loses at most the last-seen times of its nodes since its last successful
// flush; their events were written before their beats were acknowledged.
func (c *Core) Flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	obs := c.collect()
	if len(obs) == 0 {
		return nil
	}
	res, err := c.store.Flush(ctx, obs, nil)
	if err != nil {
		c.stats.flushErrors.Add(1)
		c.keepForRetry(obs)
		return fmt.Errorf("flush %d nodes: %w", len(obs), err)
	}
	c.stats.flushes.Add(1)
	c.stats.rows.Add(int64(res.Rows))
	c.stats.events.Add(int64(res.Events))
	return nil
}

// collect takes the dirty entries of every shard, after what the last
// failed flush left; flushMu is held.
func (c *Core) collect() []heartbeatstore.Observation {
	obs := make([]heartbeatstore.Observation, 0, len(c.retryObs))
	for _, o := range c.retryObs {
		obs = append(obs, o)
	}
	clear(c.retryObs)
	for _, sh := range c.shards {
		sh.mu.Lock()
		for _, e := range sh.dirty {
			obs = append(obs, e.observation())
			e.dirty = false
			if e.sess == nil {
				delete(sh.entries, e.nodeID)
			}
		}
		clear(sh.dirty)
		sh.dirty = sh.dirty[:0]
		sh.mu.Unlock()
	}
	// A node in the retry buffer and beating again appears twice, the newer
	// beat last; the store keeps it (the later one wins a tie).
	return obs
}

// keepForRetry holds what a failed flush could not write, the newest beat
// of each node (the later one on a tie, as collect puts newer beats last);
// flushMu is held.
func (c *Core) keepForRetry(obs []heartbeatstore.Observation) {
	for _, o := range obs {
		if old, ok := c.retryObs[o.NodeID]; !ok || !o.LastSeen.Before(old.LastSeen) {
			c.retryObs[o.NodeID] = o
		}
	}
}
