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
		if ok, _ := l.Take("a"); !ok {
			t.Fatalf("take %d of a full bucket refused", i+1)
		}
	}
	ok, wait := l.Take("a")
	if ok || wait != 10*time.Second {
		t.Fatalf("take from an empty bucket = %v, %v; want refused, retry in 10s", ok, wait)
	}
	clk.advance(4 * time.Second)
	if ok, wait := l.Take("a"); ok || wait != 6*time.Second {
		t.Fatalf("after 4s = %v, %v; want refused, retry in 6s", ok, wait)
	}
	clk.advance(6 * time.Second)
	if ok, _ := l.Take("a"); !ok {
		t.Fatal("a token earned back was refused")
	}
	if ok, _ := l.Take("a"); ok {
		t.Fatal("only one token was earned back, a second take passed")
	}
	clk.advance(time.Hour)
	for i := range 3 {
		if ok, _ := l.Take("a"); !ok {
			t.Fatalf("bucket did not refill to its burst: take %d refused", i+1)
		}
	}
	if ok, _ := l.Take("a"); ok {
		t.Fatal("bucket refilled beyond its burst")
	}
}

func TestKeysAreIndependent(t *testing.T) {
	l, _ := newLimiter(1, time.Minute, 0)
	if ok, _ := l.Take("a"); !ok {
		t.Fatal("first take of a refused")
	}
	if ok, _ := l.Take("a"); ok {
		t.Fatal("second take of a passed")
	}
	if ok, _ := l.Take("b"); !ok {
		t.Fatal("an empty bucket for a blocked b")
	}
}

func TestRefund(t *testing.T) {
	l, _ := newLimiter(2, time.Minute, 0)
	for range 10 {
		if ok, _ := l.Take("a"); !ok {
			t.Fatal("refunded takes ran the bucket dry")
		}
		l.Refund("a")
	}
	l.Take("a")
	l.Take("a")
	l.Refund("a")
	l.Refund("a")
	l.Refund("a") // one more than taken: the bucket stays at its burst
	for range 2 {
		if ok, _ := l.Take("a"); !ok {
			t.Fatal("refunds did not give the tokens back")
		}
	}
	if ok, _ := l.Take("a"); ok {
		t.Fatal("an extra refund raised the bucket above its burst")
	}
	l.Refund("never-seen") // no bucket, nothing to do
	if l.Len() != 1 {
		t.Fatalf("refund of an unknown key made a bucket: %d keys", l.Len())
	}
}

func TestMaxKeys(t *testing.T) {
	l, clk := newLimiter(1, time.Minute, 4)
	for i := range 4 {
		l.Take(fmt.Sprint(i))
	}
	// Every bucket is empty: a fifth key passes untracked, every time.
	for range 3 {
		if ok, _ := l.Take("new"); !ok {
			t.Fatal("a new key was refused while the limiter was full")
		}
	}
	if l.Len() != 4 {
		t.Fatalf("limiter grew past MaxKeys: %d keys", l.Len())
	}
	// Once the old buckets refilled they make room, and the new key is
	// tracked like any other.
	clk.advance(time.Minute)
	l.Take("new")
	if ok, _ := l.Take("new"); ok {
		t.Fatal("new key was not tracked once there was room")
	}
	if l.Len() != 1 {
		t.Fatalf("refilled buckets were not dropped: %d keys", l.Len())
	}
}

func TestConcurrentTakesNeverOverspend(t *testing.T) {
	l, _ := newLimiter(50, time.Hour, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := l.Take("a"); ok {
				mu.Lock()
				passed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if passed != 50 {
		t.Fatalf("%d concurrent takes passed, want exactly the burst of 50", passed)
	}
}
