package heartbeatstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

// BenchmarkMarkSilent measures the decider's scan of 100,000 healthy nodes
// that all beat recently, which is what it does every second: one op is one
// MarkSilent that finds nobody silent (renewing the lease).
func BenchmarkMarkSilent(b *testing.B) {
	const rows = 100_000
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(fmt.Sprintf("%s/nodes=%d", backend, rows), func(b *testing.B) {
			ctx := context.Background()
			s, _ := beatingStore(b, backend, rows, t0)
			if held, _, err := s.AcquireLease(ctx, "d", t0, t0.Add(time.Hour)); err != nil || !held {
				b.Fatal(held, err)
			}
			b.ResetTimer()
			for range b.N {
				r, err := s.MarkSilent(ctx, heartbeatstore.Silence{Holder: "d", Now: t0, LeaseUntil: t0.Add(time.Hour),
					SuspectBefore: t0.Add(-20 * time.Second), UnreachableBefore: t0.Add(-40 * time.Second)})
				if err != nil || r.Suspect+r.Unreachable != 0 {
					b.Fatal(r, err)
				}
			}
		})
	}
}

// BenchmarkFlush measures one periodic flush of 1,000 nodes that all beat
// since the last one (about what a replica of 2,500 nodes beating every 5 s
// writes every 2 s): one op is one flush, rows/op and the client's
// allocations (-benchmem) are per flush.
func BenchmarkFlush(b *testing.B) {
	const rows = 1000
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(fmt.Sprintf("%s/nodes=%d", backend, rows), func(b *testing.B) {
			ctx := context.Background()
			s, obs := beatingStore(b, backend, rows, t0)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				// A few nodes fewer each time, as beats spread over
				// flushes: the statement differs in length from one
				// flush to the next.
				batch := obs[:rows-n%7]
				for i := range batch {
					batch[i].LastSeen = t0.Add(time.Duration(n) * time.Second)
					batch[i].Sequence = int64(n + 1)
				}
				if _, err := s.Flush(ctx, batch, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// beatingStore opens a heartbeat store on backend ("sqlite" or "postgres")
// holding rows healthy nodes that beat at t0, and returns their beats.
func beatingStore(b *testing.B, backend string, rows int, t0 time.Time) (heartbeatstore.Store, []heartbeatstore.Observation) {
	b.Helper()
	ctx := context.Background()
	var (
		s   heartbeatstore.Store
		err error
	)
	if backend == "sqlite" {
		s, err = heartbeatstore.Open(ctx, db.SQLite, filepath.Join(b.TempDir(), "hb.db"))
	} else {
		s, err = heartbeatstore.Open(ctx, db.Postgres, pgtest.NewDatabase(b))
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	obs := make([]heartbeatstore.Observation, rows)
	for i := range obs {
		obs[i] = heartbeatstore.Observation{NodeID: fmt.Sprintf("node-%06d", i), LastSeen: t0, Sequence: 1, BootID: "b", Status: heartbeatstore.StatusUp}
	}
	if _, err := s.Flush(ctx, obs, nil); err != nil {
		b.Fatal(err)
	}
	return s, obs
}
