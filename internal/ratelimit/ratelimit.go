// Package ratelimit holds token buckets keyed by a string, such as a
// source address: each key may spend Burst tokens at once and earns one
// back every Interval. It is transport-free and takes its clock from the
// caller, so tests step time instead of sleeping.
package ratelimit

import (
	"sync"
	"time"
)

// DefaultMaxKeys bounds the buckets kept at once.
const DefaultMaxKeys = 1 << 16

// Config configures a Limiter.
type Config struct {
	// Burst is how many tokens a key holds when full. Required.
	Burst int
	// Interval is how long a key takes to earn one token back. Required.
	Interval time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxKeys bounds the memory of the limiter (DefaultMaxKeys when 0).
	// When every tracked key is still refilling and a new key comes, the
	// new key is let through untracked: a caller with that many addresses
	// is not slowed by per-address limits anyway, and the limiter must not
	// grow without bound or lock everyone out.
	MaxKeys int
}

// Limiter is a set of token buckets. It is safe for concurrent use.
type Limiter struct {
	c       Config
	mu      sync.Mutex
	buckets map[string]*bucket
}

// bucket holds tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter; it panics on a Config without Burst or Interval,
// which is a programming error.
func New(c Config) *Limiter {
	if c.Burst <= 0 || c.Interval <= 0 {
		panic("ratelimit: Burst and Interval must be positive")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	return &Limiter{c: c, buckets: map[string]*bucket{}}
}

// refill brings b up to now.
func (l *Limiter) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(float64(l.c.Burst), b.tokens+float64(elapsed)/float64(l.c.Interval))
		b.last = now
	}
}

// Allow reports whether key has a token left, spending nothing, and when
// it has none, how long until one is earned back. With Charge it limits
// failures rather than attempts: an attempt that succeeds costs nothing.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.c.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		return true, 0
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false, max(time.Duration((1-b.tokens)*float64(l.c.Interval)), time.Millisecond)
	}
	return true, 0
}

// Charge spends one of key's tokens for an attempt that failed. It may leave the bucket in debt: failures that were in flight
// together, all let through by Allow, are each paid for by waiting.
func (l *Limiter) Charge(key string) {
	now := l.c.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if !l.room(now) {
			return
		}
		b = &bucket{tokens: float64(l.c.Burst), last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	b.tokens--
}

// room makes room for a new key, dropping the buckets that have refilled
// (they hold nothing a fresh bucket would not), and reports whether there
// is room now.
func (l *Limiter) room(now time.Time) bool {
	if len(l.buckets) < l.c.MaxKeys {
		return true
	}
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= float64(l.c.Burst) {
			delete(l.buckets, k)
		}
	}
	return len(l.buckets) < l.c.MaxKeys
}

// Len returns how many keys are tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
