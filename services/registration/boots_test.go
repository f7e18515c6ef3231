package registration

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// sinkFake is a heartbeat service that keeps what it was sent and fails
// while down is set; with hold set, each call first waits for a value on
// it (or the call's end).
type sinkFake struct {
	hold     chan struct{}
	mu       sync.Mutex
	down     bool
	calls    int
	got      []*berthv1.BootRecord
	interval time.Duration
}

func (f *sinkFake) RecordBoots(ctx context.Context, in *berthv1.RecordBootsRequest, _ ...grpc.CallOption) (*berthv1.RecordBootsResponse, error) {
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return nil, status.Error(codes.Unavailable, "down")
	}
	f.got = append(f.got, in.GetBoots()...)
	return &berthv1.RecordBootsResponse{Recorded: int32(len(in.GetBoots())), Interval: durationpb.New(f.interval)}, nil
}

func (f *sinkFake) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *sinkFake) received() []*berthv1.BootRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*berthv1.BootRecord(nil), f.got...)
}

// waitDelivered waits until the sender has delivered n boots.
func waitDelivered(t *testing.T, b *BootSender, n int64) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		sent, next := b.Delivered()
		if sent >= n {
			return
		}
		select {
		case <-next:
		case <-deadline:
			t.Fatalf("%d boots delivered, want %d", sent, n)
		}
	}
}

// runSender builds a sender and runs it until the test ends.
func runSender(t *testing.T, c BootSenderConfig) *BootSender {
	t.Helper()
	b, err := NewBootSender(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

func record(node string) *berthv1.BootRecord {
	return &berthv1.BootRecord{NodeId: node, BootId: "b", Sequence: 1, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}
}

// TestBootSenderDeliversInOrderAndLearnsInterval: boots queued while the
// heartbeat service is down are delivered, in order and dated by how long
// they waited, once it is back; the interval comes with every answer.
func TestBootSenderDeliversInOrderAndLearnsInterval(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	sink := &sinkFake{interval: 7 * time.Second, down: true}
	b := runSender(t, BootSenderConfig{Sink: sink, Batch: 2, Clock: clk})
	ctx := context.Background()
	if b.Interval() != 0 {
		t.Fatalf("interval %v before any answer", b.Interval())
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if !b.Booted(ctx, record(n)) {
			t.Fatalf("%s not queued", n)
		}
	}
	clk.Advance(3 * time.Second)
	sink.setDown(false)
	// The sender waits out its backoff on the fake clock.
	for sent, _ := b.Delivered(); sent < 3; sent, _ = b.Delivered() {
		clk.Advance(bootRetryMax)
		time.Sleep(time.Millisecond)
	}
	waitDelivered(t, b, 3)
	got := sink.received()
	if len(got) != 3 {
		t.Fatalf("received %d boots, want 3", len(got))
	}
	for i, n := range []string{"n1", "n2", "n3"} {
		if got[i].GetNodeId() != n {
			t.Errorf("boot %d is %s, want %s", i, got[i].GetNodeId(), n)
		}
		if got[i].GetAge().AsDuration() < 3*time.Second {
			t.Errorf("boot %s dated %v ago, want at least the 3 s it waited", n, got[i].GetAge().AsDuration())
		}
	}
	if b.Interval() != 7*time.Second {
		t.Errorf("interval %v, want 7s", b.Interval())
	}
	if b.Pending() != 0 {
		t.Errorf("%d boots still queued", b.Pending())
	}
}

// TestBootSenderQueueBound: a full queue refuses boots instead of growing;
// their nodes' own first beats record them.
func TestBootSenderQueueBound(t *testing.T) {
	b, err := NewBootSender(BootSenderConfig{Sink: &sinkFake{}, Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing sends: the calls must not wait for a handoff.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !b.Booted(ctx, record("n1")) || !b.Booted(ctx, record("n2")) {
		t.Fatal("boots refused below the bound")
	}
	if b.Booted(ctx, record("n3")) {
		t.Error("a boot queued beyond the bound")
	}
	if b.Pending() != 2 {
		t.Errorf("%d queued, want 2", b.Pending())
	}
	for _, c := range []BootSenderConfig{{}, {Sink: &sinkFake{}, Batch: -1}, {Sink: &sinkFake{}, Queue: -1}, {Sink: &sinkFake{}, Wait: -time.Second}} {
		if _, err := NewBootSender(c); err == nil {
			t.Errorf("NewBootSender(%+v) accepted", c)
		}
	}
}

// TestBootedWaitsForHandoff: Booted returns once the heartbeat service has
// answered for the boot, so that a Resume answered is a boot recorded; a
// failing handoff, a heartbeat service that hangs past the bound and a
// caller that goes away end the wait, the boot still queued.
func TestBootedWaitsForHandoff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		down     bool
		hold     bool // the heartbeat service does not answer
		advance  bool // the fake clock passes the bound
		cancel   bool // the caller goes away
		received int  // boots the heartbeat service had when Booted returned
	}{
		{name: "answered", received: 1},
		{name: "failing", down: true},
		{name: "hung past the bound", hold: true, advance: true},
		{name: "caller gone", hold: true, cancel: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
			sink := &sinkFake{interval: 7 * time.Second, down: tc.down, hold: make(chan struct{})}
			b := runSender(t, BootSenderConfig{Sink: sink, Clock: clk, Wait: time.Second})
			if !tc.hold {
				close(sink.hold)
			}
			callCtx, callCancel := context.WithCancel(context.Background())
			defer callCancel()
			returned := make(chan int, 1)
			go func() {
				if !b.Booted(callCtx, record("n1")) {
					t.Error("boot not queued")
				}
				returned <- len(sink.received())
			}()
			deadline := time.After(time.Minute)
			for {
				if tc.advance {
					clk.Advance(time.Second)
				}
				if tc.cancel {
					callCancel()
				}
				select {
				case got := <-returned:
					if got != tc.received {
						t.Errorf("heartbeat service had %d boots when Booted returned, want %d", got, tc.received)
					}
					if want := 1 - tc.received; b.Pending() != want {
						t.Errorf("%d boots queued after Booted, want %d", b.Pending(), want)
					}
					return
				case <-time.After(10 * time.Millisecond):
				case <-deadline:
					t.Fatal("Booted did not return")
				}
			}
		})
	}
}

// booterFake keeps the boots the service hands over.
type booterFake struct {
	mu       sync.Mutex
	boots    []*berthv1.BootRecord
	interval time.Duration
}

func (f *booterFake) Booted(_ context.Context, r *berthv1.BootRecord) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boots = append(f.boots, r)
	return true
}

func (f *booterFake) Interval() time.Duration { return f.interval }

func (f *booterFake) got() []*berthv1.BootRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*berthv1.BootRecord(nil), f.boots...)
}

var errNoBoot = errors.New("no boot")

func bootOf(f *booterFake, node string) (*berthv1.BootRecord, error) {
	for _, b := range f.got() {
		if b.GetNodeId() == node {
			return b, nil
		}
	}
	return nil, errNoBoot
}

func bootBeat(seq uint64) *berthv1.BootBeat {
	return &berthv1.BootBeat{BootId: "boot-1", Sequence: seq, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP, Uptime: durationpb.New(4 * time.Second)}
}

// TestResumeHandsBootOver: a Resume, and a first Register that returns a
// certificate, hand their boot to the heartbeat service and tell the node
// the interval; a pending node's, a call without a boot and a revoked
// node's refused Resume hand nothing over; a bad boot is refused.
func TestResumeHandsBootOver(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		boots := &booterFake{interval: 9 * time.Second}
		e := newEnvConfig(t, engine, func(c *Config) { c.Boots = boots })
		ctx := context.Background()

		pending := e.newNode(uuidA)
		req := pending.registerRequest(t, e.token(t, &berthv1.CreateTokenRequest{}))
		req.Boot = bootBeat(1)
		resp, err := pending.client().Register(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCredentials().GetHeartbeatInterval() != nil || len(boots.got()) != 0 {
			t.Fatalf("a pending node's boot was handed over: %v, %v", resp.GetCredentials().GetHeartbeatInterval(), boots.got())
		}

		n := e.newNode(uuidB)
		req = n.registerRequest(t, e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true}))
		req.Boot = bootBeat(1)
		resp, err = n.client().Register(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetCredentials().GetNodeId()
		if resp.GetCredentials().GetHeartbeatInterval().AsDuration() != 9*time.Second {
			t.Errorf("Register's heartbeat interval %v, want 9s", resp.GetCredentials().GetHeartbeatInterval())
		}
		b, err := bootOf(boots, id)
		if err != nil || b.GetBootId() != "boot-1" || b.GetSequence() != 1 || b.GetStatus() != berthv1.ReportedStatus_REPORTED_STATUS_UP ||
			b.GetUptime().AsDuration() != 4*time.Second {
			t.Fatalf("Register's boot: %v, %v", b, err)
		}

		// Without a boot (an older agent): nothing, and no interval.
		rr, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if rr.GetCredentials().GetHeartbeatInterval() != nil || len(boots.got()) != 1 {
			t.Fatalf("a Resume without a boot handed one over")
		}
		rr, err = n.client().Resume(ctx, &berthv1.ResumeRequest{Boot: bootBeat(1)})
		if err != nil {
			t.Fatal(err)
		}
		if rr.GetCredentials().GetHeartbeatInterval().AsDuration() != 9*time.Second || len(boots.got()) != 2 {
			t.Fatalf("Resume: interval %v, %d boots", rr.GetCredentials().GetHeartbeatInterval(), len(boots.got()))
		}

		for _, tt := range []struct {
			field string
			boot  *berthv1.BootBeat
		}{
			{"boot.boot_id", &berthv1.BootBeat{BootId: "", Sequence: 1, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}},
			{"boot.boot_id", &berthv1.BootBeat{BootId: "a/b", Sequence: 1, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}},
			{"boot.sequence", &berthv1.BootBeat{BootId: "b", Sequence: 0, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}},
			{"boot.sequence", &berthv1.BootBeat{BootId: "b", Sequence: 1 << 63, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}},
			{"boot.status", &berthv1.BootBeat{BootId: "b", Sequence: 1}},
			{"boot.status", &berthv1.BootBeat{BootId: "b", Sequence: 1, Status: 99}},
			{"boot.uptime", &berthv1.BootBeat{BootId: "b", Sequence: 1, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP, Uptime: durationpb.New(-time.Second)}},
		} {
			_, err := n.client().Resume(ctx, &berthv1.ResumeRequest{Boot: tt.boot})
			grpctest.WantStatus(t, err, codes.InvalidArgument, tt.field+" "+map[string]string{
				"boot.boot_id": ruleBootID, "boot.sequence": ruleBootSequence, "boot.status": ruleBootStatus, "boot.uptime": ruleBootUptime,
			}[tt.field])
			bad := n.registerRequest(t, "")
			bad.Boot = tt.boot
			_, err = n.client().Register(ctx, bad)
			wantCode(t, err, codes.InvalidArgument)
		}
		if len(boots.got()) != 2 {
			t.Fatalf("bad boots were handed over: %v", boots.got())
		}

		if _, err := e.adminClient().RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		_, err = n.client().Resume(ctx, &berthv1.ResumeRequest{Boot: bootBeat(1)})
		wantCode(t, err, codes.PermissionDenied)
		if len(boots.got()) != 2 {
			t.Fatalf("a revoked node's Resume handed a boot over: %v", boots.got())
		}
	})
}
