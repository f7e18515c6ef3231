// Package clock is berth's one time source. Every period, deadline, expiry
// and timestamp that decides something goes through a Clock, so that tests
// move time by hand (Fake) instead of sleeping.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and waits.
type Clock interface {
	// Now is time.Now.
	Now() time.Time
	// After is time.After: the channel receives once d has passed.
	After(d time.Duration) <-chan time.Time
	// Sleep waits for d, or until ctx ends and then returns ctx's error.
	Sleep(ctx context.Context, d time.Duration) error
}

// System returns the real clock.
func System() Clock { return system{} }

// Or returns c, or the real clock when c is nil: how a Config fills its
// Clock's default.
func Or(c Clock) Clock {
	if c == nil {
		return System()
	}
	return c
}

type system struct{}

func (system) Now() time.Time                         { return time.Now() }
func (system) After(d time.Duration) <-chan time.Time { return time.After(d) }

func (system) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
