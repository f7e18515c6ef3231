package agent

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Heartbeat outcomes of a boot, as Result.Heartbeat.
const (
	// HeartbeatAcked means the heartbeat service acknowledged a beat
	// (--once).
	HeartbeatAcked = "acked"
	// HeartbeatNone means the registration service named no heartbeat
	// endpoint, so no beat was sent.
	HeartbeatNone = "none"
	// HeartbeatDisabled means heartbeats were turned off (--no-heartbeat).
	HeartbeatDisabled = "disabled"
	// HeartbeatRecorded means the registration service took the boot as
	// the node's first heartbeat (--once: no stream was needed).
	HeartbeatRecorded = "recorded"
)

// bootSequence is the sequence of the beat a boot's Resume or Register
// stands for; the heartbeats go on above it.
const bootSequence = 1

// Statuses a node reports with its heartbeats (Config.HeartbeatStatus).
const (
	StatusUp          = "up"
	StatusDegraded    = "degraded"
	StatusMaintenance = "maintenance"
)

// ParseHeartbeatStatus parses a --status value.
func ParseHeartbeatStatus(s string) (berthv1.ReportedStatus, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case StatusUp, "":
		return berthv1.ReportedStatus_REPORTED_STATUS_UP, nil
	case StatusDegraded:
		return berthv1.ReportedStatus_REPORTED_STATUS_DEGRADED, nil
	case StatusMaintenance:
		return berthv1.ReportedStatus_REPORTED_STATUS_MAINTENANCE, nil
	}
	return 0, fmt.Errorf("--status: unknown status %q (want up, degraded or maintenance)", s)
}

// Heartbeat timing bounds. The server sets the interval; these only guard
// against a nonsensical one.
const (
	minInterval     = time.Second
	maxInterval     = time.Hour
	defaultInterval = 10 * time.Second
	// intervalJitter is the largest part of the interval a wait is
	// shortened by, so that nodes started together do not beat together.
	// Shorter, not longer: a late beat counts against the node.
	intervalJitter = 20 // 1/20: up to 5 %
)

var (
	// errHeartbeatUntrusted wraps a heartbeat service whose certificate
	// does not verify against the trust bundle.
	errHeartbeatUntrusted = errors.New("heartbeat service is not trusted")
	// errNoAck is why a stream was given up when the service did not
	// answer a beat in time.
	errNoAck = errors.New("no acknowledgement")
	// errDeferred is why a stream did not open while the heartbeat
	// service deferred new streams (see deferredAlert).
	errDeferred = errors.New("deferred the stream, as it does while the fleet boots")
	// errSuperseded is why a stream ended with Aborted.
	errSuperseded = errors.New("another heartbeat stream of this node replaced this one (is a second agent running with this node's identity?)")
)

// heartbeater is the built-in Heartbeater: one stream at a time to the
// heartbeat service, with the node certificate. The sequence numbers grow
// for the life of the heartbeater, across streams (the service checks them
// per stream, so a new stream could start anywhere; going on makes the
// node's beats one series).
type heartbeater struct {
	clock   clock.Clock
	backoff Backoff
	timeout time.Duration // to open a stream and for each acknowledgement
	key     crypto.Signer
	log     *slog.Logger

	bootID     string
	status     berthv1.ReportedStatus
	uptimeFile string
	start      time.Time // when the agent started, for uptime without UptimeFile

	seq      uint64        // last sequence sent
	interval time.Duration // last interval the service set
	// firstDelay is how long Run waits before its first stream: the boot
	// was recorded as the first beat, and the fleet's streams open spread
	// over the second half of the first interval instead of all at once
	// (followBoot).
	firstDelay time.Duration
	addr       string       // heartbeat service
	dialed     *Credentials // the credentials c presents
	c          *conn

	// state holds the reported status and node events the beats carry,
	// and learns of the stream's state; nil for a --once boot.
	state *nodeState
	// sentGen is the generation of the reported status last sent,
	// sentApplied that of the applied bundle.
	sentGen, sentApplied uint64
	// streams counts the streams that were acknowledged.
	streams int

	// progressBy is when (unix nanoseconds, by clock) the heartbeats must
	// next make progress: an acknowledgement, or the end of a backoff. Past
	// it they are stuck, and the systemd watchdog is no longer pinged.
	progressBy atomic.Int64
}

// expect records that the heartbeats should make progress within d (plus
// two attempt timeouts of slack).
func (h *heartbeater) expect(d time.Duration) {
	h.progressBy.Store(h.clock.Now().Add(d + 2*h.timeout).UnixNano())
}

// healthy reports whether the heartbeats are on schedule: acknowledged
// when due, or reconnecting as planned.
func (h *heartbeater) healthy() bool {
	by := h.progressBy.Load()
	return by == 0 || h.clock.Now().UnixNano() <= by
}

var _ Heartbeater = (*heartbeater)(nil)

// newHeartbeater makes the built-in heartbeater.
func (a *Agent) newHeartbeater(log *slog.Logger) *heartbeater {
	st, _ := ParseHeartbeatStatus(a.cfg.HeartbeatStatus) // checked by New
	return &heartbeater{
		clock:      a.cfg.Clock,
		backoff:    a.cfg.Backoff,
		timeout:    a.cfg.AttemptTimeout,
		key:        a.cfg.Keys.Identity(),
		log:        log,
		bootID:     a.bootID(log),
		status:     st,
		uptimeFile: a.cfg.UptimeFile,
		start:      a.start,
		interval:   defaultInterval,
	}
}

// bootID is Config.BootID, else the kernel's, else one made up for the
// life of the process: a made-up one looks like a reboot to the server
// every time the agent restarts, so it is logged.
func (a *Agent) bootID(log *slog.Logger) string {
	a.bootIDOnce.Do(func() { a.bootIDv = a.readBootID(log) })
	return a.bootIDv
}

// bootBeat is the beat Resume and Register report for this boot, which the
// registration service may record as the node's first heartbeat; nil with
// heartbeats off, since a node that will not beat must not look alive, and
// with NoBootBeat.
func (a *Agent) bootBeat() *berthv1.BootBeat {
	if a.cfg.NoHeartbeat || a.cfg.NoBootBeat {
		return nil
	}
	h := a.newHeartbeater(a.log)
	return &berthv1.BootBeat{BootId: h.bootID, Sequence: bootSequence, Status: h.status, Uptime: durationpb.New(h.uptime())}
}

// followBoot makes h go on from a boot the registration service recorded
// as the node's first beat (the credentials carry the interval): the
// stream opens at a random moment in the second half of the interval, so
// that a fleet booting together does not open its streams together, and
// most of a power restore's nodes not while it is still booting: its boots
// come in far faster than its streams are let in (the heartbeat service
// stretches the interval for them; the first few hundred are told the
// interval before it rises, and the service defers their streams while the
// boots go on: see mtls.Deferrable), and a stream opened in the first
// moments after its boot would take a handshake from a node still booting.
// Its beats go on above the boot's sequence, so that the boot's beat is not
// taken for a new one. Otherwise h beats at once, from sequence 1.
func (h *heartbeater) followBoot(creds *Credentials) {
	if creds == nil || creds.HeartbeatInterval <= 0 {
		return
	}
	h.firstDelay = FirstStreamDelay(creds.HeartbeatInterval, h.backoff.Rand)
	h.seq = bootSequence
}

// FirstStreamDelay is how long after a boot recorded as its first beat a
// node waits to open its heartbeat stream, given the interval the
// registration service told it: a moment drawn by rand (uniform in [0, n))
// in the second half of the interval (see followBoot). Without an interval
// there is nothing to wait for: 0, and rand is not called (it may panic on
// an empty range, as math/rand/v2's does).
func FirstStreamDelay(interval time.Duration, rand func(n int64) int64) time.Duration {
	if interval <= 0 {
		return 0
	}
	return interval/2 + time.Duration(rand(int64(interval-interval/2)))
}

func (a *Agent) readBootID(log *slog.Logger) string {
	if a.cfg.BootID != "" {
		return a.cfg.BootID
	}
	b, err := os.ReadFile(a.cfg.BootIDFile)
	if id := strings.TrimSpace(string(b)); err == nil && ident.BootID(id) {
		return id
	}
	r := make([]byte, 16)
	_, _ = rand.Read(r)
	id := "agent-" + hex.EncodeToString(r)
	if err == nil {
		err = errors.New("not a valid boot ID")
	}
	log.Warn("cannot read the boot ID; using one for the life of this agent (set --boot-id)", "file", a.cfg.BootIDFile, logErr, err, logBootID, id)
	return id
}

// uptime is the node's uptime, or the agent's when the node's is unknown.
func (h *heartbeater) uptime() time.Duration {
	if b, err := os.ReadFile(h.uptimeFile); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if s, err := strconv.ParseFloat(f[0], 64); err == nil && s >= 0 && s < 1e9 {
				return time.Duration(s * float64(time.Second))
			}
		}
	}
	return max(h.clock.Now().Sub(h.start), 0)
}

// supersededRetry is how long the heartbeater steps back after another
// stream of the node replaced its own (Aborted). Retrying at once would make
// two agents of one node flap; never retrying would let a one-off
// "berth-agent --once" on a running node silence it for good, and the node
// would be declared unreachable while it is up.
func supersededRetry(interval time.Duration) time.Duration {
	return max(10*interval, time.Minute)
}

// Run beats until ctx ends, reconnecting with backoff whenever the stream
// breaks, and after a long pause (supersededRetry) when another stream of
// the node replaced its own. It stops, returning nil, when the service has
// no heartbeats (Unimplemented); it returns an ErrDenied error for a
// revoked node. Each connection uses the credentials current when it is
// made.
func (h *heartbeater) Run(ctx context.Context, creds func() *Credentials) error {
	defer h.close()
	if d := h.firstDelay; d > 0 {
		// The boot counted as the first beat; the stream opens later.
		h.expect(d)
		h.log.Info("boot recorded as the first heartbeat; opening the heartbeat stream later", logBootID, h.bootID, logDelay, d)
		if err := h.clock.Sleep(ctx, d); err != nil {
			return nil
		}
	}
	h.log.Info("heartbeats starting", logBootID, h.bootID)
	for n := 0; ; {
		h.expect(0)
		acked, err := h.stream(ctx, creds(), false, h.timeout)
		if ctx.Err() != nil {
			return nil
		}
		switch status.Code(err) {
		case codes.PermissionDenied:
			h.log.Error("heartbeat service denied the node; heartbeats stopped", logHBAddr, h.addr, logErr, err)
			return heartbeatDenied(err)
		case codes.Aborted:
			d := supersededRetry(h.interval)
			h.expect(d)
			h.log.Warn(errSuperseded.Error()+"; retrying later", logHBAddr, h.addr, logDelay, d)
			if err := h.clock.Sleep(ctx, d); err != nil {
				return nil
			}
			n = 0
			continue
		case codes.Unimplemented:
			h.log.Error("heartbeat endpoint has no heartbeat service; heartbeats stopped", logHBAddr, h.addr, logErr, err)
			return nil
		}
		if acked {
			n = 0 // the stream worked: start the backoff over
		}
		d := h.backoff.Delay(n)
		n++
		if status.Code(err) == codes.ResourceExhausted {
			// The service found the beats too frequent; give it an
			// interval's rest.
			d = max(d, h.interval)
		}
		_, floor := retryable(err)
		d = max(d, floor)
		h.expect(d)
		if errors.Is(err, errDeferred) {
			// Expected of the first streams of a mass boot: not a fault.
			h.log.Info("heartbeat stream deferred; reconnecting", logHBAddr, h.addr, logErr, err, logDelay, d)
		} else {
			h.log.Warn("heartbeat stream ended; reconnecting", logHBAddr, h.addr, logErr, err, logDelay, d)
		}
		if err := h.clock.Sleep(ctx, d); err != nil {
			return nil
		}
	}
}

// once sends beats on one stream until the first is acknowledged and
// returns the interval the service set.
func (h *heartbeater) once(ctx context.Context, creds *Credentials, timeout time.Duration) (time.Duration, error) {
	if _, err := h.stream(ctx, creds, true, timeout); err != nil {
		return 0, err
	}
	return h.interval, nil
}

// connect (re)makes the connection when there is none yet or the
// credentials changed, so that a renewed certificate is used from the
// next stream on.
func (h *heartbeater) connect(creds *Credentials) error {
	addr := creds.Endpoints.GetHeartbeat()
	if addr == "" {
		addr = h.addr // a renewal that names no endpoints keeps the last
	}
	if h.c != nil && creds == h.dialed && addr == h.addr {
		return nil
	}
	h.close()
	c, err := dialNode(addr, mtls.ServiceHeartbeat, "heartbeat service", creds, h.key, h.timeout, errHeartbeatUntrusted)
	if err != nil {
		return err
	}
	h.c, h.dialed, h.addr = c, creds, addr
	return nil
}

func (h *heartbeater) close() {
	if h.c != nil {
		h.c.Close()
		h.c = nil
	}
}

// stream runs one heartbeat stream: a beat, its acknowledgement, a wait of
// the interval, and again, until the stream breaks or ctx ends. With once
// it closes the stream after the first acknowledgement. timeout bounds
// opening the stream and each acknowledgement. It reports whether any beat
// was acknowledged, and why the stream ended: a *transientError, an
// untrusted service, the service's own status, or ctx's error.
func (h *heartbeater) stream(ctx context.Context, creds *Credentials, once bool, timeout time.Duration) (acked bool, err error) {
	if err := h.connect(creds); err != nil {
		return false, err
	}
	c := h.c
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// A failed dial or handshake ends the stream at once, as in attempt.
	c.watch.begin(cancel)
	defer c.watch.end()
	c.cc.ResetConnectBackoff()
	c.cc.Connect()
	fail := func(err error) (bool, error) { return acked, h.classify(ctx, sctx, timeout, err) }

	// Opening the stream waits for the connection; the first beat's
	// acknowledgement timer covers that too.
	timer := time.AfterFunc(timeout, func() { cancel(errNoAck) })
	s, err := berthv1.NewHeartbeatServiceClient(c.cc).Heartbeat(sctx)
	if err != nil {
		timer.Stop()
		return fail(err)
	}
	st := newStreamState(h.interval)
	if h.state != nil {
		st.onBundle = h.state.announceBundle
	}
	go st.receive(s, h.log)
	h.setConnection(connConnecting)
	defer h.setConnection(connDisconnected)
	for first := true; ; first = false {
		h.seq++
		seq := h.seq
		sent := h.clock.Now()
		req, lastEvent := h.beatWith(seq, first)
		if err := s.Send(req); err != nil {
			timer.Stop()
			// Send only says the stream is gone; Recv says why.
			<-st.done
			return fail(st.err)
		}
		err := st.waitAck(seq)
		timer.Stop()
		if err != nil {
			return fail(err)
		}
		h.interval = st.currentInterval()
		h.expect(h.interval)
		more := h.ackedState(lastEvent)
		if !acked {
			if h.streams++; h.streams > 1 && h.state != nil {
				// While disconnected the node may have missed news of a
				// new bundle.
				h.state.announceBundle(checkStore)
			}
			acked = true
			h.log.Info("heartbeats acknowledged", logHBAddr, h.addr, logIntv, h.interval, "sequence", seq)
		} else {
			h.log.Debug("heartbeat acknowledged", "sequence", seq)
		}
		if once {
			h.closeStream(s, st, timeout, cancel)
			return acked, nil
		}
		if err := h.wait(sctx, st, sent, more); err != nil {
			return fail(err)
		}
		timer = time.AfterFunc(timeout, func() { cancel(errNoAck) })
	}
}

// closeStream half-closes the stream and waits, bounded, for the service
// to end it, so that it sees a node that left rather than a broken stream.
func (h *heartbeater) closeStream(s berthv1.HeartbeatService_HeartbeatClient, st *streamState, timeout time.Duration, cancel context.CancelCauseFunc) {
	if err := s.CloseSend(); err != nil {
		return
	}
	t := time.AfterFunc(timeout, func() { cancel(errNoAck) })
	<-st.done
	t.Stop()
}

// wait waits from sent until the next beat is due, by the interval the
// service set, following a new interval that arrives meanwhile. It returns
// early, with the reason, when the stream ends. Something new to report
// (or more, still queued) makes the next beat due early: at a quarter of
// the interval after sent, within what the service allows.
func (h *heartbeater) wait(ctx context.Context, st *streamState, sent time.Time, more bool) error {
	var kicked atomic.Bool
	for {
		wctx, wake := context.WithCancel(ctx)
		iv, err := st.sleeping(wake)
		if err != nil {
			wake()
			return err
		}
		due := sent.Add(h.jitter(iv))
		if more || kicked.Load() {
			due = sent.Add(iv / earlyBeats)
		} else if h.state != nil {
			go func() {
				select {
				case <-h.state.kick:
					kicked.Store(true)
					wake()
				case <-wctx.Done():
				}
			}()
		}
		d := due.Sub(h.clock.Now())
		if d > 0 {
			err = h.clock.Sleep(wctx, d)
		}
		st.sleeping(nil)
		wake()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			return nil
		}
		// Woken: the interval changed, something is to be reported, or the
		// stream ended; look again.
	}
}

// earlyBeats is how many times an interval an agent beats at most when it
// has something to report: the heartbeat service allows five.
const earlyBeats = 4

// beatWith is beat carrying the reported status (on the first beat of a
// stream, and when it changed) and the oldest queued events; it returns
// the sequence of the last event it carries, 0 for none.
func (h *heartbeater) beatWith(seq uint64, first bool) (*berthv1.HeartbeatRequest, uint64) {
	req := h.beat(seq)
	if h.state == nil {
		return req, 0
	}
	// This beat carries whatever a kick so far announced: consume the kick
	// first (a later one stays for the next beat), or the wait after this
	// beat would send an early beat with nothing new in it.
	select {
	case <-h.state.kick:
	default:
	}
	rep, gen, events := h.state.pending(h.sentGen, first)
	req.AgentInstance = h.state.instance
	if rep != nil {
		req.Reported = &berthv1.Reported{Values: rep}
		h.sentGen = gen
	}
	h.state.mu.Lock()
	if first || h.sentApplied != h.state.appliedGen {
		req.BundleApplied = h.state.appliedReport()
		h.sentApplied = h.state.appliedGen
	}
	h.state.mu.Unlock()
	var last uint64
	for _, e := range events {
		req.Events = append(req.Events, &berthv1.StatusEvent{
			Kind: e.Type, Message: e.Message, Severity: e.Severity, Sequence: e.Seq, Time: timestamppb.New(e.Time),
		})
		last = e.Seq
	}
	return req, last
}

// ackedState tells the state that a beat carrying the events up to
// lastEvent was acknowledged, and reports whether more wait to be sent.
func (h *heartbeater) ackedState(lastEvent uint64) bool {
	if h.state == nil {
		return false
	}
	h.state.beatAcked(h.interval)
	if lastEvent > 0 {
		h.state.acked(lastEvent)
	}
	h.state.mu.Lock()
	defer h.state.mu.Unlock()
	return len(h.state.queue) > 0 || h.state.dropUnsent > 0 || h.sentGen != h.state.reportedGen || h.sentApplied != h.state.appliedGen
}

func (h *heartbeater) setConnection(state string) {
	if h.state != nil {
		h.state.setConnection(state)
	}
}

// jitter shortens the interval by a random part of up to 1/intervalJitter.
func (h *heartbeater) jitter(iv time.Duration) time.Duration {
	return iv - time.Duration(h.backoff.Rand(int64(iv/intervalJitter)+1))
}

func (h *heartbeater) beat(seq uint64) *berthv1.HeartbeatRequest {
	return &berthv1.HeartbeatRequest{
		Sequence: seq,
		BootId:   h.bootID,
		Uptime:   durationpb.New(h.uptime()),
		Status:   h.status,
	}
}

// classify says why a stream ended: see stream.
func (h *heartbeater) classify(ctx, sctx context.Context, timeout time.Duration, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(context.Cause(sctx), errNoAck):
		if terr := h.c.watch.trustErr(); terr != nil {
			break // a handshake that failed verification says more
		}
		return &transientError{fmt.Errorf("heartbeat service %s: %w within %s", h.addr, errNoAck, timeout)}
	case errors.Is(err, io.EOF):
		return &transientError{fmt.Errorf("heartbeat service %s closed the stream", h.addr)}
	}
	err = h.c.classify(ctx, sctx, h.addr, err)
	var te *transientError
	if errors.As(err, &te) && strings.Contains(err.Error(), deferredAlert) {
		return &transientError{fmt.Errorf("heartbeat service %s %w: %w", h.addr, errDeferred, err)}
	}
	return err
}

// deferredAlert is how the heartbeat service's refusal of a deferrable
// connection (mtls.DeferStreams) reaches the node: the TLS alert crypto/tls
// sends for a refused ClientHello, which names no reason. A service
// failing its handshake for another reason sends it too, rarely.
const deferredAlert = "remote error: tls: internal error"

// streamState is what the receiving goroutine of a stream learnt.
type streamState struct {
	mu       sync.Mutex
	interval time.Duration
	acked    uint64
	wake     context.CancelFunc // of the wait in progress, if any
	onBundle func(int64)        // told the node's new bundle version
	ack      chan struct{}      // a new acknowledgement arrived
	done     chan struct{}      // closed when the stream ended
	err      error              // why; set before done is closed
}

func newStreamState(interval time.Duration) *streamState {
	return &streamState{interval: interval, ack: make(chan struct{}, 1), done: make(chan struct{})}
}

// receive reads the service's messages until the stream ends.
func (st *streamState) receive(s berthv1.HeartbeatService_HeartbeatClient, log *slog.Logger) {
	for {
		m, err := s.Recv()
		if err != nil {
			st.mu.Lock()
			st.err = err
			close(st.done)
			wake := st.wake
			st.mu.Unlock()
			if wake != nil {
				wake()
			}
			return
		}
		st.mu.Lock()
		changed := false
		if d := m.GetInterval(); d != nil && d.CheckValid() == nil && d.AsDuration() > 0 {
			iv := min(max(d.AsDuration(), minInterval), maxInterval)
			if changed = iv != st.interval; changed {
				log.Info("heartbeat interval set", logIntv, iv)
				st.interval = iv
			}
		}
		if v := m.GetBundleVersion(); v > 0 && st.onBundle != nil {
			st.onBundle(v)
		}
		if a := m.GetAckSequence(); a > st.acked {
			st.acked = a
			select {
			case st.ack <- struct{}{}:
			default:
			}
		}
		wake := st.wake
		st.mu.Unlock()
		if changed && wake != nil {
			wake()
		}
	}
}

// waitAck waits until beat seq is acknowledged or the stream ends.
func (st *streamState) waitAck(seq uint64) error {
	for {
		st.mu.Lock()
		acked, ended, err := st.acked >= seq, st.isDone(), st.err
		st.mu.Unlock()
		switch {
		case acked:
			return nil
		case ended:
			return err
		}
		select {
		case <-st.ack:
		case <-st.done:
		}
	}
}

// sleeping registers the wake function of a wait (nil when it is over)
// and returns the interval to wait, or why the stream ended.
func (st *streamState) sleeping(wake context.CancelFunc) (time.Duration, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if wake != nil && st.isDone() {
		return 0, st.err
	}
	st.wake = wake
	return st.interval, nil
}

func (st *streamState) currentInterval() time.Duration {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.interval
}

// isDone is called with mu held.
func (st *streamState) isDone() bool {
	select {
	case <-st.done:
		return true
	default:
		return false
	}
}

// heartbeatDenied is the ErrDenied error of a PermissionDenied stream.
func heartbeatDenied(err error) error {
	d := deniedFromStatus(err)
	d.what = "heartbeat"
	return d
}

// bootHeartbeat is the heartbeat step of a --once boot: beats until the
// first is acknowledged, retrying an unreachable service with backoff up
// to --wait. It returns the interval the service set.
func (a *Agent) bootHeartbeat(ctx context.Context, creds *Credentials, log *slog.Logger) (time.Duration, error) {
	h := a.newHeartbeater(log)
	defer h.close()
	w := a.newWaiter()
	for {
		iv, err := h.once(ctx, creds, w.attemptTimeout(a.cfg.AttemptTimeout))
		switch code := status.Code(err); {
		case err == nil:
			return iv, nil
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case code == codes.PermissionDenied:
			return 0, heartbeatDenied(err)
		case code == codes.Aborted:
			return 0, fmt.Errorf("heartbeat service %s: %w", h.addr, errSuperseded)
		case !isTransient(err):
			if _, ok := status.FromError(err); ok {
				return 0, fmt.Errorf("heartbeat service %s: %w", h.addr, rpcError("heartbeat", err))
			}
			return 0, err
		}
		log.Warn("heartbeat service not reachable; retrying", logHBAddr, h.addr, logErr, err)
		_, floor := retryable(err)
		ok, werr := w.waitAtLeast(ctx, floor)
		if werr != nil {
			return 0, werr
		}
		if !ok {
			return 0, fmt.Errorf("heartbeat service %s unreachable for %s: %w", h.addr, a.cfg.Wait, err)
		}
	}
}
