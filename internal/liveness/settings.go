package liveness

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// Bounds of the fleet settings.
const (
	minInterval = time.Second
	maxInterval = time.Hour
	maxGrace    = 24 * time.Hour
)

// Timings are a heartbeat interval and grace period.
type Timings = heartbeatstore.Timings

// Settings are the fleet's timings: the base ones (set by an admin, or the
// defaults) and, under overload, those in force, stretched by the load
// factor.
type Settings struct {
	// Current are the base timings, as last set.
	Current  Timings
	Defaults Timings
	// LoadFactor is the stretch the decider applies to Current while the
	// fleet would beat faster than Config.MaxBeatRate; 1 otherwise.
	LoadFactor float64
	// Effective are the timings in force: Current × LoadFactor.
	Effective Timings
}

// defaults returns the configured timings.
func (c *Core) defaults() Timings {
	return Timings{Interval: c.cfg.Interval, Grace: c.cfg.Grace}
}

// resolve fills zero (unset) stored timings with the defaults.
func (c *Core) resolve(t Timings) Timings {
	if t.Interval == 0 {
		return c.defaults()
	}
	return t
}

// baseTimings returns the base timings of s, without the stretch.
func (c *Core) baseTimings(s *heartbeatstore.Settings) Timings {
	return c.resolve(Timings{Interval: s.Interval, Grace: s.Grace})
}

// currentTimings returns the timings in force, as last loaded: the base
// ones stretched by the load factor.
func (c *Core) currentTimings() Timings {
	s := c.settings.Load()
	return stretch(c.baseTimings(s), stretchOf(s))
}

// decisionTimings returns the timings the decider applies at now: the
// longer of the current and the previous ones while nodes may still be
// beating at the previous interval.
func (c *Core) decisionTimings(now time.Time) Timings {
	s := c.settings.Load()
	cur := stretch(c.baseTimings(s), stretchOf(s))
	if s.ChangedAt.IsZero() {
		return cur
	}
	prev := c.resolve(s.Previous)
	if now.Before(s.ChangedAt.Add(prev.Grace)) {
		cur.Interval = max(cur.Interval, prev.Interval)
		cur.Grace = max(cur.Grace, prev.Grace)
	}
	return cur
}

// jittered spreads beats: each node gets the interval less up to a tenth,
// fixed per node, so that nodes that started together drift apart and the
// configured interval stays the longest any node waits.
func jittered(nodeID string, interval time.Duration) time.Duration {
	spread := uint64(interval / 10)
	if spread == 0 {
		return interval
	}
	return (interval - time.Duration(fnv1a(nodeID)%spread)).Truncate(time.Millisecond)
}

// Settings returns the base timings, the load factor and the timings in
// force, as last loaded from the store, and the defaults.
func (c *Core) Settings() Settings {
	s := c.settings.Load()
	f := stretchOf(s)
	base := c.baseTimings(s)
	return Settings{Current: base, Defaults: c.defaults(), LoadFactor: f, Effective: stretch(base, f)}
}

// RefreshSettings loads the fleet settings from the store, where any
// replica may have changed them, and tells every connected node of a new
// interval. Run calls it every FlushPeriod.
func (c *Core) RefreshSettings(ctx context.Context) error {
	s, err := c.store.GetSettings(ctx)
	if err != nil {
		return fmt.Errorf("refresh settings: %w", err)
	}
	c.applySettings(s)
	return nil
}

func (c *Core) applySettings(s heartbeatstore.Settings) {
	old := c.currentTimings()
	c.settings.Store(&s)
	if now := c.currentTimings(); now.Interval != old.Interval {
		c.log.Info("heartbeat interval changed", "interval", now.Interval, "grace", now.Grace, attrLoadFactor, stretchOf(&s))
		c.forSessions((*Session).notifyChanged)
	}
}

// SetSettings changes the fleet's base timings for every replica; the load
// factor still applies to them. A zero interval restores the defaults; a
// zero grace scales the default grace with the interval. The interval must
// be between max(1s, 2×FlushPeriod) and an hour (ErrInterval); the grace
// more than two intervals and at most a day (ErrGrace). The change is an
// event of the health log naming actor, with the timings it resolved to.
func (c *Core) SetSettings(ctx context.Context, t Timings, actor string) (Settings, error) {
	resolved := t
	if resolved.Interval == 0 {
		resolved.Interval = c.cfg.Interval
	}
	if resolved.Grace == 0 {
		resolved.Grace = time.Duration(float64(c.cfg.Grace) * float64(resolved.Interval) / float64(c.cfg.Interval))
	}
	if resolved.Interval < max(minInterval, 2*c.cfg.FlushPeriod) || resolved.Interval > maxInterval {
		return Settings{}, ErrInterval
	}
	if resolved.Grace <= 2*resolved.Interval || resolved.Grace > maxGrace {
		return Settings{}, ErrGrace
	}
	// The store keeps its stretch; this copy carries the one last loaded.
	stored := heartbeatstore.Settings{Interval: resolved.Interval, Grace: resolved.Grace, ChangedAt: c.clock.Now(), Stretch: c.settings.Load().Stretch}
	if t.Interval == 0 && t.Grace == 0 {
		stored.Interval, stored.Grace = 0, 0 // follow the configured defaults
	}
	// The timings in force until now keep applying to decisions for a
	// while (decisionTimings).
	stored.Previous = c.currentTimings()
	ev := heartbeatstore.Event{Time: stored.ChangedAt, Interval: resolved.Interval, Grace: resolved.Grace, Actor: actor}
	if err := c.store.PutSettings(ctx, stored, ev); err != nil {
		return Settings{}, fmt.Errorf("set settings: %w", err)
	}
	c.applySettings(stored)
	return c.Settings(), nil
}
