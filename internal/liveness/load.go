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
// than Config.MaxBeatRate (or after a mass boot, see bootWindow); it
// shrinks them only once the needed stretch is below lowerBelow of the
// current one, so that a fleet near the limit does not flap between two
// intervals.
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
	return max(1, min(need, stretchLimit(base)))
}

// stretchLimit is the most stretch that keeps base within its bounds, a
// whole number of steps.
func stretchLimit(base Timings) float64 {
	limit := min(maxStretch, float64(maxInterval)/float64(base.Interval), float64(maxGrace)/float64(base.Grace))
	return math.Floor(limit/stretchStep) * stretchStep
}

// load is what the decider weighs: the live nodes, for the beats they
// send, and the boots recorded in the last bootWindow, for the streams
// they will open.
type load struct {
	live, booted int
}

// need returns the load factor l calls for on base: the larger of the
// beats' and the boots' needs.
func (c *Core) need(l load, base Timings) float64 {
	return max(c.beatNeed(l, base), c.bootNeed(l, base))
}

func (c *Core) beatNeed(l load, base Timings) float64 {
	if c.cfg.MaxBeatRate <= 0 {
		return 1
	}
	return neededStretch(l.live, base, c.cfg.MaxBeatRate)
}

func (c *Core) bootNeed(l load, base Timings) float64 {
	if c.cfg.MaxConnectRate <= 0 {
		return 1
	}
	return bootStretch(l.booted, base, c.cfg.MaxConnectRate, stretchLimit(base))
}

// currentLoad counts the live nodes (only when the beats have a limit:
// it is a query) and the boots every replica recorded (only when the boots
// have one).
func (c *Core) currentLoad(ctx context.Context, now time.Time) (load, error) {
	l := load{booted: c.booted.total(now)}
	if c.cfg.MaxConnectRate > 0 {
		others, err := c.othersBoots(ctx, now)
		if err != nil {
			return load{}, err
		}
		c.others.Store(int64(others))
		l.booted += others
	}
	if c.cfg.MaxBeatRate > 0 {
		live, err := c.store.CountLive(ctx)
		if err != nil {
			return load{}, fmt.Errorf("counting live nodes: %w", err)
		}
		l.live = live
	}
	return l, nil
}

// adjustLoad changes the load factor when the nodes the store counts as
// live would beat faster than Config.MaxBeatRate at the base interval, or
// the nodes booted lately would open their streams faster than
// Config.MaxConnectRate (see bootWindow); or when the load is much lower
// than the current factor is for. Like an admin's change, the timings in
// force until now keep applying to decisions for their grace period
// (decisionTimings), so that nobody is declared silent while nodes learn
// the new interval: a booted node told the longer interval may open its
// stream as late as that. Decide calls it while holding the lease.
func (c *Core) adjustLoad(ctx context.Context, now time.Time) {
	if c.cfg.MaxBeatRate <= 0 && c.cfg.MaxConnectRate <= 0 {
		return
	}
	l, err := c.currentLoad(ctx, now)
	if err != nil {
		c.log.Warn("heartbeat load factor unchanged", attrError, err)
		return
	}
	if !c.stretchChanges(c.settings.Load(), l) {
		return
	}
	// Another replica may have changed the base timings since the last
	// refresh: decide again on the stored ones.
	if err := c.RefreshSettings(ctx); err != nil {
		c.log.Warn("heartbeat load factor unchanged", attrError, err)
		return
	}
	s := c.settings.Load()
	if !c.stretchChanges(s, l) {
		return
	}
	base := c.baseTimings(s)
	old, need := stretchOf(s), c.need(l, base)
	next := *s
	next.Stretch = need
	next.Previous = c.decisionTimings(now)
	next.ChangedAt = now
	if err := c.store.PutStretch(ctx, next); err != nil {
		c.log.Warn("heartbeat load factor not stored", attrError, err)
		return
	}
	c.logStretch(l, base, old, need)
	c.applySettings(next)
}

// stretchChanges reports whether l calls for another load factor than
// that of s: a higher one at once, a lower one past the hysteresis. A
// mass boot's stretch is undone in one step, once its boots no longer
// call for any: every change is pushed to every open stream, and by then
// the booted nodes' streams are open, so halving it as the boots age out
// would push to all of them several times.
func (c *Core) stretchChanges(s *heartbeatstore.Settings, l load) bool {
	base := c.baseTimings(s)
	cur, need := stretchOf(s), c.need(l, base)
	switch {
	case need > cur:
		return true
	case c.bootNeed(l, base) > 1:
		return false
	}
	return need < lowerBelow*cur
}

// logStretch says why the load factor went from old to need.
func (c *Core) logStretch(l load, base Timings, old, need float64) {
	from, to := stretch(base, old).Interval, stretch(base, need).Interval
	attrs := []any{attrCount, l.live, attrBooted, l.booted, attrLoadFactor, need}
	beats := float64(l.live) / base.Interval.Seconds()
	streams := float64(l.booted) / base.Interval.Seconds()
	switch {
	case need > old && need > c.beatNeed(l, base):
		c.log.Warn(fmt.Sprintf("%s nodes booted in the last minute would open %s heartbeat streams/s, over the limit %s/s: fleet interval %v → %v, over which they spread them",
			thousands(float64(l.booted)), thousands(streams), thousands(c.cfg.MaxConnectRate), from, to), attrs...)
	case need > old:
		c.log.Warn(fmt.Sprintf("heartbeat load %s/s over the limit %s/s: fleet interval %v → %v",
			thousands(beats), thousands(c.cfg.MaxBeatRate), from, to), attrs...)
	default:
		c.log.Info(fmt.Sprintf("heartbeat load back under the limits (%s beats/s, %s new streams/s): fleet interval %v → %v",
			thousands(beats), thousands(streams), from, to), attrs...)
	}
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
