package liveness

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/liveness/livenesstest"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

// BenchmarkBeat measures what the core sustains: many goroutines beat for
// 10,000 or 50,000 simulated nodes as fast as they can, while a flusher
// writes to the store every second (real time), as Run would. The fake
// clock moves an interval for every quarter of the nodes' beats, so the rate
// limit never refuses a beat.
//
// Reported: beats/s; heap bytes per node (sessions connected and one beat
// each, from runtime.MemStats); rows/s and flushes/s written to the store
// during the load; ms/flush, the time one batched flush of every node takes.
// shards=1 is the single-mutex variant, kept for comparison.
func BenchmarkBeat(b *testing.B) {
	for _, nodes := range []int{10_000, 50_000} {
		for _, shards := range []int{1, defaultShards} {
			b.Run(fmt.Sprintf("sqlite/nodes=%d/shards=%d", nodes, shards), func(b *testing.B) {
				benchBeat(b, newSQLiteStore(b), nodes, shards)
			})
		}
		b.Run(fmt.Sprintf("postgres/nodes=%d/shards=%d", nodes, defaultShards), func(b *testing.B) {
			benchBeat(b, newPostgresStore(b, pgtest.NewDatabase(b)), nodes, defaultShards)
		})
	}
}

func benchBeat(b *testing.B, store heartbeatstore.Store, n, shards int) {
	ctx := context.Background()
	clock := livenesstest.NewClock(t0)
	c := newCore(b, store, clock, "bench")
	c.shards = newShards(shards)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%06d", i)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	sessions := make([]*Session, n)
	seqs := make([]int64, n)
	for i, id := range ids {
		s, err := c.Connect(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		sessions[i] = s
	}
	beat := func(i int) error {
		seqs[i]++
		_, err := sessions[i].Beat(context.Background(), Beat{Sequence: seqs[i], BootID: "0b6c1a6e-2d4e-4d1b-9a8e-3f1f6b2c9d11", Status: heartbeatstore.StatusUp, Uptime: time.Hour})
		return err
	}
	for i := range n {
		if err := beat(i); err != nil {
			b.Fatal(err)
		}
	}
	perNode := float64(heap()-before) / float64(n)
	start := time.Now()
	mustFlush(b, c)
	firstFlush := time.Since(start)

	stop := make(chan struct{})
	var flushTime atomic.Int64
	var flushing sync.WaitGroup
	flushing.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				start := time.Now()
				if err := c.Flush(ctx); err != nil {
					b.Error(err)
				}
				flushTime.Add(int64(time.Since(start)))
			}
		}
	})

	workers := 4 * runtime.GOMAXPROCS(0)
	s0 := c.Stats()
	var done atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range workers {
		// Each worker owns the nodes i ≡ w (mod workers): a session is
		// driven by one goroutine, as a stream is.
		wg.Go(func() {
			for i := w; ; i += workers {
				k := done.Add(1)
				if k > int64(b.N) {
					return
				}
				// A quarter round of beats is an interval, so that nodes of
				// workers that run ahead stay within the rate limit too.
				if k%int64(n/4) == 0 {
					clock.Advance(DefaultInterval)
				}
				if err := beat(i % n); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := b.Elapsed()
	b.StopTimer()
	close(stop)
	flushing.Wait()
	s1 := c.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "beats/s")
	b.ReportMetric(perNode, "B/node")
	b.ReportMetric(float64(s1.RowsWritten-s0.RowsWritten)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(s1.Flushes-s0.Flushes)/elapsed.Seconds(), "flushes/s")
	if f := s1.Flushes - s0.Flushes; f > 0 {
		b.ReportMetric(float64(flushTime.Load())/float64(f)/1e6, "ms/flush")
	} else {
		b.ReportMetric(float64(firstFlush.Microseconds())/1e3, "ms/flush")
	}
	for _, s := range sessions {
		s.Close()
	}
}

// BenchmarkFlush measures one flush of the batch a replica with 100,000
// nodes writes at the defaults: a beat from every node per 10 s interval,
// flushed every 2 s, so 20,000 rows; one op is one flush.
func BenchmarkFlush(b *testing.B) {
	const rows = 20_000
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(fmt.Sprintf("%s/rows=%d", backend, rows), func(b *testing.B) {
			store := newSQLiteStore(b)
			if backend == "postgres" {
				store = newPostgresStore(b, pgtest.NewDatabase(b))
			}
			clock := livenesstest.NewClock(t0)
			c := newCore(b, store, clock, "bench")
			sessions := make([]*Session, rows)
			for i := range sessions {
				sessions[i] = connect(b, c, fmt.Sprintf("node-%06d", i))
			}
			var seq int64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				seq++
				clock.Advance(DefaultInterval)
				for _, s := range sessions {
					if _, err := s.Beat(context.Background(), Beat{Sequence: seq, BootID: "b", Status: heartbeatstore.StatusUp}); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				mustFlush(b, c)
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
