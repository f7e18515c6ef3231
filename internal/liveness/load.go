package liveness

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// The load factor: the decider stretches the fleet's timings in steps of
// stretchStep, up to maxStretch, as soon as the fleet would beat faster
// than Config.MaxBeatRate; it shrinks them only once the needed stretch is
// below lowerBelow of the current one, so that a fleet near the limit does
// not flap between two intervals.
const (
	stretchStep = 0.25
	maxStretch  = 30
	lowerBelow  = 0.8
)

// stretchOf returns the load factor of s: at least 1.
func stretchOf(s *heartbeatstore.Settings) float64 {
	return max(1, s.Stretch)
}

// stretch multiplies t by f, within the bounds of the settings.
func stretch(t Timings, f float64) Timings {
	if f <= 1 {
		return t
	}
	return Timings{
		Interval: min(maxInterval, time.Duration(float64(t.Interval)*f).Truncate(time.Millisecond)),
		Grace:    min(maxGrace, time.Duration(float64(t.Grace)*f).Truncate(time.Millisecond)),
	}
}

// neededStretch returns the load factor that brings the beats of live nodes
// at the base interval under maxRate, rounded up to a step, between 1 and
// the most that keeps the timings within their bounds.
func neededStretch(live int, base Timings, maxRate float64) float64 {
	load := float64(live) / base.Interval.Seconds()
	need := math.Ceil(load/maxRate/stretchStep) * stretchStep
	limit := min(maxStretch, float64(maxInterval)/float64(base.Interval), float64(maxGrace)/float64(base.Grace))
	limit = math.Floor(limit/stretchStep) * stretchStep
	return max(1, min(need, limit))
}

// adjustLoad changes the load factor when the nodes the store counts as
// live would beat faster than Config.MaxBeatRate at the base interval, or
// much slower than it at the current factor. Like an admin's change, the
// timings in force until now keep applying to decisions for their grace
// period (decisionTimings), so that nobody is declared silent while nodes
// learn the new interval. Decide calls it while holding the lease.
func (c *Core) adjustLoad(ctx context.Context, now time.Time) {
	if c.cfg.MaxBeatRate <= 0 {
		return
	}
	live, err := c.store.CountLive(ctx)
	if err != nil {
		c.log.Warn("counting live nodes failed; heartbeat load factor unchanged", attrError, err)
		return
	}
	if !c.stretchChanges(c.settings.Load(), live) {
		return
	}
	// Another replica may have changed the base timings since the last
	// refresh: decide again on the stored ones.
	if err := c.RefreshSettings(ctx); err != nil {
		c.log.Warn("heartbeat load factor unchanged", attrError, err)
		return
	}
	s := c.settings.Load()
	if !c.stretchChanges(s, live) {
		return
	}
	base := c.baseTimings(s)
	old, need := stretchOf(s), neededStretch(live, base, c.cfg.MaxBeatRate)
	next := *s
	next.Stretch = need
	next.Previous = c.decisionTimings(now)
	next.ChangedAt = now
	if err := c.store.PutStretch(ctx, next); err != nil {
		c.log.Warn("heartbeat load factor not stored", attrError, err)
		return
	}
	load := float64(live) / base.Interval.Seconds()
	from, to := stretch(base, old).Interval, stretch(base, need).Interval
	attrs := []any{attrCount, live, attrLoadFactor, need}
	if need > old {
		c.log.Warn(fmt.Sprintf("heartbeat load %s/s over the limit %s/s: fleet interval %v → %v",
			thousands(load), thousands(c.cfg.MaxBeatRate), from, to), attrs...)
	} else {
		c.log.Info(fmt.Sprintf("heartbeat load %s/s back under the limit %s/s: fleet interval %v → %v",
			thousands(load), thousands(c.cfg.MaxBeatRate), from, to), attrs...)
	}
	c.applySettings(next)
}

// stretchChanges reports whether live nodes call for another load factor
// than that of s: a higher one at once, a lower one past the hysteresis.
func (c *Core) stretchChanges(s *heartbeatstore.Settings, live int) bool {
	cur, need := stretchOf(s), neededStretch(live, c.baseTimings(s), c.cfg.MaxBeatRate)
	return need > cur || need < lowerBelow*cur
}

// thousands formats a rate for log messages: rounded to a whole number
// with thousands separators, or to three digits below 100.
func thousands(f float64) string {
	if f < 100 {
		return strconv.FormatFloat(f, 'g', 3, 64)
	}
	s := strconv.FormatInt(int64(math.Round(f)), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
