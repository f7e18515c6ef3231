package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The floors: what gRPC itself costs here, measured against a bare server
// process built by berth's own rpc.NewServer (the options, interceptors,
// limits and telemetry berthd serves with) that does no work of its own
// (floorServer). No berth service can do better on this machine, so a
// goal beyond its floor is out of reach whatever berth does.
const (
	// ScenarioGRPCFloor: each operation is a fresh mutual-TLS connection
	// and one empty unary call (grpc.health.v1.Health/Check): the most
	// any call on a booting node's fresh connection (Resume) can reach.
	ScenarioGRPCFloor = "grpc-floor"
	// ScenarioStreamFloor: connections each hold one bidi stream and send
	// a heartbeat's message every interval, which the server echoes: the
	// least a connected node's heartbeat can cost.
	ScenarioStreamFloor = "stream-floor"
)

// floorWarmup is left out of the grpc floor's count: with hundreds of
// calls in flight the first second is the ramp.
const floorWarmup = time.Second

// DefaultFloorInterval is the stream floor's interval unless told: the
// heartbeat interval the goals are stated at.
const DefaultFloorInterval = 5 * time.Second

// FloorConfig configures GRPCFloor and StreamFloor.
type FloorConfig struct {
	// Duration of the measuring window. Default DefaultCeilingDuration
	// (grpc floor) or DefaultHeartbeatDuration (stream floor).
	Duration time.Duration
	// Concurrency is the calls in flight (grpc floor) or the connections
	// opening at once (stream floor). Default DefaultConcurrency.
	Concurrency int
	// Conns is how many connections the stream floor holds (required).
	Conns int
	// Interval between one connection's messages (stream floor). Default
	// DefaultFloorInterval.
	Interval time.Duration
	// ProfileDir, if set, receives the server's CPU profile over the
	// window (SCENARIO-cpu.pprof), whose split the result reports
	// (ServerCPUShares).
	ProfileDir string
	// TempDir holds the throwaway PKI. Default the system's.
	TempDir string
	// Log receives progress. Default discards it.
	Log *slog.Logger
}

func (c *FloorConfig) setDefaults(duration time.Duration) {
	if c.Duration <= 0 {
		c.Duration = duration
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Interval <= 0 {
		c.Interval = DefaultFloorInterval
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// FloorResult is what a floor measured; printed with -o json.
type FloorResult struct {
	Scenario    string `json:"scenario"`
	Concurrency int    `json:"concurrency"`
	// Connections and IntervalS: the stream floor's connections and the
	// interval between each one's messages; ConnectS is how long they
	// took to connect and Held how many were open at the window's end.
	Connections int     `json:"connections,omitempty"`
	Held        int64   `json:"connections_held,omitempty"`
	IntervalS   float64 `json:"interval_s,omitempty"`
	ConnectS    float64 `json:"connect_s,omitempty"`
	// Ops counts what was done in the window: calls answered (grpc
	// floor) or messages echoed (stream floor); OpsPerS per second.
	Ops      int64   `json:"ops"`
	OpsPerS  float64 `json:"ops_per_s"`
	ElapsedS float64 `json:"elapsed_s"`
	// Latency of one operation: connection and call, or message to echo.
	P50Ms        float64           `json:"p50_ms"`
	P99Ms        float64           `json:"p99_ms"`
	MaxMs        float64           `json:"max_ms"`
	Errors       map[string]int    `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	// ServerCPUMs is the CPU time (user and system) of the server process
	// over the window, ServerCPUMsPerOp that per operation.
	ServerCPUMs      float64  `json:"server_cpu_ms"`
	ServerCPUMsPerOp *float64 `json:"server_cpu_ms_per_op,omitempty"`
	// CPUMsPerOp (grpc floor) adds the clients' CPU (this process) to the
	// server's, as the ceiling counts both ends, and CPUBoundPerS is the
	// operations per second that would make if every core did nothing
	// else: against the ceiling's own, a share that the machine's other
	// load does not move.
	CPUMsPerOp   *float64 `json:"cpu_ms_per_op_both_ends,omitempty"`
	CPUBoundPerS *float64 `json:"cpu_bound_ops_per_s,omitempty"`
	// ServerKBPerConn, ServerHeapKBPerConn and ServerStackKBPerConn
	// (stream floor): how much the server's resident memory, its live Go
	// heap (after a GC) and its goroutine stacks grew from before the
	// connections opened to the window's end, per connection held.
	ServerKBPerConn      *float64 `json:"server_kb_per_conn,omitempty"`
	ServerHeapKBPerConn  *float64 `json:"server_heap_kb_per_conn,omitempty"`
	ServerStackKBPerConn *float64 `json:"server_stack_kb_per_conn,omitempty"`
	// ServerCPUShares (with a profile) splits the server's CPU in the
	// window by what it was spent on: see cpuClass.
	ServerCPUShares map[string]float64 `json:"server_cpu_shares,omitempty"`
	Notes           []string           `json:"notes,omitempty"`
}

// startFloor makes a throwaway PKI with berth's own init, runs prepare on
// it if not nil (what the server is to load) and starts the floor's
// server process with service svc's certificate. The client's TLS
// configuration presents the admin certificate and verifies the server
// as svc; cleanup stops the server and removes the PKI.
func startFloor(ctx context.Context, c FloorConfig, mode, svc string, prepare func(*pki.Layout) error) (srv *child, cfg *tls.Config, cleanup func(), err error) {
	dir, err := os.MkdirTemp(c.TempDir, "berth-loadgen-floor-")
	if err != nil {
		return nil, nil, nil, err
	}
	fail := func(err error) (*child, *tls.Config, func(), error) {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	layout, err := pki.Init(ctx, pki.InitConfig{Dir: dir})
	if err != nil {
		return fail(fmt.Errorf("make the floor's PKI: %w", err))
	}
	client, err := layout.AdminCertificate()
	if err != nil {
		return fail(err)
	}
	if prepare != nil {
		if err := prepare(layout); err != nil {
			return fail(err)
		}
	}
	if srv, err = startChild(floorServerEnv, mode+":"+layout.Dir); err != nil {
		return fail(err)
	}
	cfg = mtls.ExpectServer(mtls.ClientConfig(client, layout.RootPool()), layout.TrustDomain, svc)
	cfg.ServerName = "127.0.0.1"
	return srv, cfg, func() { srv.stop(); os.RemoveAll(dir) }, nil
}

// GRPCFloor measures operations of a fresh mutual-TLS connection (dialled
// as berth's clients dial, no session resumed) and one empty unary call
// against a bare server with the registration service's certificate,
// c.Concurrency of them in flight as the storm's boots are. It counts the
// operations that ended in the window, after floorWarmup, and the
// server's CPU over the same window.
func GRPCFloor(ctx context.Context, c FloorConfig) (*FloorResult, error) {
	c.setDefaults(DefaultCeilingDuration)
	srv, cfg, cleanup, err := startFloor(ctx, c, ScenarioGRPCFloor, mtls.ServiceRegistration, nil)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	c.Log.Info("grpc-floor: a fresh mTLS connection and one empty call each, against a bare server process",
		"concurrency", c.Concurrency, "duration", c.Duration)
	return measureOps(ctx, c, srv, ScenarioGRPCFloor, func(ctx context.Context, _ int) error {
		return floorCall(ctx, srv.addr, cfg)
	})
}

// measureOps runs op in c.Concurrency workers (each passing its number),
// one operation after another, and counts the operations that ended in
// the window, after floorWarmup, the server's CPU over the same window
// and this process's with it.
func measureOps(ctx context.Context, c FloorConfig, srv *child, scenario string, op func(ctx context.Context, worker int) error) (*FloorResult, error) {
	res := &FloorResult{Scenario: scenario, Concurrency: c.Concurrency}
	if lim, err := raiseFDLimit(uint64(2*c.Concurrency) + 512); err != nil || lim < uint64(2*c.Concurrency) {
		res.Notes = append(res.Notes, fmt.Sprintf("file descriptor limit %d may be too low for %d calls in flight", lim, c.Concurrency))
	}
	var (
		count atomic.Int64
		mu    sync.Mutex
		lat   []time.Duration
		errs  = newTally()
		wg    sync.WaitGroup
		from  = time.Now().Add(floorWarmup)
		until = from.Add(c.Duration)
	)
	inWindow := func(t time.Time) bool { return !t.Before(from) && !t.After(until) }
	var cpu, both [2]time.Duration
	var prof *windowProfile
	wg.Go(func() {
		time.Sleep(time.Until(from))
		prof = startWindowProfile(srv, c.ProfileDir, scenario)
		cpu[0] = cpuTime(srv.pid)
		both[0] = cpu[0] + cpuTime(0)
		time.Sleep(time.Until(until))
		cpu[1] = cpuTime(srv.pid)
		both[1] = cpu[1] + cpuTime(0)
		prof.stop()
	})
	for w := range c.Concurrency {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil && time.Now().Before(until) {
				t := time.Now()
				err := op(ctx, w)
				end := time.Now()
				if !inWindow(end) {
					continue
				}
				if err != nil {
					errs.add(err)
					continue
				}
				count.Add(1)
				mine = append(mine, end.Sub(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	l := summarize(lat)
	res.Ops, res.ElapsedS = count.Load(), round(c.Duration.Seconds(), 3)
	res.OpsPerS = round(float64(res.Ops)/c.Duration.Seconds(), 1)
	res.P50Ms, res.P99Ms, res.MaxMs = l.P50, l.P99, l.Max
	res.Errors, res.ErrorSamples = errs.snapshot()
	res.ServerCPUMs, res.ServerCPUMsPerOp = cpuPerOp(cpu, res.Ops)
	if _, per := cpuPerOp(both, res.Ops); per != nil && *per > 0 {
		bound := round(float64(runtime.NumCPU())*1000 / *per, 1)
		res.CPUMsPerOp, res.CPUBoundPerS = per, &bound
	}
	prof.fill(res)
	return res, nil
}

// cpuPerOp turns the server's CPU time at the window's start and end into
// milliseconds over it and per operation; nil per operation when either
// is unknown.
func cpuPerOp(cpu [2]time.Duration, ops int64) (float64, *float64) {
	if cpu[0] <= 0 || cpu[1] < cpu[0] {
		return 0, nil
	}
	total := float64(cpu[1]-cpu[0]) / float64(time.Millisecond)
	if ops <= 0 {
		return round(total, 1), nil
	}
	per := round(total/float64(ops), 4)
	return round(total, 1), &per
}

// floorCall opens a connection, makes one empty call and closes it.
func floorCall(ctx context.Context, addr string, cfg *tls.Config) error {
	cc, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: cfg})
	if err != nil {
		return err
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
	return err
}

// StreamFloor holds c.Conns connections (dialled as the heartbeat
// scenario dials, c.Concurrency opening at once), each with one stream to
// a bare echo server with the heartbeat service's certificate, and once
// all are connected sends on each a heartbeat's message every c.Interval
// for c.Duration. It reports the server's CPU per echoed message over
// that window and how much its memory grew per connection held.
func StreamFloor(ctx context.Context, c FloorConfig) (*FloorResult, error) {
	if c.Conns <= 0 {
		return nil, errors.New("--nodes must be at least 1")
	}
	c.setDefaults(DefaultHeartbeatDuration)
	res := &FloorResult{Scenario: ScenarioStreamFloor, Concurrency: c.Concurrency, Connections: c.Conns, IntervalS: c.Interval.Seconds()}
	if lim, err := raiseFDLimit(uint64(c.Conns+c.Concurrency) + 512); err != nil || lim < uint64(c.Conns+c.Concurrency) {
		res.Notes = append(res.Notes, fmt.Sprintf("file descriptor limit %d may be too low for %d connections", lim, c.Conns))
	}
	srv, cfg, cleanup, err := startFloor(ctx, c, ScenarioStreamFloor, mtls.ServiceHeartbeat, nil)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	h := &hbRun{start: time.Now(), errs: newTally()}
	// One connection first, closed again: what the server sets up once
	// (its first handshake, stream and GC cycle) is no connection's.
	warm, _, err := openFloorStream(ctx, h, srv.addr, cfg, "floor-warmup")
	if err != nil {
		return nil, fmt.Errorf("stream floor: the first connection failed: %w", err)
	}
	warm.close()
	before, err := srv.memory()
	if err != nil {
		return nil, err
	}

	c.Log.Info("stream-floor: connecting", "connections", c.Conns, "concurrency", c.Concurrency, "interval", c.Interval)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		connecting, running sync.WaitGroup
		alive               atomic.Int64
		sem                 = make(chan struct{}, c.Concurrency)
	)
	connecting.Add(c.Conns)
	for i := range c.Conns {
		running.Go(func() {
			sem <- struct{}{}
			fs, sent, err := openFloorStream(sctx, h, srv.addr, cfg, fmt.Sprintf("floor-%06d", i))
			<-sem
			if err == nil {
				alive.Add(1)
			}
			connecting.Done()
			if err == nil {
				defer fs.close()
				if err = fs.beatEvery(sctx, h, c.Interval, sent); err != nil {
					alive.Add(-1)
				}
			}
			if err != nil && h.beforeEnd(time.Now()) {
				h.errs.add(err)
			}
		})
	}
	waitGroup(ctx, &connecting)
	res.ConnectS = round(time.Since(h.start).Seconds(), 3)
	c.Log.Info("stream-floor: beating", "connected", alive.Load(), "duration", c.Duration)
	ws := time.Now()
	h.windowStart.Store(ws.UnixNano())
	prof := startWindowProfile(srv, c.ProfileDir, ScenarioStreamFloor)
	cpu := [2]time.Duration{cpuTime(srv.pid)}
	select {
	case <-time.After(c.Duration):
	case <-ctx.Done():
	}
	we := time.Now()
	h.windowEnd.Store(we.UnixNano())
	cpu[1] = cpuTime(srv.pid)
	prof.stop()
	// Read while every connection is still open: the memory they hold.
	after, memErr := srv.memory()
	held := alive.Load()
	stop()
	running.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	window := we.Sub(ws)
	h.mu.Lock()
	l := summarize(h.lat)
	h.mu.Unlock()
	res.Held = held
	res.Ops, res.ElapsedS = h.acked.Load(), round(window.Seconds(), 3)
	res.OpsPerS = round(float64(res.Ops)/window.Seconds(), 1)
	res.P50Ms, res.P99Ms, res.MaxMs = l.P50, l.P99, l.Max
	res.Errors, res.ErrorSamples = h.errs.snapshot()
	res.ServerCPUMs, res.ServerCPUMsPerOp = cpuPerOp(cpu, res.Ops)
	prof.fill(res)
	if memErr != nil {
		res.Notes = append(res.Notes, "memory not measured: "+memErr.Error())
	} else {
		res.ServerKBPerConn, res.ServerHeapKBPerConn, res.ServerStackKBPerConn = before.perConn(after, held)
	}
	return res, nil
}

// floorMemory is the floor server's resident memory, live Go heap and
// goroutine stacks.
type floorMemory struct {
	rssKB, heapBytes, stackBytes int64
}

// perConn is how much memory grew from m to after, in KiB per connection.
func (m floorMemory) perConn(after floorMemory, conns int64) (rssKB, heapKB, stackKB *float64) {
	if conns <= 0 {
		return nil, nil, nil
	}
	per := func(d float64) *float64 { v := round(d/float64(conns), 1); return &v }
	return per(float64(after.rssKB - m.rssKB)), per(float64(after.heapBytes-m.heapBytes) / 1024), per(float64(after.stackBytes-m.stackBytes) / 1024)
}

// memory reads the child's resident memory, then has it collect garbage
// and report its live heap and stacks.
func (c *child) memory() (floorMemory, error) {
	rss, err := procStatusKB(c.pid, "VmRSS")
	if err != nil {
		return floorMemory{}, err
	}
	m := floorMemory{rssKB: rss}
	a, err := c.ask("mem")
	if err != nil {
		return floorMemory{}, err
	}
	if _, err := fmt.Sscanf(a, "heap %d stack %d", &m.heapBytes, &m.stackBytes); err != nil {
		return floorMemory{}, fmt.Errorf("the floor's server did not report its memory (said %q): %v", a, err)
	}
	return m, nil
}

// windowProfile is the floor server's CPU profile over the window, when
// there is a directory for it.
type windowProfile struct {
	srv   *child
	path  string
	notes []string
}

// startWindowProfile starts the server's CPU profile into
// dir/SCENARIO-cpu.pprof; with dir empty it does nothing.
func startWindowProfile(srv *child, dir, scenario string) *windowProfile {
	p := &windowProfile{srv: srv}
	if dir == "" {
		return p
	}
	path := filepath.Join(dir, scenario+"-cpu.pprof")
	if a, err := srv.ask("profile " + path); a != "ok" {
		p.notes = append(p.notes, fmt.Sprintf("no CPU profile: %s %v", a, err))
		return p
	}
	p.path = path
	return p
}

// stop ends the profile.
func (p *windowProfile) stop() {
	if p.path == "" {
		return
	}
	if a, err := p.srv.ask("stop-profile"); a != "ok" {
		p.notes = append(p.notes, fmt.Sprintf("no CPU profile: %s %v", a, err))
		p.path = ""
	}
}

// fill adds the profile's split, or why there is none, to res.
func (p *windowProfile) fill(res *FloorResult) {
	res.Notes = append(res.Notes, p.notes...)
	if p.path == "" {
		return
	}
	shares, err := profileShares(p.path)
	if err != nil {
		res.Notes = append(res.Notes, "CPU profile not read: "+err.Error())
	}
	res.ServerCPUShares = shares
}

// floorStream is one connection of the stream floor and its stream.
type floorStream struct {
	close func()
	s     berthv1.HeartbeatService_HeartbeatClient
	id    string
	seq   uint64
}

// openFloorStream connects, opens the stream and has its first message
// echoed, within ackTimeout; it returns when that message was sent.
func openFloorStream(ctx context.Context, h *hbRun, addr string, cfg *tls.Config, id string) (*floorStream, time.Time, error) {
	cc, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: cfg})
	if err != nil {
		return nil, time.Time{}, err
	}
	sctx, cancel := context.WithCancelCause(ctx)
	f := &floorStream{id: id, close: func() { cancel(nil); cc.Close() }}
	opened := time.AfterFunc(ackTimeout, func() { cancel(fmt.Errorf("stream floor: no echo within %s", ackTimeout)) })
	defer opened.Stop()
	var sent time.Time
	f.s, err = berthv1.NewHeartbeatServiceClient(cc).Heartbeat(sctx)
	if err == nil {
		sent, err = f.beat(h)
	}
	if err != nil {
		f.close()
		return nil, sent, streamCause(sctx, err)
	}
	return f, sent, nil
}

// beatEvery sends a message every interval from the last one, shorter by
// up to 5 % as the heartbeat scenario's nodes do, until ctx ends.
func (f *floorStream) beatEvery(ctx context.Context, h *hbRun, iv time.Duration, sent time.Time) error {
	for {
		t := time.NewTimer(time.Until(sent.Add(iv - time.Duration(rand.Int64N(int64(iv/20)+1)))))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		var err error
		if sent, err = f.beat(h); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// beat sends one heartbeat's message and waits for its echo, counting
// both when sent in the window.
func (f *floorStream) beat(h *hbRun) (time.Time, error) {
	f.seq++
	sent := time.Now()
	req := &berthv1.HeartbeatRequest{
		Sequence: f.seq, BootId: f.id, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP,
		Uptime: durationpb.New(sent.Sub(h.start)),
	}
	if err := f.s.Send(req); err != nil {
		// Send only says the stream is gone; Recv says why.
		if _, rerr := f.s.Recv(); rerr != nil {
			return sent, rerr
		}
		return sent, err
	}
	in := h.inWindow(sent)
	if in {
		h.sent.Add(1)
	}
	m, err := f.s.Recv()
	if err != nil {
		return sent, err
	}
	if m.GetAckSequence() != f.seq {
		return sent, fmt.Errorf("stream floor: message %d echoed as %d", f.seq, m.GetAckSequence())
	}
	if in {
		rtt := time.Since(sent)
		h.acked.Add(1)
		h.mu.Lock()
		h.lat = append(h.lat, rtt)
		h.mu.Unlock()
	}
	return sent, nil
}
