package heartbeat

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

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
	log := rpc.Logger(ctx, s.log).With(attrNode, nodeID)
	if err := s.streamAllowed(ctx, id); err != nil {
		return errorTable.Status(ctx, log, err)
	}
	sess, err := s.core.Connect(ctx, nodeID)
	if err != nil {
		return errorTable.Status(ctx, log, err)
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
			b, err := validateBeat(req)
			if err != nil {
				return errorTable.Status(ctx, log, err)
			}
			// A replica that lost track of revocations stops serving
			// beats rather than accept a revoked node's, and a stream
			// whose certificate was revoked since it opened ends.
			if err := s.streamAllowed(ctx, id); err != nil {
				return errorTable.Status(ctx, log, err)
			}
			interval, err := sess.Beat(ctx, b)
			if err != nil {
				return errorTable.Status(ctx, log, err)
			}
			if err := stream.Send(control(interval, req.GetSequence())); err != nil {
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
			return errorTable.Status(ctx, log, sess.Err())
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil // the agent closed the stream
			}
			return err
		}
	}
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
