package watch

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	for failures, ceiling := range []time.Duration{
		100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		time.Second, time.Second, time.Second,
	} {
		for range 100 {
			if d := b.delay(failures); d < ceiling/2 || d > ceiling {
				t.Fatalf("delay(%d) = %v, want between %v and %v", failures, d, ceiling/2, ceiling)
			}
		}
	}
	if d := b.delay(1 << 20); d < b.Max/2 || d > b.Max {
		t.Errorf("delay after many failures = %v", d)
	}
}
