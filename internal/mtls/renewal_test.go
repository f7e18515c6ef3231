package mtls

import (
	"testing"
	"time"
)

func TestRenewalTime(t *testing.T) {
	issued := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name                string
		notBefore, notAfter time.Time
		want                time.Time
	}{
		{"30 days, backdated", issued.Add(-NodeBackdate), issued.Add(30 * 24 * time.Hour), issued.Add(20 * 24 * time.Hour)},
		{"one hour, backdated", issued.Add(-NodeBackdate), issued.Add(time.Hour), issued.Add(40 * time.Minute)},
		{"one minute, backdated: not due at once", issued.Add(-NodeBackdate), issued.Add(time.Minute), issued.Add(40 * time.Second)},
		{"not backdated", issued, issued.Add(3 * time.Hour), issued.Add(2*time.Hour + NodeBackdate/3)},
		{"backdated by a minute, lifetime shorter than the backdate", issued.Add(-time.Minute), issued.Add(time.Minute), issued.Add(20 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RenewalTime(tt.notBefore, tt.notAfter); !got.Equal(tt.want) {
				t.Errorf("RenewalTime = %v, want %v", got, tt.want)
			}
		})
	}
}
