package agent

import (
	"math/rand/v2"
	"time"
)

// DefaultBackoff doubles from 250ms to 10s, with full jitter.
var DefaultBackoff = Backoff{Initial: 250 * time.Millisecond, Max: 10 * time.Second}

// MinDelay is the least any retry waits, whatever the jitter draws, so that
// a server that fails fast is never hammered in a tight loop.
const MinDelay = 10 * time.Millisecond

// Backoff is capped exponential backoff with full jitter: retry n waits a
// uniformly random time in [MinDelay, min(Max, Initial·2^n)]. Full jitter
// spreads out a fleet that lost its server at the same moment (a power
// restore), so it does not come back in lockstep.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	// Rand returns a uniform integer in [0, n). Default math/rand/v2.Int64N.
	Rand func(n int64) int64
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Rand == nil {
		b.Rand = rand.Int64N
	}
	return b
}

// Ceiling is the longest retry n may wait: min(Max, Initial·2^n).
func (b Backoff) Ceiling(n int) time.Duration {
	b = b.withDefaults()
	c := b.Initial
	for i := 0; i < n && c < b.Max; i++ {
		c *= 2
	}
	return min(c, b.Max)
}

// Delay draws the wait before retry n (0 for the first retry).
func (b Backoff) Delay(n int) time.Duration {
	b = b.withDefaults()
	c := b.Ceiling(n)
	return max(time.Duration(b.Rand(int64(c)+1)), MinDelay)
}
