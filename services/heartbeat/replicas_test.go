package heartbeat

import (
	"context"
	"slices"
	"testing"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestAbandonedReplicaLosesNoTransition: two heartbeat services share one
// PostgreSQL database. A node's health transitions are in the log as soon
// as its beats are acknowledged, so when the replica it streamed to dies
// (abandoned mid-stream: it never flushes, as after kill -9) and the node
// moves to the other one, resending the beat whose acknowledgement it
// missed, every transition is in the log exactly once.
func TestAbandonedReplicaLosesNoTransition(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	shared := func(c *Config) {
		s, err := heartbeatstore.Open(context.Background(), db.Postgres, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		c.Store = s
	}
	a := newEnvOn(t, pgtest.Postgres, false, shared)
	b := newEnvOn(t, pgtest.Postgres, false, shared)
	// log reads the shared log through b's store, as another replica sees it.
	log := func() []string {
		t.Helper()
		p, err := b.svc.store.Events().Read(context.Background(), eventlog.Query{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range p.Events {
			h := heartbeatstore.EventOf(e)
			out = append(out, e.NodeID+" "+string(h.Type)+" "+h.Kind)
		}
		return out
	}
	beat := func(s *stream, seq uint64, boot string, status berthv1.ReportedStatus, events ...*berthv1.StatusEvent) {
		t.Helper()
		s.send(&berthv1.HeartbeatRequest{Sequence: seq, BootId: boot, Status: status, Events: events})
		resp, err := s.s.Recv()
		if err != nil || resp.GetAckSequence() != seq {
			t.Fatalf("beat %d: %v, %v", seq, resp, err)
		}
	}
	up, degraded := berthv1.ReportedStatus_REPORTED_STATUS_UP, berthv1.ReportedStatus_REPORTED_STATUS_DEGRADED
	disk := &berthv1.StatusEvent{Kind: "disk.failed", Message: "sda"}

	var want []string
	acked := func(what string, more ...string) {
		t.Helper()
		want = append(want, more...)
		if got := log(); !slices.Equal(got, want) {
			t.Fatalf("after %s the log is %q, want %q", what, got, want)
		}
	}
	onA, _ := open(t, a.node(t, "node-1"))
	beat(onA, 1, "boot-1", up)
	acked("the first beat", "node-1 healthy ")
	beat(onA, 2, "boot-1", up)
	acked("a plain beat")
	beat(onA, 3, "boot-1", degraded)
	acked("a status change", "node-1 status_changed ")
	beat(onA, 4, "boot-1", degraded, disk)
	acked("a node event", "node-1 node_event disk.failed")
	// a dies here: its stream breaks, its memory is gone, nothing of it is
	// flushed or closed.
	onA.s.CloseSend()

	// The node missed the acknowledgement of beat 4 and sends it again.
	onB, _ := open(t, b.node(t, "node-1"))
	beat(onB, 4, "boot-1", degraded, disk)
	acked("the resent beat")
	beat(onB, 5, "boot-1", degraded)
	acked("a plain beat on b")
	onB.s.CloseSend()
	// The node reboots and comes back to b.
	again, _ := open(t, b.node(t, "node-1"))
	beat(again, 1, "boot-2", up)
	acked("a reboot", "node-1 rebooted ", "node-1 status_changed ")
	b.flush(t)
	acked("b's flush")
	l, err := b.svc.store.GetLiveness(context.Background(), "node-1")
	if err != nil || l.BootID != "boot-2" || l.Sequence != 1 || l.State != heartbeatstore.StateHealthy {
		t.Fatalf("liveness = %+v, %v", l, err)
	}
}
