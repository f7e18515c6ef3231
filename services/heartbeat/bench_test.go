package heartbeat

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// BenchmarkStreams measures the service over real gRPC and mTLS on loopback:
// 1,000 nodes, each with its own certificate, connection and stream, beat
// in parallel; one op is one beat and its acknowledgement. B/stream is the
// heap per connected node, client and server together since both run in
// this process: gRPC's per-connection buffers, the stream's goroutines and
// the core's entry.
func BenchmarkStreams(b *testing.B) {
	const (
		n     = 1000
		burst = 10 // beats per node between two moves of the clock
	)
	e := newEnvOn(b, pgtest.SQLite, true)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	clients := make([]berthv1.HeartbeatServiceClient, n)
	for i := range clients {
		clients[i] = e.node(b, fmt.Sprintf("node-%d", i))
	}
	before := heap()
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
	perStream := float64(heap()-before) / n
	seqs := make([]uint64, n)
	rounds := b.N/(n*burst) + 1
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
	b.ReportMetric(float64(rounds*n*burst)/b.Elapsed().Seconds(), "beats/s")
	b.ReportMetric(perStream, "B/stream")
}
