package heartbeat

import (
	"context"
	"errors"
	"testing"

	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// errAckMismatch is an acknowledgement of the wrong beat.
var errAckMismatch = errors.New("acknowledgement of another sequence")

// beatPathEnv is a service on SQLite with CertRevoked and
// RevocationsKnown set, as the daemon sets them, and one node's session
// past its first (durable) beat.
func beatPathEnv(t testing.TB) (*env, *liveness.Session, string) {
	t.Helper()
	e := newEnvOn(t, pgtest.SQLite, false, func(c *Config) {
		c.CertRevoked = func(context.Context, string, string) bool { return false }
		c.RevocationsKnown = func() error { return nil }
	})
	ctx := context.Background()
	sess, err := e.svc.core.Connect(ctx, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	const serial = "1f2e3d"
	first := &berthv1.HeartbeatRequest{Sequence: 1 << 20, BootId: "0b6c1a6e-2d4e-4d1b-9a8e-3f1f6b2c9d11", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}
	if _, err := e.svc.beat(ctx, sess, serial, first); err != nil {
		t.Fatal(err)
	}
	return e, sess, serial
}

// TestBeatPathAllocations: a steady beat (not durable: the node is known
// and healthy, nothing changed) allocates its acknowledgement and nothing
// else on the handler's path: no per-beat strings, closures, timers or
// map entries.
func TestBeatPathAllocations(t *testing.T) {
	e, sess, serial := beatPathEnv(t)
	req := &berthv1.HeartbeatRequest{Sequence: 1 << 20, BootId: "0b6c1a6e-2d4e-4d1b-9a8e-3f1f6b2c9d11", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}
	step := e.svc.core.Settings().Current.Interval / 4
	ctx := context.Background()
	var failed error
	allocs := testing.AllocsPerRun(100, func() {
		req.Sequence++
		e.clock.Advance(step)
		ack, err := e.svc.beat(ctx, sess, serial, req)
		if err != nil && failed == nil {
			failed = err
		}
		if err == nil && ack.GetAckSequence() != req.Sequence {
			failed = errAckMismatch
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	// The response and its durationpb.Duration.
	if allocs > 2 {
		t.Errorf("a steady beat allocates %.1f times on the handler's path; want 2 (the acknowledgement)", allocs)
	}
}
