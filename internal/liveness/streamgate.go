package liveness

import (
	"sync"
	"time"
)

// The stretch for boots (bootload.go) spreads the streams of a mass boot's
// nodes, but the first few hundred are told the interval before it rises,
// and open their streams while the rest of the fleet still boots: a full
// TLS handshake each, taken from a node still booting. So while this
// replica records boots faster than Config.MaxConnectRate, it defers new
// streams instead: the transport refuses a connection that asks to be
// deferrable (a node opening its stream, which will retry with backoff)
// as soon as its TLS ClientHello is read, before any key exchange, at a
// small part of a handshake's cost.
//
// A deferred node stays healthy: its boot counted as its first beat, and
// the stretch in force by then covers the wait. To keep that true however
// long the boots go on, one deferral lasts at most half the interval in
// force, and is followed by as long a time that lets streams in.

// deferWindow is how far back DeferStream counts boots: the current and
// the previous second, so that a storm's batched handoffs (every few
// hundred milliseconds) keep it deferring, and it lets streams in again
// within two seconds of the last boot.
const deferWindow = 2

// streamGate is the state of DeferStream.
type streamGate struct {
	mu sync.Mutex
	// since is when the current deferral began; zero while streams are
	// let in.
	since time.Time
	// openUntil ends the time streams are let in after a deferral that
	// reached its bound.
	openUntil time.Time
	// deferred counts the streams the current deferral refused, the
	// last of them at last.
	deferred int64
	last     time.Time
}

// DeferStream reports whether a node's new heartbeat stream should be
// deferred now (see streamGate): this replica is recording boots faster
// than Config.MaxConnectRate, and the current deferral has not reached
// its bound. 0 for MaxConnectRate never defers. It is cheap enough for
// every new connection.
func (c *Core) DeferStream() bool {
	if c.cfg.MaxConnectRate <= 0 {
		return false
	}
	now := c.clock.Now()
	// More boots in the current and the previous second than streams
	// allowed in one: the current second has only begun, so the window
	// is one to two seconds long.
	booting := float64(c.booted.recent(now, deferWindow)) > c.cfg.MaxConnectRate
	bound := c.currentTimings().Interval / 2
	g := &c.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !booting || now.Before(g.openUntil):
		c.endDeferral(g, "the fleet's boots slowed down")
		return false
	case g.since.IsZero():
		g.since = now
		c.log.Info("deferring new heartbeat streams while the fleet boots: their nodes retry them later",
			"bound", bound)
	case now.Sub(g.since) >= bound:
		c.endDeferral(g, "the deferral reached its bound")
		g.openUntil = now.Add(bound)
		return false
	}
	g.deferred, g.last = g.deferred+1, now
	c.stats.deferred.Add(1)
	return true
}

// endDeferral ends the current deferral, if any; g.mu is held. It is
// seen, and logged, at the first stream after it ended.
func (c *Core) endDeferral(g *streamGate, why string) {
	if g.since.IsZero() {
		return
	}
	c.log.Info("letting new heartbeat streams in again: "+why, "deferred", g.deferred,
		"over", g.last.Sub(g.since).Round(time.Millisecond))
	g.since, g.deferred = time.Time{}, 0
}
