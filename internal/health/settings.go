package health

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/store/hbstore"
)

// Bounds of the fleet settings.
const (
	minInterval = time.Second
	maxInterval = time.Hour
	maxGrace    = 24 * time.Hour
)

// Timings are a heartbeat interval and grace period.
type Timings = hbstore.Timings

// Settings are the fleet's timings in force and the configured defaults.
type Settings struct {
	Current  Timings
	Defaults Timings
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

// currentTimings returns the timings in force, as last loaded.
func (c *Core) currentTimings() Timings {
	s := c.settings.Load()
	return c.resolve(Timings{Interval: s.Interval, Grace: s.Grace})
}

// decisionTimings returns the timings the decider applies at now: the
// longer of the current and the previous ones while nodes may still be
// beating at the previous interval.
func (c *Core) decisionTimings(now time.Time) Timings {
	s := c.settings.Load()
	cur := c.resolve(Timings{Interval: s.Interval, Grace: s.Grace})
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

// Settings returns the timings in force, as last loaded from the store, and
// the defaults.
func (c *Core) Settings() Settings {
	return Settings{Current: c.currentTimings(), Defaults: c.defaults()}
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

func (c *Core) applySettings(s hbstore.Settings) {
	old := c.currentTimings()
	c.settings.Store(&s)
	if now := c.currentTimings(); now.Interval != old.Interval {
		c.log.Info("heartbeat interval changed", "interval", now.Interval, "grace", now.Grace)
		c.forSessions((*Session).notifyChanged)
	}
}

// SetSettings changes the fleet's timings for every replica. A zero
// interval restores the defaults; a zero grace scales the default grace
// with the interval. The interval must be between max(1s, 2×FlushPeriod)
// and an hour (ErrInterval); the grace more than two intervals and at most
// a day (ErrGrace).
func (c *Core) SetSettings(ctx context.Context, t Timings) (Settings, error) {
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
	stored := hbstore.Settings{Interval: resolved.Interval, Grace: resolved.Grace, ChangedAt: c.clock.Now()}
	if t.Interval == 0 && t.Grace == 0 {
		stored.Interval, stored.Grace = 0, 0 // follow the configured defaults
	}
	// The timings in force until now keep applying to decisions for a
	// while (decisionTimings).
	stored.Previous = c.currentTimings()
	if err := c.store.PutSettings(ctx, stored); err != nil {
		return Settings{}, fmt.Errorf("set settings: %w", err)
	}
	c.applySettings(stored)
	return c.Settings(), nil
}
