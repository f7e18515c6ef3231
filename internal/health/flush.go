package health

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/internal/store/hbstore"
)

// Flush writes the nodes that beat since the last flush, and the events
// their beats raised, to the store in one batch. What fails to be written
// is kept and retried by the next flush (the newest beat of each node, and
// every event up to MaxPendingEvents). Run calls it every FlushPeriod.
func (c *Core) Flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	obs, events := c.collect()
	if len(obs) == 0 && len(events) == 0 {
		return nil
	}
	res, err := c.store.Flush(ctx, obs, events)
	if err != nil {
		c.stats.flushErrors.Add(1)
		c.keepForRetry(obs, events)
		return fmt.Errorf("flush %d nodes and %d events: %w", len(obs), len(events), err)
	}
	c.stats.flushes.Add(1)
	c.stats.rows.Add(int64(res.Rows))
	c.stats.events.Add(int64(res.Events))
	if res.Events > 0 {
		c.notifyAppended()
	}
	return nil
}

// collect takes the dirty entries and queued events of every shard, after
// what the last failed flush left; flushMu is held.
func (c *Core) collect() ([]hbstore.Observation, []hbstore.Event) {
	obs := make([]hbstore.Observation, 0, len(c.retryObs))
	for _, o := range c.retryObs {
		obs = append(obs, o)
	}
	clear(c.retryObs)
	events := c.retryEvents
	c.retryEvents = nil
	for _, sh := range c.shards {
		sh.mu.Lock()
		for _, e := range sh.dirty {
			obs = append(obs, hbstore.Observation{
				NodeID: e.nodeID, LastSeen: e.lastSeen, Sequence: e.seq,
				BootID: e.bootID, Status: e.status, Uptime: e.uptime,
			})
			e.dirty = false
			if e.sess == nil {
				delete(sh.entries, e.nodeID)
			}
		}
		clear(sh.dirty)
		sh.dirty = sh.dirty[:0]
		events = append(events, sh.events...)
		clear(sh.events)
		sh.events = sh.events[:0]
		sh.mu.Unlock()
	}
	// A node in the retry buffer and beating again appears twice, the newer
	// beat last; the store keeps it (the later one wins a tie).
	return obs, events
}

// keepForRetry holds what a failed flush could not write, the newest beat
// of each node (the later one on a tie, as collect puts newer beats last);
// flushMu is held.
func (c *Core) keepForRetry(obs []hbstore.Observation, events []hbstore.Event) {
	for _, o := range obs {
		if old, ok := c.retryObs[o.NodeID]; !ok || !o.LastSeen.Before(old.LastSeen) {
			c.retryObs[o.NodeID] = o
		}
	}
	if over := len(events) - c.cfg.MaxPendingEvents; over > 0 {
		c.stats.dropped.Add(int64(over))
		c.log.Error("store unreachable too long: oldest health events dropped", attrCount, over)
		events = events[over:]
	}
	c.retryEvents = events
}
