package liveness

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// Boot is a node's boot as the registration service served it: the first
// beat of the boot, which the node's Resume (or first Register) stands for,
// so that the node is healthy without a heartbeat stream of its own yet.
type Boot struct {
	NodeID   string
	BootID   string
	Sequence int64
	Status   heartbeatstore.Status
	Uptime   time.Duration
	// Age is how long before this call the boot was served, by the
	// registration service's clock: the beat is dated now less Age on this
	// replica's, so the two clocks need not agree.
	Age time.Duration
}

// BootsResult says what RecordBoots did.
type BootsResult struct {
	// Recorded boots changed their node's liveness; Skipped ones did not:
	// the store held them or something newer, the node is revoked, or the
	// boot is too old to be taken as a sign of life.
	Recorded, Skipped int
	// Interval is the fleet's interval in force, which booting nodes are
	// told so that they open their streams within it: on the decider,
	// stretched already when these boots called for it (raiseForBoots).
	Interval time.Duration
}

// RecordBoots records boots as beats, in one store transaction: each node
// becomes healthy as of its boot, with the events a first beat of the boot
// would raise (heartbeatstore.Store.RecordBoots), before RecordBoots
// returns. A revoked node's boot is never recorded. A boot served longer
// ago than two intervals less a flush period is skipped: recorded, it
// would be declared suspect at once, a transition the node did not make;
// the node's own first beat makes it healthy instead.
func (c *Core) RecordBoots(ctx context.Context, boots []Boot) (BootsResult, error) {
	if c.closing.Load() {
		return BootsResult{}, ErrClosing
	}
	now := c.clock.Now()
	interval := c.currentTimings().Interval
	tooOld := 2*interval - c.cfg.FlushPeriod
	res := BootsResult{Interval: interval}
	obs := make([]heartbeatstore.Observation, 0, len(boots))
	for _, b := range boots {
		if b.Age < 0 || b.Age >= tooOld || c.revokedNode(ctx, b.NodeID) {
			res.Skipped++
			continue
		}
		obs = append(obs, heartbeatstore.Observation{NodeID: b.NodeID, LastSeen: now.Add(-b.Age), Sequence: b.Sequence,
			BootID: b.BootID, Status: b.Status, Uptime: b.Uptime})
	}
	r, err := c.store.RecordBoots(ctx, obs)
	if err != nil {
		return BootsResult{}, fmt.Errorf("record %d boots: %w", len(obs), err)
	}
	c.stats.events.Add(int64(r.Events))
	c.stats.boots.Add(int64(r.Recorded))
	c.booted.add(now, r.Recorded)
	res.Recorded, res.Skipped = r.Recorded, res.Skipped+r.Skipped
	if c.raiseForBoots(ctx, now) {
		res.Interval = c.currentTimings().Interval
	}
	return res, nil
}
