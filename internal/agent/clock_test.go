package agent

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestClockOffset(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name           string
		sent, received time.Time
		server         time.Time
		want           time.Duration
	}{
		{"same clock, no delay", t0, t0, t0, 0},
		{"same clock, answered mid-way", t0, t0.Add(200 * time.Millisecond), t0.Add(100 * time.Millisecond), 0},
		{"server ahead", t0, t0.Add(200 * time.Millisecond), t0.Add(time.Hour + 100*time.Millisecond), time.Hour},
		{"server behind", t0, t0.Add(2 * time.Second), t0.Add(-90 * time.Second), -91 * time.Second},
		{"local clock stepped back during the call", t0, t0.Add(-time.Second), t0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clockOffset(tt.sent, tt.received, tt.server); got != tt.want {
				t.Errorf("clockOffset = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBootReportsClockOffset: the agent compares the server's time in the
// Resume answer with its own, reports the offset in its JSON result and
// warns when it is over a minute.
func TestBootReportsClockOffset(t *testing.T) {
	for _, tt := range []struct {
		name     string
		offset   time.Duration
		wantWarn bool
	}{
		{"small", 3 * time.Second, false},
		{"two hours ahead", 2 * time.Hour, true},
		{"ten minutes behind", -10 * time.Minute, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRegistration{}
			h := newHarness(t, fake)
			var logs bytes.Buffer
			h.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
				// The fake clock stands still during the call: no round trip.
				return &berthv1.ResumeResponse{
					Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour),
					ServerTime:  timestamppb.New(h.clock.Now().Add(tt.offset)),
				}, nil
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			r := h.result(t)
			if r.ClockOffsetSeconds == nil || *r.ClockOffsetSeconds != tt.offset.Seconds() {
				t.Errorf("clock_offset_seconds = %v, want %v", r.ClockOffsetSeconds, tt.offset.Seconds())
			}
			if warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "clock differs"); warned != tt.wantWarn {
				t.Errorf("warned = %v, want %v; logs:\n%s", warned, tt.wantWarn, logs.String())
			}
		})
	}
}

// TestBootWithoutServerTime: an answer without the server's time (an
// older server) leaves the offset out of the result.
func TestBootWithoutServerTime(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)}, nil
	}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(h.stdout.String(), `"action":"resumed"`) || strings.Contains(h.stdout.String(), "clock_offset_seconds") {
		t.Errorf("stdout = %s, want no clock_offset_seconds", h.stdout.String())
	}
}
