package heartbeat

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// BenchmarkStreams measures the service over real gRPC and mTLS on loopback:
// nodes (1,000, or BERTH_BENCH_HB_NODES), each with its own certificate,
// connection and stream, beat in parallel; one op is one beat and its
// acknowledgement. Client and server both run in this process, so every
// figure counts both ends of a node's connection: B/stream is the heap per
// connected node (gRPC's per-connection buffers, the streams' state, the
// core's entry), stackB/stream the goroutine stacks, goroutines/stream
// the goroutines, cpu-ms/beat the process's CPU time per beat.
// BERTH_BENCH_HB_HEAPPROFILE names a file for a heap profile taken while
// every node is connected, to split what the server holds from what the
// client holds (berthd serve --role heartbeat holds the server's half;
// make bench measures it alone).
//
// The descriptor limit bounds nodes: two descriptors each, both ends.
func BenchmarkStreams(b *testing.B) {
	n := 1000
	if v := os.Getenv("BERTH_BENCH_HB_NODES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("BERTH_BENCH_HB_NODES=%q", v)
		}
	}
	const burst = 10 // beats per node between two moves of the clock
	e := newEnvOn(b, pgtest.SQLite, true)
	type mem struct{ heap, stack uint64 }
	sample := func() mem {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return mem{ms.HeapAlloc, ms.StackInuse}
	}
	clients := make([]berthv1.HeartbeatServiceClient, n)
	for i := range clients {
		clients[i] = e.node(b, fmt.Sprintf("node-%d", i))
	}
	before, goroutines := sample(), runtime.NumGoroutine()
	streams := make([]berthv1.HeartbeatService_HeartbeatClient, n)
	for i, c := range clients {
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		s, err := c.Heartbeat(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		streams[i] = s
	}
	after := sample()
	perStream := float64(after.heap-before.heap) / float64(n)
	stackPerStream := float64(after.stack-before.stack) / float64(n)
	goroutinesPerStream := float64(runtime.NumGoroutine()-goroutines) / float64(n)
	if f := os.Getenv("BERTH_BENCH_HB_HEAPPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			b.Fatal(err)
		}
		out.Close()
	}
	seqs := make([]uint64, n)
	rounds := b.N/(n*burst) + 1
	cpu0 := cpuTime()
	b.ResetTimer()
	for range rounds {
		var wg sync.WaitGroup
		for i, s := range streams {
			wg.Go(func() {
				for range burst {
					seqs[i]++
					if err := s.Send(&berthv1.HeartbeatRequest{Sequence: seqs[i], BootId: "b", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}); err != nil {
						b.Error(err)
						return
					}
					if _, err := s.Recv(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		// Refill every node's rate limit: two intervals, ten beats.
		e.clock.Advance(20 * e.svc.core.Settings().Current.Interval / 10)
	}
	beats := float64(rounds * n * burst)
	b.ReportMetric(beats/b.Elapsed().Seconds(), "beats/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/beats, "cpu-ms/beat")
	b.ReportMetric(perStream, "B/stream")
	b.ReportMetric(stackPerStream, "stackB/stream")
	b.ReportMetric(goroutinesPerStream, "goroutines/stream")
}

// BenchmarkBeatPath is one beat through the stream handler's path, without
// the transport: validation, the revocation checks, the core's Beat (rate
// limit, shard, dirty list) and the acknowledgement. Run with -benchmem:
// the acknowledgement (the response and its interval) should be all it
// allocates; TestBeatPathAllocations holds it to that.
func BenchmarkBeatPath(b *testing.B) {
	e, sess, serial := beatPathEnv(b)
	req := &berthv1.HeartbeatRequest{BootId: "0b6c1a6e-2d4e-4d1b-9a8e-3f1f6b2c9d11", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}
	step := e.svc.core.Settings().Current.Interval / 4
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		req.Sequence++
		e.clock.Advance(step) // within the rate limit, never quiet
		if _, err := e.svc.beat(ctx, sess, serial, req); err != nil {
			b.Fatal(err)
		}
	}
}
