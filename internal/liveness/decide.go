package liveness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// Decide takes or renews the decider lease and, while this replica holds
// it, declares silent nodes suspect (no beat for two intervals) or
// unreachable (no beat for the grace period), from the last-seen times in
// the store. It also stretches the fleet's timings while the fleet would
// beat faster than Config.MaxBeatRate (see adjustLoad). On every replica,
// decider or not, it first stores the replica's count of recent boots
// (shareBoots). Run calls it every DecidePeriod.
//
// It declares nobody silent for a full grace period after taking the
// lease, as nodes may still be reconnecting after a restart; and for two
// flush periods after losing the store briefly, so that every replica has
// written the beats it held meanwhile.
func (c *Core) Decide(ctx context.Context) error {
	c.decideMu.Lock()
	defer c.decideMu.Unlock()
	now := c.clock.Now()
	held, since, err := c.store.AcquireLease(ctx, c.cfg.ReplicaID, now, now.Add(c.cfg.LeaseTTL))
	if err != nil {
		c.storeTrouble = true
		return fmt.Errorf("decide: %w", err)
	}
	c.shareBoots(ctx, now)
	if !held {
		c.setDecider(false)
		return nil
	}
	c.leaseUntil = now.Add(c.cfg.LeaseTTL)
	t := c.decisionTimings(now)
	// since moves whenever a term starts: on taking the lease, and on
	// renewing one that had lapsed.
	c.holdUntil = latest(c.holdUntil, since.Add(t.Grace))
	if c.storeTrouble {
		c.storeTrouble = false
		c.holdUntil = latest(c.holdUntil, now.Add(2*c.cfg.FlushPeriod))
	}
	if !c.decider {
		c.setDecider(true)
		c.log.Info("took the decider role; declaring nobody silent for a grace period", "until", c.holdUntil)
	}
	c.retain(ctx, now)
	c.adjustLoad(ctx, now)
	t = c.decisionTimings(now)
	if now.Before(c.holdUntil) {
		return nil
	}
	res, err := c.store.MarkSilent(ctx, heartbeatstore.Silence{
		Holder:            c.cfg.ReplicaID,
		Now:               now,
		LeaseUntil:        now.Add(c.cfg.LeaseTTL),
		SuspectBefore:     now.Add(-2 * t.Interval),
		UnreachableBefore: now.Add(-t.Grace),
	})
	switch {
	case errors.Is(err, heartbeatstore.ErrLeaseLost):
		c.setDecider(false)
		return nil
	case err != nil:
		c.storeTrouble = true
		return fmt.Errorf("decide: %w", err)
	}
	if n := res.Suspect + res.Unreachable; n > 0 {
		c.stats.silenced.Add(int64(n))
		c.stats.events.Add(int64(n))
		c.log.Info("silent nodes declared", "suspect", res.Suspect, "unreachable", res.Unreachable)
	}
	return nil
}

// setDecider records whether this replica holds the lease; decideMu is held.
func (c *Core) setDecider(held bool) {
	if c.decider && !held {
		c.log.Info("lost the decider role")
	}
	c.decider = held
	c.stats.decider.Store(held)
}

// retain deletes events older than the retention, and boot counts no sum
// takes any more (othersBoots: those of replicas that died with boots to
// count), every retentionPeriod; the decider does it, so that one replica
// does.
func (c *Core) retain(ctx context.Context, now time.Time) {
	if now.Sub(c.lastRetention) < retentionPeriod {
		return
	}
	c.lastRetention = now
	if _, err := c.store.ForgetBoots(ctx, now.Add(-bootWindow)); err != nil {
		c.log.Warn("deleting stale boot counts of replicas failed", attrError, err)
	}
	n, err := c.store.Events().DeleteBefore(ctx, now.Add(-c.cfg.Retention))
	if err != nil {
		c.log.Error("deleting old health events failed", attrError, err)
		return
	}
	if n > 0 {
		c.log.Info("old health events deleted", attrCount, n)
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
