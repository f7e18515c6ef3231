package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeNow is a clock the test steps.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func newLimiter(burst int, every time.Duration, maxKeys int) (*Limiter, *fakeNow) {
	clk := &fakeNow{t: time.Unix(1_700_000_000, 0)}
	return New(Config{Burst: burst, Interval: every, Now: clk.now, MaxKeys: maxKeys}), clk
}

func TestBurstThenRefill(t *testing.T) {
	l, clk := newLimiter(3, 10*time.Second, 0)
	for i := range 3 {
		if ok, _ := take(l, "a"); !ok {
			t.Fatalf("take %d of a full bucket refused", i+1)
		}
	}
	ok, wait := take(l, "a")
	if ok || wait != 10*time.Second {
		t.Fatalf("take from an empty bucket = %v, %v; want refused, retry in 10s", ok, wait)
	}
	clk.advance(4 * time.Second)
	if ok, wait := take(l, "a"); ok || wait != 6*time.Second {
		t.Fatalf("after 4s = %v, %v; want refused, retry in 6s", ok, wait)
	}
	clk.advance(6 * time.Second)
	if ok, _ := take(l, "a"); !ok {
		t.Fatal("a token earned back was refused")
	}
	if ok, _ := take(l, "a"); ok {
		t.Fatal("only one token was earned back, a second take passed")
	}
	clk.advance(time.Hour)
	for i := range 3 {
		if ok, _ := take(l, "a"); !ok {
			t.Fatalf("bucket did not refill to its burst: take %d refused", i+1)
		}
	}
	if ok, _ := take(l, "a"); ok {
		t.Fatal("bucket refilled beyond its burst")
	}
}

func TestKeysAreIndependent(t *testing.T) {
	l, _ := newLimiter(1, time.Minute, 0)
	if ok, _ := take(l, "a"); !ok {
		t.Fatal("first take of a refused")
	}
	if ok, _ := take(l, "a"); ok {
		t.Fatal("second take of a passed")
	}
	if ok, _ := take(l, "b"); !ok {
		t.Fatal("an empty bucket for a blocked b")
	}
}

// TestAllowAndCharge: Allow spends nothing; Charge spends, and failures
// charged together beyond the burst are a debt paid by waiting longer.
func TestAllowAndCharge(t *testing.T) {
	l, clock := newLimiter(2, 10*time.Second, 0)
	for range 5 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatal("Allow refused a key that was never charged")
		}
	}
	l.Charge("a")
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("Allow refused with one token left")
	}
	// Three failures that were in flight at once: two over the burst.
	for range 3 {
		l.Charge("a")
	}
	ok, wait := l.Allow("a")
	if ok || wait != 30*time.Second {
		t.Fatalf("after a debt of two, Allow = %v, %v; want false, 30s (three tokens to earn)", ok, wait)
	}
	clock.advance(29 * time.Second)
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("Allow let a key through before its debt was paid")
	}
	clock.advance(2 * time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("Allow refused after the debt was paid")
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("one key's debt limited another")
	}
}

func TestMaxKeys(t *testing.T) {
	l, clk := newLimiter(1, time.Minute, 4)
	for i := range 4 {
		take(l, fmt.Sprint(i))
	}
	// Every bucket is empty: a fifth key passes untracked, every time.
	for range 3 {
		if ok, _ := take(l, "new"); !ok {
			t.Fatal("a new key was refused while the limiter was full")
		}
	}
	if l.Len() != 4 {
		t.Fatalf("limiter grew past MaxKeys: %d keys", l.Len())
	}
	// Once the old buckets refilled they make room, and the new key is
	// tracked like any other.
	clk.advance(time.Minute)
	take(l, "new")
	if ok, _ := take(l, "new"); ok {
		t.Fatal("new key was not tracked once there was room")
	}
	if l.Len() != 1 {
		t.Fatalf("refilled buckets were not dropped: %d keys", l.Len())
	}
}

// TestConcurrentChargesAllCount: failures charged at once from many
// goroutines are each counted, none lost: 200 charges on a burst of 50
// leave a debt of 150, earned back one per hour.
func TestConcurrentChargesAllCount(t *testing.T) {
	l, _ := newLimiter(50, time.Hour, 0)
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Charge("a")
		}()
	}
	wg.Wait()
	if ok, wait := l.Allow("a"); ok || wait != 151*time.Hour {
		t.Fatalf("after 200 charges on a burst of 50: Allow = %v, %v; want false, 151h", ok, wait)
	}
}

// take is an attempt that fails whenever it is let through: Allow, then
// Charge.
func take(l *Limiter, key string) (bool, time.Duration) {
	ok, wait := l.Allow(key)
	if ok {
		l.Charge(key)
	}
	return ok, wait
}
