// Package livenesstest has test helpers for the heartbeat core and the
// packages built on it.
package livenesstest

import (
	"sync"
	"time"
)

// Clock is a health.Clock that moves only when told to. After channels
// fire when Advance or Set reaches their deadline.
type Clock struct {
	mu      sync.Mutex
	armed   *sync.Cond // broadcast when a timer is armed
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock {
	c := &Clock{now: t}
	c.armed = sync.NewCond(&c.mu)
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the time once the clock has
// advanced by d.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	c.armed.Broadcast()
	return ch
}

// Advance moves the clock forward by d and fires the timers now due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
}

// BlockUntil waits until at least n timers are pending, so that a test
// advances the clock only once the goroutines it drives wait on it.
func (c *Clock) BlockUntil(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.waiters) < n {
		c.armed.Wait()
	}
}
