package heartbeat

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Heartbeat is a node's stream. The node is the one named by its
// certificate. The first message tells it its interval; every beat is then
// acknowledged with the interval, and a new interval is sent as soon as
// the fleet's changes. The stream ends when the node closes it, on a bad
// beat, or when the node is revoked, opens another stream or the service
// shuts down.
func (s *Service) Heartbeat(stream berthv1.HeartbeatService_HeartbeatServer) error {
	ctx := stream.Context()
	id := caller(ctx)
	nodeID := id.Name
	// The logger is built only for an error: one with attributes would
	// cost memory for as long as the stream is open.
	fail := func(err error) error {
		return errorTable.Status(ctx, rpc.Logger(ctx, s.log).With(attrNode, nodeID), err)
	}
	// The serial is all the checks need of the certificate; taken once,
	// not on every beat.
	serial := ""
	if id.Leaf != nil {
		serial = id.Leaf.SerialNumber.Text(16)
	}
	if err := s.streamAllowed(ctx, nodeID, serial); err != nil {
		return fail(err)
	}
	sess, err := s.core.Connect(ctx, nodeID)
	if err != nil {
		return fail(err)
	}
	defer sess.Close()
	s.metrics.StreamOpened()
	defer s.metrics.StreamClosed()
	beats, recvErr := receive(ctx, stream)
	if err := stream.Send(control(sess.Interval(), 0)); err != nil {
		return err
	}
	bundleVersions, closeBundles := s.bundles.open(nodeID)
	defer closeBundles()
	for {
		select {
		case req := <-beats:
			ack, err := s.beat(ctx, sess, serial, req)
			if err != nil {
				return fail(err)
			}
			if err := stream.Send(ack); err != nil {
				return err
			}
		case v := <-bundleVersions:
			if err := stream.Send(&berthv1.HeartbeatResponse{BundleVersion: v}); err != nil {
				return err
			}
		case <-sess.Changed():
			if err := stream.Send(control(sess.Interval(), 0)); err != nil {
				return err
			}
		case <-sess.Done():
			return fail(sess.Err())
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil // the agent closed the stream
			}
			return err
		}
	}
}

// beat checks and records one beat of sess's stream, opened with the
// certificate of serial, and returns its acknowledgement. Besides the
// acknowledgement it allocates nothing (TestBeatPathAllocations).
func (s *Service) beat(ctx context.Context, sess *liveness.Session, serial string, req *berthv1.HeartbeatRequest) (*berthv1.HeartbeatResponse, error) {
	b, err := validateBeat(req)
	if err != nil {
		return nil, err
	}
	// A replica that lost track of revocations stops serving beats rather
	// than accept a revoked node's, and a stream whose certificate was
	// revoked since it opened ends.
	if err := s.streamAllowed(ctx, sess.NodeID(), serial); err != nil {
		return nil, err
	}
	interval, err := sess.Beat(ctx, b)
	if err != nil {
		return nil, err
	}
	return control(interval, req.GetSequence()), nil
}

// receive reads beats on a goroutine of its own, so that the handler can
// end the stream (revocation, shutdown) while a read is pending. It stops
// when the stream's context ends, which happens when the handler returns.
func receive(ctx context.Context, stream berthv1.HeartbeatService_HeartbeatServer) (<-chan *berthv1.HeartbeatRequest, <-chan error) {
	beats := make(chan *berthv1.HeartbeatRequest)
	errs := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				errs <- err
				return
			}
			select {
			case beats <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	return beats, errs
}

func control(interval time.Duration, ack uint64) *berthv1.HeartbeatResponse {
	return &berthv1.HeartbeatResponse{Interval: durationpb.New(interval), AckSequence: ack}
}
