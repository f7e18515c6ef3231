package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ackTimeout bounds opening a stream and waiting for each acknowledgement,
// as the agent's attempt timeout does.
const ackTimeout = agent.DefaultAttemptTimeout

// errNoHeartbeatEndpoint is a node whose registration service named no
// heartbeat endpoint.
var errNoHeartbeatEndpoint = errors.New("the registration service names no heartbeat endpoint (berthd serve --advertise-heartbeat)")

// hbRun is the shared state of the heartbeat scenario: the measuring
// window and what was measured in it.
type hbRun struct {
	start time.Time // of the connect phase; uptime counts from it
	// windowStart and windowEnd bound the steady state, in UnixNano; zero
	// until set.
	windowStart, windowEnd atomic.Int64
	sent, acked            atomic.Int64
	errs                   *tally
	mu                     sync.Mutex
	lat                    []time.Duration
}

// inWindow reports whether t falls in the measuring window.
func (h *hbRun) inWindow(t time.Time) bool {
	ws, we := h.windowStart.Load(), h.windowEnd.Load()
	ns := t.UnixNano()
	return ws != 0 && ns >= ws && (we == 0 || ns < we)
}

// beforeEnd reports whether t is before the window ended.
func (h *hbRun) beforeEnd(t time.Time) bool {
	we := h.windowEnd.Load()
	return we == 0 || t.UnixNano() < we
}

// errHandedOff is what beater.Run ends the agent with: the node booted
// and its heartbeats are the load generator's from now on.
var errHandedOff = errors.New("berth-loadgen: heartbeats handed off")

// beater is the Heartbeater of one node's long-running agent. Its Run
// takes the credentials the agent booted with (the node certificate, the
// trust bundle and the heartbeat endpoint the registration service named)
// and ends the agent, so that the agent's registration connection is
// closed: a fleet of heartbeating nodes then costs the load generator one
// descriptor per node, not two, as a real node between renewals would
// need no more than its heartbeat stream. beat then keeps one stream to
// the heartbeat service and beats on the interval the service sets,
// timing each acknowledgement. It does not reconnect: a stream that
// breaks is an error of the run.
type beater struct {
	run     *hbRun
	b       *boot
	bootID  string
	creds   *agent.Credentials // set by Run
	release func(error)        // once: the node is connected, or failed to
	// failed is set when the node's stream broke before the window ended;
	// ackedInWindow counts its acknowledged beats in the window.
	failed        atomic.Bool
	connectedAt   atomic.Int64 // unix nanoseconds of the first acknowledgement; 0 before
	ackedInWindow atomic.Int64
}

// connected reports whether the node's stream was acknowledged.
func (bt *beater) connected() bool { return bt.connectedAt.Load() != 0 }

// silentSince reports whether a health event at at concerns the node's
// run: it came after the node's stream was acknowledged and that beat
// written. Before, the node may well have been silent since an earlier
// scenario, and the decider reads last-seen times from the store, which
// the service writes every flush period.
func (bt *beater) silentSince(at time.Time) bool {
	c := bt.connectedAt.Load()
	return c != 0 && !at.Before(time.Unix(0, c).Add(liveness.DefaultFlushPeriod))
}

var _ agent.Heartbeater = (*beater)(nil)

// fail records why the node stopped beating, unless that was after the
// window.
func (bt *beater) fail(err error) {
	if bt.run.beforeEnd(time.Now()) {
		bt.failed.Store(true)
		bt.run.errs.add(err)
	}
	bt.release(err)
}

// Run implements agent.Heartbeater: it keeps the credentials and stops
// the agent (closing its registration connection) with errHandedOff.
func (bt *beater) Run(_ context.Context, creds func() *agent.Credentials) error {
	bt.creds = creds()
	return errHandedOff
}

// beat connects the booted node to its heartbeat service and beats until
// ctx ends or the stream breaks.
func (bt *beater) beat(ctx context.Context) error {
	c := bt.creds
	addr := c.Endpoints.GetHeartbeat()
	if addr == "" {
		bt.fail(errNoHeartbeatEndpoint)
		return nil
	}
	cc, err := dialHeartbeat(addr, c, bt.b)
	if err != nil {
		bt.fail(err)
		return nil
	}
	defer cc.Close()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	opened := time.AfterFunc(ackTimeout, func() { cancel(fmt.Errorf("heartbeat stream to %s: no acknowledgement within %s", addr, ackTimeout)) })
	s, err := berthv1.NewHeartbeatServiceClient(cc).Heartbeat(sctx)
	if err != nil {
		opened.Stop()
		bt.fail(streamCause(sctx, err))
		return nil
	}
	st := &hbStream{s: s, acks: make(chan ack, 4), changed: make(chan struct{}, 1), done: make(chan struct{})}
	st.interval.Store(int64(10 * time.Second))
	go st.receive()

	var seq uint64
	beat := func() (sent time.Time, rtt time.Duration, err error) {
		seq++
		sent = time.Now()
		req := &berthv1.HeartbeatRequest{
			Sequence: seq, BootId: bt.bootID, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP,
			Uptime: durationpb.New(sent.Sub(bt.run.start)),
		}
		if err := s.Send(req); err != nil {
			<-st.done // Send only says the stream is gone; Recv says why
			return sent, 0, st.err
		}
		if bt.run.inWindow(sent) {
			bt.run.sent.Add(1)
		}
		timer := time.NewTimer(ackTimeout)
		defer timer.Stop()
		for {
			select {
			case a := <-st.acks:
				if a.seq >= seq {
					return sent, a.at.Sub(sent), nil
				}
			case <-st.done:
				return sent, 0, st.err
			case <-timer.C:
				return sent, 0, fmt.Errorf("heartbeat %d to %s: no acknowledgement within %s", seq, addr, ackTimeout)
			}
		}
	}

	sent, rtt, err := beat()
	opened.Stop()
	if err != nil {
		bt.fail(streamCause(sctx, err))
		return nil
	}
	bt.connectedAt.Store(time.Now().UnixNano())
	bt.release(nil)
	bt.count(sent, rtt)
	for {
		iv := time.Duration(st.interval.Load())
		// Shorter by up to 5 %, like the agent, so that nodes started
		// together do not beat together; never longer.
		next := sent.Add(iv - time.Duration(rand.Int64N(int64(iv/20)+1)))
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			st.close()
			return nil
		case <-st.done:
			t.Stop()
			if ctx.Err() == nil {
				bt.fail(streamCause(sctx, st.err))
			}
			return nil
		case <-st.changed:
			// A new interval: wait by it from the last beat.
			t.Stop()
			continue
		case <-t.C:
		}
		sent, rtt, err = beat()
		if err != nil {
			if ctx.Err() == nil {
				bt.fail(streamCause(sctx, err))
			}
			return nil
		}
		bt.count(sent, rtt)
	}
}

// count records an acknowledged beat sent at sent.
func (bt *beater) count(sent time.Time, rtt time.Duration) {
	h := bt.run
	if !h.inWindow(sent) {
		return
	}
	h.acked.Add(1)
	bt.ackedInWindow.Add(1)
	h.mu.Lock()
	h.lat = append(h.lat, rtt)
	h.mu.Unlock()
}

// streamCause prefers the reason the stream's context was cancelled with.
func streamCause(sctx context.Context, err error) error {
	if cause := context.Cause(sctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// dialHeartbeat connects to the heartbeat service with the node
// certificate the agent received, verifying the service against the trust
// bundle and the endpoint's host name, as the agent does.
func dialHeartbeat(addr string, c *agent.Credentials, b *boot) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("heartbeat endpoint %q is not host:port", addr)
	}
	cert := tls.Certificate{PrivateKey: b.keys.Identity(), Leaf: c.Leaf()}
	for _, ch := range c.Chain {
		cert.Certificate = append(cert.Certificate, ch.Raw)
	}
	roots := x509.NewCertPool()
	for _, r := range c.Trust {
		roots.AddCert(r)
	}
	cfg := mtls.ExpectServer(mtls.ClientConfig(cert, roots), mtls.TrustDomainOf(c.Leaf()), mtls.ServiceHeartbeat)
	cfg.ServerName = host
	return rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: mtls.Deferrable(cfg)})
}

type ack struct {
	seq uint64
	at  time.Time
}

// hbStream is the receiving side of one stream.
type hbStream struct {
	s        berthv1.HeartbeatService_HeartbeatClient
	interval atomic.Int64 // the service's last interval
	acks     chan ack
	changed  chan struct{}
	done     chan struct{} // closed when the stream ended
	err      error         // why; set before done is closed
}

func (st *hbStream) receive() {
	for {
		m, err := st.s.Recv()
		if err != nil {
			st.err = err
			close(st.done)
			return
		}
		if d := m.GetInterval(); d != nil && d.CheckValid() == nil && d.AsDuration() > 0 {
			// Within the agent's bounds.
			iv := int64(min(max(d.AsDuration(), time.Second), time.Hour))
			if old := st.interval.Swap(iv); old != iv {
				select {
				case st.changed <- struct{}{}:
				default:
				}
			}
		}
		if a := m.GetAckSequence(); a > 0 {
			select {
			case st.acks <- ack{seq: a, at: time.Now()}:
			default: // an old acknowledgement nobody waits for
			}
		}
	}
}

// close half-closes the stream and waits, briefly, for the service to end
// it, so that it sees a node that left rather than a broken stream.
func (st *hbStream) close() {
	if st.s.CloseSend() != nil {
		return
	}
	select {
	case <-st.done:
	case <-time.After(2 * time.Second):
	}
}

// heartbeat is the heartbeat scenario: N nodes boot as long-running agents
// whose heartbeats the load generator sends and times; once all are
// connected they beat for Duration.
func (r *runner) heartbeat(ctx context.Context) error {
	t0 := time.Now()
	if err := r.prepare(ctx, false); err != nil {
		return err
	}
	if r.cfg.Interval > 0 {
		restore, err := r.setInterval(ctx, r.cfg.Interval)
		if err != nil {
			return err
		}
		if !r.cfg.KeepInterval {
			defer restore()
		}
	}
	settings, err := r.waitUnstretched(ctx)
	if err != nil {
		return err
	}
	r.res.IntervalS = round(settings.GetInterval().AsDuration().Seconds(), 3)

	h := &hbRun{errs: newTally()}
	beaters := make(map[*node]*beater, len(r.nodes))
	for _, n := range r.nodes {
		beaters[n] = &beater{run: h, bootID: r.bootID(n)}
	}
	// The nodes boot without their first beat: they open their streams at
	// once, the load this scenario measures, and must not stretch the
	// fleet's timings as a mass boot would.
	boots, err := r.prepareBoots(ctx, r.nodes, bootOpts{noBootBeat: true, heartbeater: func(b *boot) agent.Heartbeater {
		bt := beaters[b.n] // read only: prepareBoots calls this from several goroutines
		bt.b = b
		return bt
	}})
	if err != nil {
		return err
	}
	defer func() {
		for _, b := range boots {
			b.keys.Close()
		}
	}()
	byID := make(map[string]*beater, len(beaters))
	for n, bt := range beaters {
		byID[n.id] = bt
	}
	watch, werr := r.watchHealth(ctx, func(id string, at time.Time) bool {
		bt := byID[id]
		return bt != nil && bt.silentSince(at)
	})
	if werr != nil {
		r.res.Notes = append(r.res.Notes, "health events not counted: "+werr.Error())
	}
	r.res.SetupS = round(time.Since(t0).Seconds(), 3)

	rss := startRSS(r.cfg.ServerProcs, r.cfg.DBPID)
	agents, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	barrier := make(chan struct{})
	sem := make(chan struct{}, r.cfg.Concurrency)
	var connecting, running sync.WaitGroup
	var settled atomic.Int64
	for _, b := range boots {
		bt := beaters[b.n]
		var once sync.Once
		connecting.Add(1)
		bt.release = func(error) {
			once.Do(func() {
				settled.Add(1)
				<-sem
				connecting.Done()
			})
		}
		running.Go(func() {
			<-barrier
			select {
			case sem <- struct{}{}:
			case <-agents.Done():
				once.Do(connecting.Done)
				return
			}
			err := b.agent.Run(agents)
			if errors.Is(err, errHandedOff) && bt.creds != nil {
				// The agent booted and is gone, and its registration
				// connection with it; the node beats on its own.
				err = bt.beat(agents)
			}
			if !bt.connected() && !bt.failed.Load() {
				if err == nil {
					err = errors.New("the agent stopped before its first heartbeat")
				}
				bt.fail(err)
			}
		})
	}
	r.log.Info("connect phase: releasing all agents at once", "nodes", len(boots), "concurrency", r.cfg.Concurrency, "interval", settings.GetInterval().AsDuration())
	h.start = time.Now()
	close(barrier)
	stop := progress(r.log, "connected (or failed)", len(boots), func() int { return int(settled.Load()) })
	waitGroup(ctx, &connecting)
	stop()
	connect := time.Since(h.start)
	r.res.ConnectS = round(connect.Seconds(), 3)

	if r.cfg.SyncDir != "" && r.cfg.SyncProcs > 1 {
		r.log.Info("connected; waiting for the other load generators", "processes", r.cfg.SyncProcs)
		if err := syncProcesses(ctx, r.cfg.SyncDir, r.cfg.Seed, r.cfg.SyncProcs); err != nil {
			return err
		}
	}
	var storeStart storeCounters
	var storeErr error
	r.log.Info("steady state: beating", "duration", r.cfg.Duration)
	ws := time.Now()
	h.windowStart.Store(ws.UnixNano())
	rss.windowStart()
	prof := newProfiler(r.cfg.ProfileURL, r.cfg.ProfileDir)
	prof.windowStart(ctx, r.cfg.Duration)
	until := func(t time.Time) {
		select {
		case <-time.After(time.Until(t)):
		case <-ctx.Done():
		}
	}
	until(ws.Add(storeSettleIn(r.cfg.Duration)))
	if r.cfg.DB != "" {
		storeStart, storeErr = readStore(ctx, r.cfg.DB)
	}
	until(ws.Add(r.cfg.Duration))
	we := time.Now()
	h.windowEnd.Store(we.UnixNano())
	rss.windowEnd()
	// Sampled while every node is still connected: the memory they hold.
	rss.sample()
	hbGrowth, hbKnown := rss.growthKB(r.heartbeatProcs()...)
	r.res.Notes = append(r.res.Notes, prof.windowEnd(ctx)...)
	if r.cfg.DB != "" && storeErr == nil {
		var storeEnd storeCounters
		if storeEnd, storeErr = readStore(ctx, r.cfg.DB); storeErr == nil {
			storeRates(r.res, storeStart, storeEnd)
		}
	}
	if storeErr != nil {
		r.res.Notes = append(r.res.Notes, "store writes not measured: "+storeErr.Error())
	}
	r.res.WindowStart, r.res.WindowEnd = ws.UTC().Format(time.RFC3339Nano), we.UTC().Format(time.RFC3339Nano)
	stopAgents()
	running.Wait()
	rss.finish(r.res)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if watch != nil {
		s, u := watch.stop()
		r.res.SuspectEvents, r.res.UnreachableEvents = &s, &u
	}

	res := r.res
	for _, bt := range beaters {
		if bt.connected() && !bt.failed.Load() && bt.ackedInWindow.Load() > 0 {
			res.OK++
		}
		var out agent.Result
		if json.Unmarshal(bt.b.out.Bytes(), &out) == nil && out.Action != "" {
			if res.Actions == nil {
				res.Actions = map[string]int{}
			}
			res.Actions[out.Action]++
			if out.Renewed {
				res.Renewed++
			}
		}
	}
	res.Errors, res.ErrorSamples = h.errs.snapshot()
	h.mu.Lock()
	l := summarize(h.lat)
	h.mu.Unlock()
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = l.P50, l.P90, l.P99, l.Max
	window := we.Sub(ws)
	res.ElapsedS = round(window.Seconds(), 3)
	res.BeatsSent, res.BeatsAcked = h.sent.Load(), h.acked.Load()
	if window > 0 {
		res.ThroughputPerS = round(float64(res.BeatsAcked)/window.Seconds(), 1)
	}
	if inWindow := res.ThroughputPerS * window.Seconds(); res.ServerCPUMsTotal != nil && inWindow > 0 {
		v := round(*res.ServerCPUMsTotal/inWindow, 4)
		res.ServerCPUMsPerOp = &v
	}
	if connected := countConnected(beaters); hbKnown && connected > 0 {
		v := round(float64(hbGrowth)/float64(connected), 1)
		res.HeartbeatKBPerNode = &v
	}
	if certs, err := r.adm.issuedSince(ctx, h.start); err != nil {
		res.Notes = append(res.Notes, err.Error())
	} else {
		res.CertsIssued = &certs
	}
	r.log.Info("heartbeat run done", "ok", res.OK, "beats_acked", res.BeatsAcked)
	return nil
}

// storeSettle is how far into the window the store's counters are first
// read, so that its rates are the steady state's: the connect phase's
// last writes (boots recorded late, first beats) run into the window's
// first seconds, and PostgreSQL counts a backend's transactions when the
// backend reports them, up to 10 s later for one left idle. Measured
// with 1,000 nodes: the window's first 4 s ran at 30-90 transactions/s,
// a burst came 10 s in, and the rest at 8-13/s against 213 beats/s.
const storeSettle = 11 * time.Second

// storeSettleIn is storeSettle, or a third of a window too short for it.
func storeSettleIn(window time.Duration) time.Duration {
	if window < 2*storeSettle {
		return window / 3
	}
	return storeSettle
}

// waitGroup waits for wg or ctx.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// setInterval makes interval the fleet's heartbeat interval (the grace
// scaled with it) and returns how to put the settings back.
func (r *runner) setInterval(ctx context.Context, interval time.Duration) (restore func(), err error) {
	prev, err := r.adm.heartbeatSettings(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := r.adm.setHeartbeatSettings(ctx, interval, 0); err != nil {
		return nil, err
	}
	r.log.Info("fleet heartbeat interval set for the run", "interval", interval, "was", prev.GetInterval().AsDuration())
	return func() {
		iv, grace := prev.GetInterval().AsDuration(), prev.GetGrace().AsDuration()
		if iv == prev.GetDefaultInterval().AsDuration() && grace == prev.GetDefaultGrace().AsDuration() {
			iv, grace = 0, 0 // back to the defaults, not pinned to them
		}
		if _, err := r.adm.setHeartbeatSettings(context.WithoutCancel(ctx), iv, grace); err != nil {
			r.log.Warn("cannot restore the fleet's heartbeat settings", "err", err)
		}
	}, nil
}

// unstretchWait bounds how long the heartbeat scenario waits for the
// fleet's timings to return to the base ones: a minute after the last
// mass boot (liveness's bootWindow), plus the decider's period.
const unstretchWait = 3 * time.Minute

// waitUnstretched returns the fleet's heartbeat settings once their load
// factor is 1. After a mass boot (the storm scenarios) the service
// stretches the fleet's timings for a while, and beats measured then
// would not be at the interval the run set.
func (r *runner) waitUnstretched(ctx context.Context) (*berthv1.HeartbeatSettings, error) {
	deadline := time.Now().Add(unstretchWait)
	for logged := false; ; {
		s, err := r.adm.heartbeatSettings(ctx)
		if err != nil || s.GetLoadFactor() <= 1 {
			return s, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the fleet's heartbeat timings are still stretched (load factor %v) after %v; beats measured now would not be at the set interval", s.GetLoadFactor(), unstretchWait)
		}
		if !logged {
			r.log.Info("the fleet's heartbeat timings are stretched (a mass boot or overload); waiting for them to return", "load_factor", s.GetLoadFactor())
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// healthWatch counts the suspect and unreachable events that counts
// keeps: the run's nodes', once connected.
type healthWatch struct {
	suspect, unreachable atomic.Int64
	cancel               context.CancelFunc
	done                 chan struct{}
}

func (r *runner) watchHealth(ctx context.Context, counts func(nodeID string, at time.Time) bool) (*healthWatch, error) {
	c, err := r.adm.health()
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	s, err := c.WatchHealth(wctx, &berthv1.WatchHealthRequest{FromNow: true, Types: []berthv1.HealthEventType{
		berthv1.HealthEventType_HEALTH_EVENT_TYPE_SUSPECT, berthv1.HealthEventType_HEALTH_EVENT_TYPE_UNREACHABLE,
	}})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch health events: %w", err)
	}
	w := &healthWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			e := m.GetEvent()
			if !counts(e.GetNodeId(), e.GetTime().AsTime()) {
				continue
			}
			switch e.GetType() {
			case berthv1.HealthEventType_HEALTH_EVENT_TYPE_SUSPECT:
				w.suspect.Add(1)
			case berthv1.HealthEventType_HEALTH_EVENT_TYPE_UNREACHABLE:
				w.unreachable.Add(1)
			}
		}
	}()
	return w, nil
}

func (w *healthWatch) stop() (suspect, unreachable int) {
	w.cancel()
	<-w.done
	return int(w.suspect.Load()), int(w.unreachable.Load())
}

// heartbeatProcs names the server processes that are heartbeat services
// (named "heartbeat", "heartbeat2"... in --server-pids); none named so
// means all of them.
func (r *runner) heartbeatProcs() []string {
	var out []string
	for _, p := range r.cfg.ServerProcs {
		if strings.HasPrefix(p.Name, "heartbeat") {
			out = append(out, p.Name)
		}
	}
	return out
}

// countConnected counts the nodes whose stream was connected.
func countConnected(beaters map[*node]*beater) int {
	n := 0
	for _, bt := range beaters {
		if bt.connected() && !bt.failed.Load() {
			n++
		}
	}
	return n
}
