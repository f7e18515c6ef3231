package heartbeat

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/revocation"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestRevocationsUnknownFailsClosed: a replica that does not know the
// revocation state refuses new streams with Unavailable, ends an open one
// at its next beat with Unavailable (so the agent reconnects, perhaps to a
// replica that knows), and serves again once it knows.
func TestRevocationsUnknownFailsClosed(t *testing.T) {
	var known atomic.Bool
	e := newEnvOn(t, pgtest.SQLite, false, func(c *Config) {
		c.RevocationsKnown = func() error {
			if known.Load() {
				return nil
			}
			return fmt.Errorf("%w: the list was never loaded from the CA", revocation.ErrUnknown)
		}
	})
	client := e.node(t, "node-1")
	refused, err := client.Heartbeat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	grpctest.WantStatus(t, endOf(refused), codes.Unavailable, msgRevUnknown)

	known.Store(true)
	s, _ := open(t, client)
	s.beat()

	known.Store(false)
	s.send(&berthv1.HeartbeatRequest{Sequence: s.seq.Add(1), BootId: "boot-1", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP})
	grpctest.WantStatus(t, endOf(s.s), codes.Unavailable, msgRevUnknown)

	known.Store(true)
	again, _ := open(t, client)
	again.beat()
}
