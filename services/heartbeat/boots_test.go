package heartbeat

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/revocation"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func bootRecord(node string, seq uint64, age time.Duration) *berthv1.BootRecord {
	return &berthv1.BootRecord{NodeId: node, BootId: "boot-1", Sequence: seq, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP,
		Uptime: durationpb.New(3 * time.Second), Age: durationpb.New(age)}
}

// TestRecordBoots: the registration service's boots make their nodes
// healthy without a stream; the node's first beat goes on without a
// transition; revoked nodes and boots too old to be a sign of life are
// skipped.
func TestRecordBoots(t *testing.T) {
	for _, engine := range pgtest.Engines() {
		t.Run(engine, func(t *testing.T) {
			e := newEnv(t, engine)
			ctx := context.Background()
			boots := berthv1.NewHeartbeatBootServiceClient(e.srv.Service(t, pki.ServiceRegistration))
			admin := e.admin(t)
			e.revoked.Store("node-revoked", true)
			resp, err := boots.RecordBoots(ctx, &berthv1.RecordBootsRequest{Boots: []*berthv1.BootRecord{
				bootRecord("node-1", 1, 200*time.Millisecond),
				bootRecord("node-revoked", 1, 0),
				bootRecord("node-old", 1, 20*time.Second), // two 10 s intervals
			}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetRecorded() != 1 || resp.GetSkipped() != 2 || resp.GetInterval().AsDuration() != 10*time.Second {
				t.Fatalf("RecordBoots = %v, want 1 recorded, 2 skipped, interval 10s", resp)
			}
			h, err := admin.GetNodeHealth(ctx, &berthv1.GetNodeHealthRequest{NodeId: "node-1"})
			if err != nil {
				t.Fatal(err)
			}
			got := h.GetHealth()
			if got.GetState() != berthv1.LivenessState_LIVENESS_STATE_HEALTHY || got.GetBootId() != "boot-1" || got.GetSequence() != 1 ||
				!got.GetLastSeen().AsTime().Equal(t0.Add(-200*time.Millisecond)) {
				t.Errorf("health after the boot: %v", got)
			}
			for _, id := range []string{"node-revoked", "node-old"} {
				_, err := admin.GetNodeHealth(ctx, &berthv1.GetNodeHealthRequest{NodeId: id})
				wantCode(t, err, codes.NotFound)
			}
			// The node's stream goes on with the next sequence of the boot:
			// no second healthy event, no reboot.
			e.clock.Advance(3 * time.Second)
			s, _ := open(t, e.node(t, "node-1"))
			s.seq.Store(1)
			if ack := s.beat(); ack.GetAckSequence() != 2 {
				t.Fatalf("first beat: %v", ack)
			}
			evs := healthEvents(t, admin)
			if len(evs) != 1 || evs[0].GetType() != berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY || evs[0].GetNodeId() != "node-1" {
				t.Errorf("health log %v, want node-1's one healthy event", evs)
			}
		})
	}
}

// healthEvents reads the whole health log.
func healthEvents(t *testing.T, admin berthv1.HeartbeatAdminServiceClient) []*berthv1.HealthEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, err := admin.ListNodeHealth(ctx, &berthv1.ListNodeHealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := admin.WatchHealth(ctx, &berthv1.WatchHealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*berthv1.HealthEvent
	for int64(len(out)) < nodes.GetCursor() {
		m, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.GetEvent())
	}
	return out
}

// TestRecordBootsRefused: only the registration service may hand boots
// over; bad boots are refused with the field that is wrong; while the
// revocations are not known nothing is recorded, and only a call without
// boots (the sender learning the interval) is answered.
func TestRecordBootsRefused(t *testing.T) {
	var known error
	e := newEnvOn(t, pgtest.SQLite, false, func(c *Config) { c.RevocationsKnown = func() error { return known } })
	ctx := context.Background()
	req := &berthv1.RecordBootsRequest{Boots: []*berthv1.BootRecord{bootRecord("node-1", 1, 0)}}
	for _, caller := range []string{pki.ServiceBundles, pki.ServiceHeartbeat, pki.ServiceCA} {
		_, err := berthv1.NewHeartbeatBootServiceClient(e.srv.Service(t, caller)).RecordBoots(ctx, req)
		wantCode(t, err, codes.PermissionDenied)
	}
	for _, conn := range []struct {
		name string
		c    berthv1.HeartbeatBootServiceClient
	}{
		{"admin", berthv1.NewHeartbeatBootServiceClient(e.srv.Admin(t))},
		{"node", berthv1.NewHeartbeatBootServiceClient(e.srv.Node(t, "node-1"))},
	} {
		_, err := conn.c.RecordBoots(ctx, req)
		if code := status.Code(err); code != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", conn.name, err)
		}
	}
	boots := berthv1.NewHeartbeatBootServiceClient(e.srv.Service(t, pki.ServiceRegistration))
	bad := func(mod func(r *berthv1.BootRecord)) *berthv1.RecordBootsRequest {
		r := bootRecord("node-1", 1, 0)
		mod(r)
		return &berthv1.RecordBootsRequest{Boots: []*berthv1.BootRecord{bootRecord("node-2", 1, 0), r}}
	}
	for _, tt := range []struct {
		name, field string
		req         *berthv1.RecordBootsRequest
	}{
		{"node ID", "boots.node_id", bad(func(r *berthv1.BootRecord) { r.NodeId = "Not A Node" })},
		{"sequence 0", "boots.sequence", bad(func(r *berthv1.BootRecord) { r.Sequence = 0 })},
		{"sequence too large", "boots.sequence", bad(func(r *berthv1.BootRecord) { r.Sequence = 1 << 63 })},
		{"boot ID", "boots.boot_id", bad(func(r *berthv1.BootRecord) { r.BootId = "a b" })},
		{"status", "boots.status", bad(func(r *berthv1.BootRecord) { r.Status = berthv1.ReportedStatus_REPORTED_STATUS_UNSPECIFIED })},
		{"uptime", "boots.uptime", bad(func(r *berthv1.BootRecord) { r.Uptime = durationpb.New(-time.Second) })},
		{"age", "boots.age", bad(func(r *berthv1.BootRecord) { r.Age = &durationpb.Duration{Seconds: 1, Nanos: -1} })},
		{"too many", "boots", &berthv1.RecordBootsRequest{Boots: make([]*berthv1.BootRecord, maxBootRecords+1)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := boots.RecordBoots(ctx, tt.req)
			wantCode(t, err, codes.InvalidArgument)
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, tt.field+" ") {
				t.Errorf("message %q does not name %s", msg, tt.field)
			}
		})
	}
	known = revocation.ErrUnknown
	_, err := boots.RecordBoots(ctx, req)
	wantCode(t, err, codes.Unavailable)
	if _, err := e.store.GetLiveness(ctx, "node-1"); err == nil {
		t.Error("a refused call recorded a boot")
	}
	if _, err := e.store.GetLiveness(ctx, "node-2"); err == nil {
		t.Error("a call with a bad boot recorded the good one")
	}
	resp, err := boots.RecordBoots(ctx, &berthv1.RecordBootsRequest{})
	if err != nil || resp.GetInterval().AsDuration() != 10*time.Second {
		t.Errorf("RecordBoots without boots while the revocations are not known = %v, %v; want the interval", resp, err)
	}
}
