package loadgen

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/keys"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// follower does, for the storm, what berth-agent does after a boot that
// the registration service recorded as the node's first heartbeat
// (agent.HeartbeatRecorded): it opens the node's heartbeat stream when the
// agent would (agent.FirstStreamDelay of the interval the service gave),
// off the boot path,
// and goes on with the boot's next sequence. Each node beats once, is
// acknowledged and closes its stream: the storm measures the handshake
// and the first beat, not the steady beating (the heartbeat scenario).
type follower struct {
	addr    string
	bootID  func(*node) string
	timeout time.Duration

	wg      sync.WaitGroup
	started atomic.Int64
	opened  atomic.Int64 // streams whose moment came: begun, if not acknowledged
	acked   atomic.Int64
	// retried counts the tries that failed and were tried again: while
	// the fleet boots, mostly streams the heartbeat service deferred.
	retried atomic.Int64
	lastAck atomic.Int64 // unix nanoseconds
	errs    *tally
}

func newFollower(addr string, bootID func(*node) string) *follower {
	return &follower{addr: addr, bootID: bootID, timeout: ackTimeout, errs: newTally()}
}

// schedule opens the node's stream later, as the agent would after
// res.HeartbeatInterval.
func (f *follower) schedule(ctx context.Context, n *node, res agent.Result) {
	iv := time.Duration(res.HeartbeatInterval * float64(time.Second))
	if iv <= 0 {
		return
	}
	f.started.Add(1)
	f.wg.Add(1)
	time.AfterFunc(agent.FirstStreamDelay(iv, rand.Int64N), func() {
		defer f.wg.Done()
		f.opened.Add(1)
		if ctx.Err() != nil {
			f.errs.add(fmt.Errorf("first heartbeat not sent: %w", ctx.Err()))
			return
		}
		if err := f.beatRetrying(ctx, n); err != nil {
			f.errs.add(err)
			return
		}
		f.acked.Add(1)
		f.lastAck.Store(time.Now().UnixNano())
	})
}

// wait waits for every scheduled stream, or ctx.
func (f *follower) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// followWait bounds how long a node retries its first beat, as an
// agent's --wait does; followRetry is its longest pause between tries.
const (
	followWait  = 4 * time.Minute
	followRetry = 5 * time.Second
)

// beatRetrying is beatOnce until it succeeds, as the agent reconnects with
// backoff: a heartbeat service that is restarting or unreachable is tried
// again, a refusal (a revoked node, a bad beat) is not.
func (f *follower) beatRetrying(ctx context.Context, n *node) error {
	// The node's key and the certificate its boot wrote are read once, as
	// the agent holds them, not again for each try.
	src, err := n.keys()
	if err != nil {
		return fmt.Errorf("keys of %s: %w", n.hostname, err)
	}
	defer src.Close()
	creds, err := readCredentials(n.certDir())
	if err != nil {
		return fmt.Errorf("credentials of %s: %w", n.hostname, err)
	}
	deadline := time.Now().Add(followWait)
	wait := 250 * time.Millisecond
	for {
		err := f.beatOnce(ctx, n, src, creds)
		switch status.Code(err) {
		case codes.OK:
			return nil
		case codes.PermissionDenied, codes.InvalidArgument, codes.Unauthenticated:
			return err
		}
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			return err
		}
		f.retried.Add(1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		wait = min(2*wait, followRetry)
	}
}

// beatOnce connects as the node (its key, the certificate its boot wrote),
// sends the beat after the boot's and waits for its acknowledgement.
func (f *follower) beatOnce(ctx context.Context, n *node, src keys.Source, creds *agent.Credentials) error {
	cc, err := dialHeartbeat(f.addr, creds, &boot{n: n, keys: src})
	if err != nil {
		return err
	}
	defer cc.Close()
	sctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	s, err := berthv1.NewHeartbeatServiceClient(cc).Heartbeat(sctx)
	if err != nil {
		return fmt.Errorf("heartbeat stream of %s: %w", n.hostname, err)
	}
	// The boot was sequence 1 (the agent's bootSequence).
	const seq = 2
	if err := s.Send(&berthv1.HeartbeatRequest{Sequence: seq, BootId: f.bootID(n), Status: berthv1.ReportedStatus_REPORTED_STATUS_UP,
		Uptime: durationpb.New(time.Second)}); err != nil {
		return fmt.Errorf("first beat of %s: %w", n.hostname, err)
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return fmt.Errorf("first beat of %s: %w", n.hostname, streamCause(sctx, err))
		}
		if m.GetAckSequence() == seq {
			return s.CloseSend()
		}
	}
}

// readCredentials reads what a --once boot wrote: the chain and the trust
// bundle.
func readCredentials(dir string) (*agent.Credentials, error) {
	chain, err := readCerts(filepath.Join(dir, agent.CertFile))
	if err != nil {
		return nil, err
	}
	trust, err := readCerts(filepath.Join(dir, agent.CAFile))
	if err != nil {
		return nil, err
	}
	return &agent.Credentials{Chain: chain, Trust: trust}, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": no certificate")
	}
	return out, nil
}
