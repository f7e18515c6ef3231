package clock

import (
	"context"
	"sync"
	"time"
)

// Fake is a Clock that moves only when told to. After channels fire and
// sleeps return when Advance or Set reaches their deadline. It is safe for
// concurrent use.
type Fake struct {
	mu      sync.Mutex
	armed   *sync.Cond // broadcast when a timer is armed
	now     time.Time
	waiters []*waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

var _ Clock = (*Fake)(nil)

// NewFake returns a clock stopped at t.
func NewFake(t time.Time) *Fake {
	c := &Fake{now: t}
	c.armed = sync.NewCond(&c.mu)
	return c
}

// Now returns the clock's time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the clock's time once it has
// advanced by d; at once when d is not positive.
func (c *Fake) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arm(d).ch
}

func (c *Fake) arm(d time.Duration) *waiter {
	w := &waiter{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		w.ch <- c.now
		return w
	}
	c.waiters = append(c.waiters, w)
	c.armed.Broadcast()
	return w
}

// Sleep waits until the clock has advanced by d, or ctx ends.
func (c *Fake) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	w := c.arm(d)
	c.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		c.drop(w)
		return ctx.Err()
	}
}

// drop forgets a waiter nobody waits on any more, so that BlockUntil counts
// only live ones.
func (c *Fake) drop(w *waiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.waiters {
		if x == w {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			return
		}
	}
}

// Advance moves the clock forward by d and fires the timers now due.
func (c *Fake) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t and fires the timers now due. Moving it back
// fires nothing.
func (c *Fake) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
}

// Waiters returns how many timers and sleeps are pending.
func (c *Fake) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// BlockUntil waits until at least n timers or sleeps are pending, so that a
// test advances the clock only once the goroutines it drives wait on it.
func (c *Fake) BlockUntil(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.waiters) < n {
		c.armed.Wait()
	}
}
