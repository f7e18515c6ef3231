package liveness

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// A mass boot (a power restore) would have every booted node open its
// heartbeat stream within one interval of its boot (in its second half), a
// full TLS handshake each, competing with the nodes still booting. So the
// decider also stretches the fleet's timings while the boots recorded in
// the last bootWindow would open their streams faster than
// Config.MaxConnectRate at the base interval: booted nodes are told the
// longer interval and spread their streams over its second half. The stretch doubles (bootStretch) rather
// than rising in stretchSteps, because every change is pushed to every
// open stream.
const bootWindow = time.Minute

// raiseForBoots stretches the fleet's timings at once, on the decider, when
// the boots it has just recorded call for more stretch than is in force,
// and reports whether it did. A storm's first thousand boots come within
// a second or two; waiting for the next Decide would tell them the
// shorter interval, and their streams would open while the rest of the
// storm still boots. The nodes whose boots called for it are told the new
// interval. The check is in memory; the store is only asked when the
// stretch rises, a handful of times in a storm. Another replica's boots
// reach the decider at its next DecidePeriod, as before (shareBoots).
func (c *Core) raiseForBoots(ctx context.Context, now time.Time) bool {
	if c.cfg.MaxConnectRate <= 0 || !c.stats.decider.Load() {
		return false
	}
	s := c.settings.Load()
	l := load{booted: c.booted.total(now) + int(c.others.Load())}
	if c.bootNeed(l, c.baseTimings(s)) <= stretchOf(s) {
		return false
	}
	c.decideMu.Lock()
	defer c.decideMu.Unlock()
	// A lease that lapsed since (the store failing Decide) may be
	// another replica's now: the stretch is its to change.
	if !c.decider || !now.Before(c.leaseUntil) {
		return false
	}
	c.adjustLoad(ctx, now)
	return true
}

// shareBoots stores how many boots this replica recorded over the last
// bootWindow, for the decider, which stretches for the boots of every
// replica (currentLoad): a mass boot is spread over them all. It writes
// every DecidePeriod while there are any, so that the count stays fresh,
// and once more when they have aged out; an idle replica writes nothing.
// decideMu is held.
func (c *Core) shareBoots(ctx context.Context, now time.Time) {
	if c.cfg.MaxConnectRate <= 0 {
		return
	}
	n := c.booted.total(now)
	if n == 0 && c.sharedBoots == 0 {
		return
	}
	if err := c.store.PutBoots(ctx, c.cfg.ReplicaID, n, now); err != nil {
		c.log.Warn("storing this replica's count of recent boots failed; the decider may stretch the fleet's timings too little", attrBooted, n, attrError, err)
		return
	}
	c.sharedBoots = n
}

// othersBoots is the boots the other replicas recorded over the last
// bootWindow. A count stays in the sum for a bootWindow after it was said:
// the boots of a replica that stopped saying (it died) are counted as long
// as they would have been had it lived, and clocks a little apart between
// replicas change nothing.
func (c *Core) othersBoots(ctx context.Context, now time.Time) (int, error) {
	n, err := c.store.SumBoots(ctx, c.cfg.ReplicaID, now.Add(-bootWindow))
	if err != nil {
		return 0, fmt.Errorf("adding up the other replicas' boots: %w", err)
	}
	return n, nil
}

// bootCount counts the boots this replica recorded over the last
// bootWindow, in one-second buckets.
type bootCount struct {
	mu  sync.Mutex
	sec [bootWindow / time.Second]int64 // the Unix second each bucket counts
	n   [bootWindow / time.Second]int
}

func (b *bootCount) add(now time.Time, n int) {
	if n <= 0 {
		return
	}
	s := now.Unix()
	i := s % int64(len(b.sec))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sec[i] != s {
		b.sec[i], b.n[i] = s, 0
	}
	b.n[i] += n
}

// total is the count over the bootWindow ending at now.
func (b *bootCount) total(now time.Time) int { return b.recent(now, int64(len(b.sec))) }

// recent is the count over the last secs seconds ending at now, the
// current one included.
func (b *bootCount) recent(now time.Time, secs int64) int {
	s := now.Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	sum := 0
	for i, at := range b.sec {
		if at <= s && s-at < secs {
			sum += b.n[i]
		}
	}
	return sum
}

// bootStretch returns the load factor that spreads the streams of booted
// nodes to at most maxRate per second: the needed one rounded up to a
// power of two, within limit. A booted node opens its stream in the second
// half of its first interval (the agent's followBoot), so the streams of
// the nodes booted together spread over half an interval.
func bootStretch(booted int, base Timings, maxRate, limit float64) float64 {
	need := float64(booted) / (base.Interval.Seconds() / 2) / maxRate
	if need <= 1 {
		return 1
	}
	return min(math.Exp2(math.Ceil(math.Log2(need))), limit)
}
