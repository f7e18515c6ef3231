package heartbeat

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestReplacedBoardCannotBeat: a replaced board's certificate is revoked on
// its own while its node lives on under the new board's. The old board's
// open stream ends at its next beat, it cannot open another, and the new
// board beats.
func TestReplacedBoardCannotBeat(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		var serials sync.Map
		e := newEnvOn(t, engine, false, func(c *Config) {
			c.CertRevoked = func(_ context.Context, _ string, serial string) bool {
				_, ok := serials.Load(serial)
				return ok
			}
		})
		oldBoard, newBoard := e.srv.NodeCert(t, "node-1"), e.srv.NodeCert(t, "node-1")
		oldClient := berthv1.NewHeartbeatServiceClient(e.dial(t, oldBoard.TLS))
		s, _ := open(t, oldClient)
		s.beat()

		serials.Store(oldBoard.Leaf.SerialNumber.Text(16), true)
		s.send(&berthv1.HeartbeatRequest{Sequence: s.seq.Add(1), BootId: "boot-1", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP})
		err := endOf(s.s)
		wantCode(t, err, codes.PermissionDenied)
		if msg := status.Convert(err).Message(); msg != msgCertRevoked {
			t.Errorf("message %q, want %q", msg, msgCertRevoked)
		}
		again, err := oldClient.Heartbeat(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, endOf(again), codes.PermissionDenied)

		fresh, _ := open(t, berthv1.NewHeartbeatServiceClient(e.dial(t, newBoard.TLS)))
		fresh.beat()
	})
}
