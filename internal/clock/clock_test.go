package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func TestFakeAfterFiresWhenDue(t *testing.T) {
	c := NewFake(t0)
	early, late := c.After(time.Second), c.After(time.Minute)
	if c.Waiters() != 2 {
		t.Fatalf("Waiters = %d, want 2", c.Waiters())
	}
	c.Advance(999 * time.Millisecond)
	select {
	case <-early:
		t.Fatal("After(1s) fired 1ms early")
	default:
	}
	c.Advance(time.Millisecond)
	if got := <-early; !got.Equal(t0.Add(time.Second)) {
		t.Errorf("After(1s) received %v, want %v", got, t0.Add(time.Second))
	}
	select {
	case <-late:
		t.Fatal("After(1m) fired after 1s")
	default:
	}
	c.Set(t0.Add(time.Hour))
	if got := <-late; !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("After(1m) received %v, want the time it was set to", got)
	}
	if c.Waiters() != 0 {
		t.Errorf("Waiters = %d after both fired", c.Waiters())
	}
}

func TestFakeAfterZeroFiresAtOnce(t *testing.T) {
	c := NewFake(t0)
	for _, d := range []time.Duration{0, -time.Second} {
		select {
		case got := <-c.After(d):
			if !got.Equal(t0) {
				t.Errorf("After(%v) received %v", d, got)
			}
		default:
			t.Errorf("After(%v) did not fire at once", d)
		}
	}
}

func TestFakeSetBackFiresNothing(t *testing.T) {
	c := NewFake(t0)
	ch := c.After(time.Second)
	c.Set(t0.Add(-time.Hour))
	select {
	case <-ch:
		t.Fatal("moving the clock back fired a timer")
	default:
	}
	if !c.Now().Equal(t0.Add(-time.Hour)) {
		t.Errorf("Now = %v", c.Now())
	}
}

func TestFakeSleep(t *testing.T) {
	c := NewFake(t0)
	done := make(chan error, 1)
	go func() { done <- c.Sleep(context.Background(), time.Minute) }()
	c.BlockUntil(1)
	c.Advance(time.Minute)
	if err := <-done; err != nil {
		t.Fatalf("Sleep = %v", err)
	}
}

func TestFakeSleepCanceled(t *testing.T) {
	c := NewFake(t0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Sleep(ctx, time.Minute) }()
	c.BlockUntil(1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v, want context.Canceled", err)
	}
	if c.Waiters() != 0 {
		t.Errorf("a canceled sleep is still pending: %d waiters", c.Waiters())
	}
	if err := c.Sleep(ctx, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep with a canceled context = %v", err)
	}
}

func TestSystemSleepCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := System().Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v, want context.Canceled", err)
	}
	if err := System().Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0) = %v", err)
	}
}

func TestOr(t *testing.T) {
	f := NewFake(t0)
	if Or(f) != Clock(f) {
		t.Error("Or replaced a given clock")
	}
	if _, ok := Or(nil).(system); !ok {
		t.Error("Or(nil) is not the system clock")
	}
}
