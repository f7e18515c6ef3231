package heartbeat

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestNodeStreamsBeats(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		s, first := open(t, e.node(t, "node-1"))
		iv := first.GetInterval().AsDuration()
		if iv > 10*time.Second || iv <= 9*time.Second || first.GetAckSequence() != 0 {
			t.Fatalf("first message = %v, want an interval within a tenth below 10s", first)
		}
		for want := uint64(1); want <= 3; want++ {
			resp := s.beat()
			if resp.GetAckSequence() != want || resp.GetInterval().AsDuration() != iv {
				t.Fatalf("beat %d: %v", want, resp)
			}
		}
		if err := e.svc.core.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := e.admin(t).GetNodeHealth(context.Background(), &berthv1.GetNodeHealthRequest{NodeId: "node-1"})
		if err != nil {
			t.Fatal(err)
		}
		want := &berthv1.NodeHealth{
			NodeId: "node-1", State: berthv1.LivenessState_LIVENESS_STATE_HEALTHY,
			StateSince: timestamppb.New(t0), LastSeen: timestamppb.New(t0), BootId: "boot-1",
			Status: berthv1.ReportedStatus_REPORTED_STATUS_UP, Sequence: 3, Uptime: durationpb.New(0),
		}
		if d := cmp.Diff(want, got.GetHealth(), protocmp.Transform()); d != "" {
			t.Errorf("GetNodeHealth mismatch (-want +got):\n%s", d)
		}
		// The agent closing its side ends the stream cleanly.
		if err := s.s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.s.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after CloseSend: %v, want io.EOF", err)
		}
	})
}

func TestAuthorization(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		ctx := context.Background()
		load := func(c tls.Certificate, err error) tls.Certificate {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		foreign := grpctest.NewPKI(t)
		ids := map[string]tls.Certificate{
			"node":         e.nodeCert(t, "node-1"),
			"admin":        load(e.layout.AdminCertificate()),
			"registration": load(e.layout.ServiceCertificate(pki.ServiceRegistration)),
			"bootstrap":    load(mtls.SelfSigned(key)),
			"foreign CA":   load(foreign.AdminCertificate()),
		}
		calls := map[string]func(c *clients) error{
			"Heartbeat": func(c *clients) error {
				s, err := c.node.Heartbeat(ctx)
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			},
			"GetNodeHealth": func(c *clients) error {
				// NotFound proves the call got past authorisation.
				_, err := c.admin.GetNodeHealth(ctx, &berthv1.GetNodeHealthRequest{NodeId: "nobody"})
				return err
			},
			"ListNodeHealth": func(c *clients) error {
				_, err := c.admin.ListNodeHealth(ctx, &berthv1.ListNodeHealthRequest{})
				return err
			},
			"WatchHealth": func(c *clients) error {
				// An ahead cursor fails at once with OutOfRange once authorised.
				s, err := c.admin.WatchHealth(ctx, &berthv1.WatchHealthRequest{AfterCursor: 5})
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			},
			"GetHeartbeatSettings": func(c *clients) error {
				_, err := c.admin.GetHeartbeatSettings(ctx, &berthv1.GetHeartbeatSettingsRequest{})
				return err
			},
			"SetHeartbeatSettings": func(c *clients) error {
				_, err := c.admin.SetHeartbeatSettings(ctx, &berthv1.SetHeartbeatSettingsRequest{})
				return err
			},
		}
		allowed := map[string]codes.Code{
			"Heartbeat":            codes.OK,
			"GetNodeHealth":        codes.NotFound,
			"ListNodeHealth":       codes.OK,
			"WatchHealth":          codes.OutOfRange,
			"GetHeartbeatSettings": codes.OK,
			"SetHeartbeatSettings": codes.OK,
		}
		who := map[string]string{
			"Heartbeat": "node", "GetNodeHealth": "admin", "ListNodeHealth": "admin",
			"WatchHealth": "admin", "GetHeartbeatSettings": "admin", "SetHeartbeatSettings": "admin",
		}
		for method, call := range calls {
			for name, cert := range ids {
				t.Run(method+"/"+name, func(t *testing.T) {
					conn := e.dial(t, cert)
					c := &clients{node: berthv1.NewHeartbeatServiceClient(conn), admin: berthv1.NewHeartbeatAdminServiceClient(conn)}
					want := codes.PermissionDenied
					switch {
					case who[method] == name:
						want = allowed[method]
					case name == "bootstrap" || name == "foreign CA":
						// An unverified certificate is only a bare key, which
						// none of these methods accept.
						want = codes.Unauthenticated
					}
					wantCode(t, call(c), want)
				})
			}
		}
	})
}

type clients struct {
	node  berthv1.HeartbeatServiceClient
	admin berthv1.HeartbeatAdminServiceClient
}

func TestRevokedNode(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		client := e.node(t, "node-1")

		// Pushed: the lead's wiring calls Revoked when the CA revokes.
		s, _ := open(t, client)
		s.beat()
		e.svc.Revoked("node-1")
		wantCode(t, endOf(s.s), codes.PermissionDenied)
		again, err := client.Heartbeat(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, endOf(again), codes.PermissionDenied)

		// Found by the periodic check through IsRevoked, on a running service.
		other := e.node(t, "node-2")
		s2, _ := open(t, other)
		s2.beat()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- e.svc.Run(ctx) }()
		defer func() { cancel(); <-done }()
		e.revoked.Store("node-2", true)
		e.clock.BlockUntil(3) // Run's three timers
		e.clock.Advance(5 * time.Second)
		wantCode(t, endOf(s2.s), codes.PermissionDenied)
		reopened, err := other.Heartbeat(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, endOf(reopened), codes.PermissionDenied)
		if logs := e.logs.String(); !strings.Contains(logs, "node_id=node-2") {
			t.Errorf("revocation not logged with the node: %s", logs)
		}
	})
}

func TestBadBeats(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		up := berthv1.ReportedStatus_REPORTED_STATUS_UP
		valid := func() *berthv1.HeartbeatRequest {
			return &berthv1.HeartbeatRequest{Sequence: 1, BootId: "0b6c1a6e-2d4e-4d1b-9a8e-3f1f6b2c9d11", Status: up,
				Uptime: durationpb.New(time.Hour), Events: []*berthv1.StatusEvent{{Kind: "disk.failed", Message: "sda: I/O error"}}}
		}
		tests := []struct {
			name   string
			before []*berthv1.HeartbeatRequest // accepted first
			bad    func(*berthv1.HeartbeatRequest)
		}{
			{"sequence zero", nil, func(r *berthv1.HeartbeatRequest) { r.Sequence = 0 }},
			{"sequence too large", nil, func(r *berthv1.HeartbeatRequest) { r.Sequence = 1 << 63 }},
			{"missing boot ID", nil, func(r *berthv1.HeartbeatRequest) { r.BootId = "" }},
			{"boot ID with spaces", nil, func(r *berthv1.HeartbeatRequest) { r.BootId = "a b" }},
			{"boot ID too long", nil, func(r *berthv1.HeartbeatRequest) { r.BootId = strings.Repeat("a", 65) }},
			{"missing status", nil, func(r *berthv1.HeartbeatRequest) { r.Status = 0 }},
			{"unknown status", nil, func(r *berthv1.HeartbeatRequest) { r.Status = 42 }},
			{"negative uptime", nil, func(r *berthv1.HeartbeatRequest) { r.Uptime = durationpb.New(-time.Second) }},
			{"invalid uptime", nil, func(r *berthv1.HeartbeatRequest) { r.Uptime = &durationpb.Duration{Seconds: 1, Nanos: -1} }},
			{"too many events", nil, func(r *berthv1.HeartbeatRequest) {
				for range 17 {
					r.Events = append(r.Events, &berthv1.StatusEvent{Kind: "k"})
				}
			}},
			{"empty kind", nil, func(r *berthv1.HeartbeatRequest) { r.Events[0].Kind = "" }},
			{"upper-case kind", nil, func(r *berthv1.HeartbeatRequest) { r.Events[0].Kind = "Disk" }},
			{"control character in message", nil, func(r *berthv1.HeartbeatRequest) { r.Events[0].Message = "a\x1b[31mb" }},
			{"message too long", nil, func(r *berthv1.HeartbeatRequest) { r.Events[0].Message = strings.Repeat("x", 1025) }},
			{"sequence going back", []*berthv1.HeartbeatRequest{valid(), seq(valid(), 5)}, func(r *berthv1.HeartbeatRequest) { r.Sequence = 4 }},
			{"sequence repeated", []*berthv1.HeartbeatRequest{valid()}, func(r *berthv1.HeartbeatRequest) {}},
			{"boot ID changing", []*berthv1.HeartbeatRequest{valid()}, func(r *berthv1.HeartbeatRequest) { r.Sequence, r.BootId = 2, "other" }},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				node := fmt.Sprintf("bad-%d", i)
				s, _ := open(t, e.node(t, node))
				for _, r := range tt.before {
					s.send(r)
					if _, err := s.s.Recv(); err != nil {
						t.Fatalf("valid beat: %v", err)
					}
				}
				r := valid()
				if len(tt.before) > 0 {
					r.Sequence = tt.before[len(tt.before)-1].GetSequence()
				}
				tt.bad(r)
				s.send(r)
				wantCode(t, endOf(s.s), codes.InvalidArgument)
			})
		}
		// A refused beat changed nothing: only the accepted ones were recorded.
		if err := e.svc.core.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		rows, err := e.store.ListLiveness(context.Background(), heartbeatstore.LivenessFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 {
			t.Errorf("%d nodes recorded, want the 3 whose first beats were valid", len(rows))
		}

		// A flood of beats is cut off.
		s, _ := open(t, e.node(t, "flood"))
		for i := range 20 {
			if s.s.Send(seq(valid(), uint64(i+1))) != nil {
				break // the server ended the stream
			}
		}
		wantCode(t, endOf(s.s), codes.ResourceExhausted)
	})
}

func seq(r *berthv1.HeartbeatRequest, n uint64) *berthv1.HeartbeatRequest {
	r.Sequence = n
	return r
}

func TestSupersededStream(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		client := e.node(t, "node-1")
		first, _ := open(t, client)
		first.beat()
		second, _ := open(t, client)
		wantCode(t, endOf(first.s), codes.Aborted)
		second.beat()
	})
}

func TestIntervalPushedOnChange(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		s, _ := open(t, e.node(t, "node-1"))
		admin := e.admin(t)
		resp, err := admin.SetHeartbeatSettings(context.Background(), &berthv1.SetHeartbeatSettingsRequest{Interval: durationpb.New(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		want := &berthv1.HeartbeatSettings{
			Interval: durationpb.New(time.Minute), Grace: durationpb.New(4 * time.Minute),
			DefaultInterval: durationpb.New(10 * time.Second), DefaultGrace: durationpb.New(40 * time.Second),
			LoadFactor: 1, EffectiveInterval: durationpb.New(time.Minute), EffectiveGrace: durationpb.New(4 * time.Minute),
		}
		if d := cmp.Diff(want, resp.GetSettings(), protocmp.Transform()); d != "" {
			t.Errorf("settings mismatch (-want +got):\n%s", d)
		}
		pushed, err := s.s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		iv := pushed.GetInterval().AsDuration()
		if pushed.GetAckSequence() != 0 || iv > time.Minute || iv <= 54*time.Second {
			t.Errorf("pushed %v, want an interval within a tenth below a minute and no ack", pushed)
		}
		if ack := s.beat(); ack.GetInterval().AsDuration() != iv {
			t.Errorf("ack carries %v, want %v", ack.GetInterval().AsDuration(), iv)
		}
		got, err := admin.GetHeartbeatSettings(context.Background(), &berthv1.GetHeartbeatSettingsRequest{})
		if err != nil || !cmp.Equal(want, got.GetSettings(), protocmp.Transform()) {
			t.Errorf("GetHeartbeatSettings = %v, %v", got, err)
		}
		for _, bad := range []*berthv1.SetHeartbeatSettingsRequest{
			{Interval: durationpb.New(500 * time.Millisecond)},
			{Interval: durationpb.New(2 * time.Hour)},
			{Interval: durationpb.New(-time.Second)},
			{Interval: durationpb.New(10 * time.Second), Grace: durationpb.New(15 * time.Second)},
		} {
			_, err := admin.SetHeartbeatSettings(context.Background(), bad)
			wantCode(t, err, codes.InvalidArgument)
		}
	})
}

// TestIntervalStretchedUnderLoad: three live nodes at 10 s offer 0.3 beats/s
// to a tier limited to 0.1, so the decider stretches the timings threefold;
// the stream is told, the settings show it and setting the base keeps it.
func TestIntervalStretchedUnderLoad(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnvOn(t, engine, false, func(c *Config) { c.MaxBeatRate = 0.1 })
		ctx := context.Background()
		s, _ := open(t, e.node(t, "node-1"))
		s.beat()
		if _, err := e.store.Flush(ctx, []heartbeatstore.Observation{
			{NodeID: "node-2", LastSeen: t0, BootID: "b", Status: heartbeatstore.StatusUp},
			{NodeID: "node-3", LastSeen: t0, BootID: "b", Status: heartbeatstore.StatusUp},
		}, nil); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.core.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.core.Decide(ctx); err != nil {
			t.Fatal(err)
		}
		pushed, err := s.s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if iv := pushed.GetInterval().AsDuration(); iv > 30*time.Second || iv <= 27*time.Second {
			t.Errorf("pushed %v, want an interval within a tenth below 30s", pushed)
		}
		admin := e.admin(t)
		want := &berthv1.HeartbeatSettings{
			Interval: durationpb.New(10 * time.Second), Grace: durationpb.New(40 * time.Second),
			DefaultInterval: durationpb.New(10 * time.Second), DefaultGrace: durationpb.New(40 * time.Second),
			LoadFactor: 3, EffectiveInterval: durationpb.New(30 * time.Second), EffectiveGrace: durationpb.New(2 * time.Minute),
		}
		got, err := admin.GetHeartbeatSettings(ctx, &berthv1.GetHeartbeatSettingsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got.GetSettings(), protocmp.Transform()); d != "" {
			t.Errorf("settings mismatch (-want +got):\n%s", d)
		}
		if !strings.Contains(e.logs.String(), "heartbeat load 0.3/s over the limit 0.1/s: fleet interval 10s → 30s") {
			t.Errorf("no warning logged:\n%s", e.logs.String())
		}
		set, err := admin.SetHeartbeatSettings(ctx, &berthv1.SetHeartbeatSettingsRequest{Interval: durationpb.New(20 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		want.Interval, want.Grace = durationpb.New(20*time.Second), durationpb.New(80*time.Second)
		want.EffectiveInterval, want.EffectiveGrace = durationpb.New(time.Minute), durationpb.New(4*time.Minute)
		if d := cmp.Diff(want, set.GetSettings(), protocmp.Transform()); d != "" {
			t.Errorf("settings after setting the base mismatch (-want +got):\n%s", d)
		}
	})
}

func TestShutdownEndsStreams(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		s, _ := open(t, e.node(t, "node-1"))
		s.beat()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- e.svc.Run(ctx) }()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		wantCode(t, endOf(s.s), codes.Unavailable)
		// The last beat was flushed on the way out.
		if _, err := e.store.GetLiveness(context.Background(), "node-1"); err != nil {
			t.Fatalf("beat not flushed at shutdown: %v", err)
		}
	})
}
