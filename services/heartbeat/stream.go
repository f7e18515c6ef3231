package heartbeat

import (
	"context"
	"errors"
	"io"
	"sync"
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
	out := &sender{stream: stream}
	// No message may follow the handler's return, whoever sends it; and
	// the session closes after the last beat it took.
	var sess *liveness.Session
	defer func() {
		if sess != nil {
			sess.Close()
		}
	}()
	defer out.close()
	opened, ended := s.serveBeats(ctx, nodeID, serial, stream, out)
	o := <-opened
	if o.sess == nil {
		return streamResult(fail, o.end)
	}
	sess = o.sess
	s.metrics.StreamOpened()
	defer s.metrics.StreamClosed()
	bundleVersions, closeBundles := s.bundles.open(nodeID)
	defer closeBundles()
	for {
		select {
		case v := <-bundleVersions:
			if err := out.send(&berthv1.HeartbeatResponse{BundleVersion: v}); err != nil {
				return err
			}
		case <-sess.Changed():
			if err := out.send(control(sess.Interval(), 0)); err != nil {
				return err
			}
		case <-sess.Done():
			return fail(sess.Err())
		case end := <-ended:
			return streamResult(fail, end)
		}
	}
}

// streamResult is what the handler returns for end: the status of a bad
// beat or of a refused connection (fail maps them), nothing when the agent
// closed the stream, or the stream's own error.
func streamResult(fail func(error) error, end streamEnd) error {
	switch {
	case end.beat:
		return fail(end.err)
	case errors.Is(end.err, io.EOF):
		return nil // the agent closed the stream
	}
	return end.err
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

// streamEnd is why serveBeats stopped: a bad beat or a refused
// connection (beat), whose error the handler maps to a status, or the
// stream's own error.
type streamEnd struct {
	err  error
	beat bool
}

// opening is how a stream's connection went: its session, or why it has
// none.
type opening struct {
	sess *liveness.Session
	end  streamEnd
}

// serveBeats opens the node's session, tells the node its interval, and
// then reads, records and acknowledges beats, on a goroutine of its own,
// so that the handler can end the stream (revocation, supersede,
// shutdown) while a read is pending. A beat is answered on the goroutine
// that read it: handing it to the handler cost a goroutine switch per
// beat. The session is opened here too, so that the store's deep calls
// (reading the node's row, writing a beat that changes it) grow one
// goroutine's stack, not both. It reports the opening once on opened, then
// stops at the first error, which it reports once on ended; a read returns
// when the stream's context ends, which happens when the handler returns.
func (s *Service) serveBeats(ctx context.Context, nodeID, serial string,
	stream berthv1.HeartbeatService_HeartbeatServer, out *sender) (<-chan opening, <-chan streamEnd) {
	opened := make(chan opening, 1)
	ended := make(chan streamEnd, 1)
	go func() {
		sess, err := s.core.Connect(ctx, nodeID)
		if err != nil {
			opened <- opening{end: streamEnd{err: err, beat: true}}
			return
		}
		if err := out.send(control(sess.Interval(), 0)); err != nil {
			sess.Close()
			opened <- opening{end: streamEnd{err: err}}
			return
		}
		opened <- opening{sess: sess}
		for {
			req, err := stream.Recv()
			if err != nil {
				ended <- streamEnd{err: err}
				return
			}
			if end, ok := out.ack(func() (*berthv1.HeartbeatResponse, error) { return s.beat(ctx, sess, serial, req) }); !ok {
				ended <- end
				return
			}
		}
	}()
	return opened, ended
}

// errStreamClosed is a message after the handler returned; nobody reads
// it, as the stream is over.
var errStreamClosed = errors.New("heartbeat stream closed")

// sender serialises a stream's messages: acknowledgements from the beat
// goroutine, intervals and bundle versions from the handler. gRPC allows
// one sender at a time, and none after the handler returned (close).
type sender struct {
	mu     sync.Mutex
	closed bool
	stream berthv1.HeartbeatService_HeartbeatServer
}

func (o *sender) send(m *berthv1.HeartbeatResponse) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errStreamClosed
	}
	return o.stream.Send(m)
}

// ack records a beat (beat) and sends its acknowledgement, under the lock,
// so that a beat is never recorded once the handler returned and close
// waits for one in progress; ok is false when the stream must end.
func (o *sender) ack(beat func() (*berthv1.HeartbeatResponse, error)) (end streamEnd, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return streamEnd{err: errStreamClosed}, false
	}
	m, err := beat()
	if err != nil {
		return streamEnd{err: err, beat: true}, false
	}
	if err := o.stream.Send(m); err != nil {
		return streamEnd{err: err}, false
	}
	return streamEnd{}, true
}

// close stops every later message; it waits for a beat in progress.
func (o *sender) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

func control(interval time.Duration, ack uint64) *berthv1.HeartbeatResponse {
	return &berthv1.HeartbeatResponse{Interval: durationpb.New(interval), AckSequence: ack}
}
