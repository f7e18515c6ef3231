package registration

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// A node's Resume counts as the first heartbeat of its boot (issue 17: one
// full handshake on the boot path). The registration service, which has
// just checked the node (key, status, revocation, boot evidence), queues
// the boot and a BootSender hands the queue to the heartbeat service in
// batches over one long-lived connection (HeartbeatBootService.RecordBoots,
// one store transaction per batch there). The node is told the fleet's
// heartbeat interval and opens its own stream later, at a random moment
// in its second half, going on with the boot's next sequence.
//
// Resume answers once its boot is handed over: the heartbeat service has
// written it, so a registration replica that dies after answering loses
// nothing, and an agent told the interval (a --once boot reports its
// heartbeat "recorded") is right. The wait is bounded so that a slow
// heartbeat service does not hold up booting nodes, and skipped while the
// handoff is failing, so that one that is down does not stop nodes from
// booting. The trade-offs, each safe for health:
//   - A boot answered without its handoff (the heartbeat service slow or
//     unreachable) stays queued in memory. A registration replica that
//     dies then loses it; its node becomes healthy on its own first beat,
//     within the interval (never, for a --once boot, until its next boot).
//   - Until the handoff the node's health still shows what it was before,
//     e.g. unreachable since the power cut: late, never wrong.
//   - A boot the heartbeat service gets later than two intervals (less a
//     flush period) after it was served is skipped there (it would be
//     suspect at once); the node's own first beat makes it healthy.
//   - A node revoked between its Resume and the handoff: the heartbeat
//     service checks its revocations before recording, and skips it.

// DefaultBootBatch is the most boots one RecordBoots call carries.
const DefaultBootBatch = 2000

// DefaultBootQueue bounds the boots queued while the heartbeat service is
// slow or unreachable: a large fleet's power-restore storm. Beyond it new
// boots are not queued (their nodes' first beats record them).
const DefaultBootQueue = 200_000

// bootRetryMax bounds the wait between failed handoffs; bootRefresh is how
// often an idle sender asks for the interval again.
const (
	bootRetryMin = 100 * time.Millisecond
	bootRetryMax = 5 * time.Second
	bootRefresh  = 30 * time.Second
	// bootCallTimeout bounds one RecordBoots call.
	bootCallTimeout = 30 * time.Second
)

// DefaultBootWait bounds how long Resume waits for its boot's handoff:
// one call normally takes milliseconds, a storm's batch a few hundred.
const DefaultBootWait = 2 * time.Second

// Booter is what the registration service needs to hand over boots.
type Booter interface {
	// Booted queues a boot and waits for its handoff, until ctx ends or
	// at most a bound, and not at all while handoffs fail. It reports
	// whether the boot was queued.
	Booted(ctx context.Context, b *berthv1.BootRecord) bool
	// Interval is the fleet's heartbeat interval, as last learnt from the
	// heartbeat service; 0 while unknown.
	Interval() time.Duration
}

// BootSink is the heartbeat service's side of the handoff.
type BootSink interface {
	RecordBoots(ctx context.Context, in *berthv1.RecordBootsRequest, opts ...grpc.CallOption) (*berthv1.RecordBootsResponse, error)
}

// BootSenderConfig configures a BootSender.
type BootSenderConfig struct {
	// Sink is the heartbeat service (a HeartbeatBootServiceClient).
	// Required.
	Sink BootSink
	// Batch and Queue bound a call and the queue (DefaultBootBatch,
	// DefaultBootQueue).
	Batch, Queue int
	// Wait bounds Booted's wait for the handoff (DefaultBootWait).
	Wait   time.Duration
	Logger *slog.Logger
	Clock  clock.Clock
}

// BootSender queues boots and hands them to the heartbeat service, one
// call at a time: boots that arrive during a call go together in the
// next (group commit).
type BootSender struct {
	sink  BootSink
	batch int
	limit int
	wait  time.Duration
	log   *slog.Logger
	clock clock.Clock

	mu       sync.Mutex
	queue    []queuedBoot
	interval time.Duration
	dropped  int64
	queued   int64 // boots ever queued: a boot's ticket
	sent     int64 // boots the heartbeat service answered for
	failing  bool  // the last call failed
	wake     chan struct{}
	// delivered is closed and replaced after each call, so that Booted's
	// waits end on a failure too.
	delivered chan struct{}
}

type queuedBoot struct {
	rec    *berthv1.BootRecord
	served time.Time
}

// NewBootSender builds a sender; Run sends.
func NewBootSender(c BootSenderConfig) (*BootSender, error) {
	if c.Sink == nil {
		return nil, errors.New("registration: BootSenderConfig.Sink is required")
	}
	if c.Batch < 0 || c.Queue < 0 || c.Wait < 0 {
		return nil, errors.New("registration: BootSenderConfig.Batch, Queue and Wait must not be negative")
	}
	if c.Batch == 0 {
		c.Batch = DefaultBootBatch
	}
	if c.Queue == 0 {
		c.Queue = DefaultBootQueue
	}
	if c.Wait == 0 {
		c.Wait = DefaultBootWait
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &BootSender{sink: c.Sink, batch: c.Batch, limit: c.Queue, wait: c.Wait, log: c.Logger, clock: clock.Or(c.Clock),
		wake: make(chan struct{}, 1), delivered: make(chan struct{})}, nil
}

// Booted queues a boot and waits for its handoff.
func (b *BootSender) Booted(ctx context.Context, r *berthv1.BootRecord) bool {
	b.mu.Lock()
	if len(b.queue) >= b.limit {
		b.dropped++
		n := b.dropped
		b.mu.Unlock()
		if n&(n-1) == 0 { // 1, 2, 4, ...: the log is not flooded
			b.log.Warn("boot handoff queue full; nodes become healthy on their own first beat", "dropped", n)
		}
		return false
	}
	b.queue = append(b.queue, queuedBoot{rec: r, served: b.clock.Now()})
	b.queued++
	ticket := b.queued
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	b.waitFor(ctx, ticket)
	return true
}

// waitFor waits until the boot with ticket is handed over (the queue
// leaves in order), a call fails, ctx ends or the bound passes.
func (b *BootSender) waitFor(ctx context.Context, ticket int64) {
	var bound <-chan time.Time
	for {
		b.mu.Lock()
		done, next := b.sent >= ticket || b.failing, b.delivered
		b.mu.Unlock()
		if done {
			return
		}
		if bound == nil {
			bound = b.clock.After(b.wait)
		}
		select {
		case <-next:
		case <-bound:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Interval is the fleet's interval as last learnt; 0 while unknown.
func (b *BootSender) Interval() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.interval
}

// Pending returns the boots queued and not yet delivered.
func (b *BootSender) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// Run sends the queue until ctx ends: at once when boots arrive, one call
// at a time, retrying a failed call with backoff (the boots stay queued,
// in order). An idle sender asks for the interval every 30 s.
func (b *BootSender) Run(ctx context.Context) {
	retry := time.Duration(0)
	for {
		ok := b.sendOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		var wait <-chan time.Time
		switch {
		case !ok:
			retry = min(max(2*retry, bootRetryMin), bootRetryMax)
			wait = b.clock.After(retry)
		case b.Pending() > 0:
			retry = 0
			continue
		default:
			retry = 0
			wait = b.clock.After(bootRefresh)
		}
		select {
		case <-ctx.Done():
			return
		case <-wait:
		case <-b.wake:
			if !ok {
				// Failing: keep to the backoff, new boots or not.
				select {
				case <-ctx.Done():
					return
				case <-wait:
				}
			}
		}
	}
}

// sendOnce makes one call with up to a batch of the queue (none: it only
// learns the interval) and reports whether it succeeded.
func (b *BootSender) sendOnce(ctx context.Context) bool {
	b.mu.Lock()
	n := min(len(b.queue), b.batch)
	batch := make([]*berthv1.BootRecord, n)
	now := b.clock.Now()
	for i, q := range b.queue[:n] {
		r := q.rec
		batch[i] = &berthv1.BootRecord{NodeId: r.GetNodeId(), BootId: r.GetBootId(), Sequence: r.GetSequence(),
			Status: r.GetStatus(), Uptime: r.GetUptime(), Age: durationpb.New(max(now.Sub(q.served), 0))}
	}
	b.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, bootCallTimeout)
	resp, err := b.sink.RecordBoots(cctx, &berthv1.RecordBootsRequest{Boots: batch})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("handing boots to the heartbeat service failed; retrying", "boots", n, "error", err)
		}
		b.mu.Lock()
		b.failing = true
		b.called()
		b.mu.Unlock()
		return false
	}
	b.mu.Lock()
	b.failing = false
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the storm's backing array go
	}
	if iv := resp.GetInterval(); iv.CheckValid() == nil && iv.AsDuration() > 0 {
		b.interval = iv.AsDuration()
	}
	b.sent += int64(n)
	b.called()
	b.mu.Unlock()
	return true
}

// called wakes Booted's waits after a call; b.mu is held.
func (b *BootSender) called() {
	close(b.delivered)
	b.delivered = make(chan struct{})
}

// Delivered returns how many boots the heartbeat service answered for and
// a channel closed at the next call, for waiting on.
func (b *BootSender) Delivered() (int64, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent, b.delivered
}

var _ BootSink = berthv1.HeartbeatBootServiceClient(nil)

// NewGRPCBootSink is the heartbeat service reached over conn.
func NewGRPCBootSink(conn grpc.ClientConnInterface) BootSink {
	return berthv1.NewHeartbeatBootServiceClient(conn)
}

// Validation of a node's BootBeat: the heartbeat service's rules for a
// beat.
const (
	ruleBootID       = ident.BootIDRule
	ruleBootSequence = "must be between 1 and 2^63-1"
	ruleBootStatus   = "must be up, degraded or maintenance"
	ruleBootUptime   = "must be a valid, non-negative duration of at most 100 years"
	maxBootUptime    = 100 * 365 * 24 * time.Hour
)

// validateBootBeat checks a Resume's or Register's boot; nil is none.
func validateBootBeat(b *berthv1.BootBeat) error {
	if b == nil {
		return nil
	}
	if !ident.BootID(b.GetBootId()) {
		return rpcerr.Invalid("boot.boot_id", ruleBootID)
	}
	if s := b.GetSequence(); s == 0 || s > math.MaxInt64 {
		return rpcerr.Invalid("boot.sequence", ruleBootSequence)
	}
	switch b.GetStatus() {
	case berthv1.ReportedStatus_REPORTED_STATUS_UP, berthv1.ReportedStatus_REPORTED_STATUS_DEGRADED,
		berthv1.ReportedStatus_REPORTED_STATUS_MAINTENANCE:
	default:
		return rpcerr.Invalid("boot.status", ruleBootStatus)
	}
	if u := b.GetUptime(); u != nil && (u.CheckValid() != nil || u.AsDuration() < 0 || u.AsDuration() > maxBootUptime) {
		return rpcerr.Invalid("boot.uptime", ruleBootUptime)
	}
	return nil
}

// booted hands a served boot over and says in creds when its node may open
// its stream. Only a node that got its certificate has booted.
func (s *Service) booted(ctx context.Context, creds *berthv1.NodeCredentials, b *berthv1.BootBeat) {
	if s.boots == nil || b == nil || creds.GetStatus() != berthv1.NodeStatus_NODE_STATUS_APPROVED || len(creds.GetCertificateChain()) == 0 {
		return
	}
	if !s.boots.Booted(ctx, &berthv1.BootRecord{NodeId: creds.GetNodeId(), BootId: b.GetBootId(), Sequence: b.GetSequence(),
		Status: b.GetStatus(), Uptime: b.GetUptime()}) {
		return // the node beats at once, as without the handoff
	}
	// Asked after the handoff: its answer brings the interval in force,
	// stretched when this boot is one of a mass boot's.
	iv := s.boots.Interval()
	if iv <= 0 {
		return
	}
	creds.HeartbeatInterval = durationpb.New(iv)
}
