package revocation

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/clock"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// fakeCA serves a revocation list and records the since of each request.
type fakeCA struct {
	list   []*berthv1.Revocation
	err    error
	sinces []*timestamppb.Timestamp
}

func (f *fakeCA) GetRevocations(_ context.Context, req *berthv1.GetRevocationsRequest, _ ...grpc.CallOption) (*berthv1.GetRevocationsResponse, error) {
	f.sinces = append(f.sinces, req.GetSince())
	if req.Since != nil && req.GetSince().CheckValid() != nil {
		return nil, errors.New("since must be a valid timestamp") // as the CA says
	}
	if f.err != nil {
		return nil, f.err
	}
	return &berthv1.GetRevocationsResponse{Revocations: f.list}, nil
}

func TestCache(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	ca := &fakeCA{list: []*berthv1.Revocation{{Serial: "0abc", NodeId: "n1", RevokedAt: timestamppb.New(t0)}}}
	c := New(Config{Source: ca})
	// With nothing revoked yet, polls keep asking for everything.
	ca.list = nil
	for range 2 {
		if err := c.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ca.list = []*berthv1.Revocation{{Serial: "0abc", NodeId: "n1", RevokedAt: timestamppb.New(t0), NodeRevoked: true}}
	ca.sinces = nil
	if c.Revoked(ctx, "n1", "abc") {
		t.Fatal("revoked before the first refresh")
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, serial := range []string{"abc", "0ABC", "00abc"} {
		if !c.Revoked(ctx, "n1", serial) {
			t.Errorf("serial %q not seen as revoked", serial)
		}
	}
	if c.Revoked(ctx, "n2", "abd") {
		t.Fatal("an unrevoked serial is revoked")
	}
	// The next poll asks only for what is new, with some overlap.
	ca.list = []*berthv1.Revocation{{Serial: "def", NodeId: "n2", RevokedAt: timestamppb.New(t0.Add(time.Minute))}}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ca.sinces[0] != nil || !ca.sinces[1].AsTime().Equal(t0.Add(-overlap)) {
		t.Fatalf("since of the polls = %v", ca.sinces)
	}
	if !c.Revoked(ctx, "n1", "abc") || !c.Revoked(ctx, "n2", "def") {
		t.Fatal("the cache forgot or missed a revocation")
	}
	if !c.NodeRevoked(ctx, "n1") || c.NodeRevoked(ctx, "n3") {
		t.Fatal("NodeRevoked is wrong")
	}
	// A node whose old board's certificate was superseded is not revoked,
	// nor is one of whose certificates only one was, whatever the reason:
	// the CA says which revocations are the node's.
	ca.list = []*berthv1.Revocation{
		{Serial: "777", NodeId: "n3", Reason: ReasonSuperseded, RevokedAt: timestamppb.New(t0.Add(2 * time.Minute))},
		{Serial: "778", NodeId: "n4", Reason: "keyCompromise", RevokedAt: timestamppb.New(t0.Add(2 * time.Minute))},
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.Revoked(ctx, "n3", "777") || c.NodeRevoked(ctx, "n3") {
		t.Fatal("a superseded certificate revoked its node")
	}
	if !c.Revoked(ctx, "n4", "778") || c.NodeRevoked(ctx, "n4") {
		t.Fatal("a certificate's own revocation revoked its node")
	}
	// The node is revoked later: a revocation of a serial already known
	// comes again, now as the node's.
	ca.list = []*berthv1.Revocation{{Serial: "777", NodeId: "n3", Reason: ReasonSuperseded, RevokedAt: timestamppb.New(t0.Add(3 * time.Minute)), NodeRevoked: true}}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.NodeRevoked(ctx, "n3") {
		t.Fatal("the node's revocation was missed")
	}
	// A failed poll keeps what is known.
	ca.err = errors.New("CA down")
	if err := c.Refresh(ctx); err == nil {
		t.Fatal("Refresh hid the CA's error")
	}
	if !c.Revoked(ctx, "n1", "abc") {
		t.Fatal("a failed poll dropped revocations")
	}
}

// countingCA answers every poll with nothing and reports each one.
type countingCA struct{ polls chan struct{} }

func (f countingCA) GetRevocations(context.Context, *berthv1.GetRevocationsRequest, ...grpc.CallOption) (*berthv1.GetRevocationsResponse, error) {
	f.polls <- struct{}{}
	return &berthv1.GetRevocationsResponse{}, nil
}

// TestRunPolls: Run polls at once, then once per period of its clock, and
// returns when its context ends.
func TestRunPolls(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC))
	ca := countingCA{polls: make(chan struct{})}
	c := New(Config{Source: ca, Period: time.Minute, Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	<-ca.polls // at once
	for range 3 {
		clk.BlockUntil(1)
		clk.Advance(time.Minute - time.Nanosecond)
		select {
		case <-ca.polls:
			t.Fatal("polled before the period passed")
		default:
		}
		clk.Advance(time.Nanosecond)
		<-ca.polls
	}
	clk.BlockUntil(1)
	cancel()
	<-done
}

// TestKnownFailsClosed: before the first load, and once refreshes have
// failed for longer than MaxStale, the cache says it does not know; a
// successful refresh makes it know again.
func TestKnownFailsClosed(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC))
	ca := &fakeCA{err: errors.New("CA down")}
	c := New(Config{Source: ca, MaxStale: time.Minute, Clock: clk})
	if err := c.Known(); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Known before any load = %v, want ErrUnknown", err)
	}
	if err := c.Refresh(ctx); err == nil {
		t.Fatal("Refresh hid the CA's error")
	}
	if err := c.Known(); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Known after a failed first load = %v, want ErrUnknown", err)
	}

	ca.err = nil
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Known(); err != nil {
		t.Fatalf("Known after a load = %v", err)
	}

	// The CA goes away: the list is trusted for MaxStale, then not.
	ca.err = errors.New("CA down")
	clk.Advance(time.Minute)
	if err := c.Refresh(ctx); err == nil {
		t.Fatal("Refresh hid the CA's error")
	}
	if err := c.Known(); err != nil {
		t.Fatalf("Known at exactly MaxStale = %v", err)
	}
	clk.Advance(time.Second)
	if err := c.Known(); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Known past MaxStale = %v, want ErrUnknown", err)
	}

	ca.err = nil
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Known(); err != nil {
		t.Fatalf("Known after the CA returned = %v", err)
	}
}
