package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// fakeHeartbeat is a hand-written HeartbeatServiceServer. Like the real
// one it serves only node certificates, sends the interval first,
// acknowledges every beat with the current interval, and ends a stream
// whose beats break the per-stream rules (sequence strictly increasing,
// one boot ID, a status).
type fakeHeartbeat struct {
	berthv1.UnimplementedHeartbeatServiceServer
	// connect, if set, may end stream s (from 1) before anything is sent.
	connect func(s int) error
	// beat, if set, runs for beat n (counted over all streams, from 1) of
	// stream s; an error ends the stream instead of acknowledging it.
	beat func(s, n int) error
	push chan time.Duration // sent on the open stream at once

	mu       sync.Mutex
	interval time.Duration
	streams  [][]*berthv1.HeartbeatRequest
	peers    []mtls.Identity
	closed   []bool // the agent half-closed the stream
	beats    int
}

func newFakeHeartbeat(interval time.Duration) *fakeHeartbeat {
	return &fakeHeartbeat{interval: interval, push: make(chan time.Duration, 4)}
}

func hbControl(d time.Duration, ack uint64) *berthv1.HeartbeatResponse {
	return &berthv1.HeartbeatResponse{Interval: durationpb.New(d), AckSequence: ack}
}

// setInterval changes the interval and tells the open stream at once, as
// the real service does when the fleet's interval changes.
func (f *fakeHeartbeat) setInterval(d time.Duration) {
	f.mu.Lock()
	f.interval = d
	f.mu.Unlock()
	f.push <- d
}

func (f *fakeHeartbeat) Heartbeat(s berthv1.HeartbeatService_HeartbeatServer) error {
	id, verr, ok := mtls.PeerIdentity(s.Context())
	f.mu.Lock()
	f.peers = append(f.peers, id)
	f.streams = append(f.streams, nil)
	f.closed = append(f.closed, false)
	sn, iv := len(f.streams), f.interval
	f.mu.Unlock()
	if !ok || verr != nil || id.Kind != mtls.KindNode {
		return status.Error(codes.Unauthenticated, "caller is not a node")
	}
	if f.connect != nil {
		if err := f.connect(sn); err != nil {
			return err
		}
	}
	if err := s.Send(hbControl(iv, 0)); err != nil {
		return err
	}
	reqs, errs := make(chan *berthv1.HeartbeatRequest), make(chan error, 1)
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				errs <- err
				return
			}
			select {
			case reqs <- r:
			case <-s.Context().Done():
				return
			}
		}
	}()
	var (
		last uint64
		boot string
	)
	for {
		select {
		case d := <-f.push:
			if err := s.Send(hbControl(d, 0)); err != nil {
				return err
			}
		case err := <-errs:
			if errors.Is(err, io.EOF) {
				f.mu.Lock()
				f.closed[sn-1] = true
				f.mu.Unlock()
				return nil
			}
			return err
		case r := <-reqs:
			f.mu.Lock()
			f.streams[sn-1] = append(f.streams[sn-1], r)
			f.beats++
			n := f.beats
			f.mu.Unlock()
			if r.GetSequence() <= last || r.GetBootId() == "" || (boot != "" && r.GetBootId() != boot) ||
				r.GetStatus() == berthv1.ReportedStatus_REPORTED_STATUS_UNSPECIFIED {
				return status.Error(codes.InvalidArgument, "bad beat")
			}
			last, boot = r.GetSequence(), r.GetBootId()
			if f.beat != nil {
				if err := f.beat(sn, n); err != nil {
					return err
				}
			}
			f.mu.Lock()
			iv := f.interval
			f.mu.Unlock()
			if err := s.Send(hbControl(iv, r.GetSequence())); err != nil {
				return err
			}
		}
	}
}

// Sequences returns the sequence numbers of each stream's beats.
func (f *fakeHeartbeat) Sequences() [][]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]uint64
	for _, s := range f.streams {
		seqs := []uint64{}
		for _, r := range s {
			seqs = append(seqs, r.GetSequence())
		}
		out = append(out, seqs)
	}
	return out
}

func (f *fakeHeartbeat) Beats() []*berthv1.HeartbeatRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*berthv1.HeartbeatRequest
	for _, s := range f.streams {
		out = append(out, s...)
	}
	return out
}

func (f *fakeHeartbeat) Peers() []mtls.Identity {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]mtls.Identity(nil), f.peers...)
}

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// hbHarness runs the built-in heartbeater against a fake heartbeat
// service over real TLS, with the node certificate.
type hbHarness struct {
	pki   *testPKI
	fake  *fakeHeartbeat
	addr  string
	clock *fakeClock
	cfg   Config
	logs  *syncBuffer

	mu  sync.Mutex
	srv *grpc.Server
	// deferring makes the service defer new streams, as the real one
	// does while the fleet boots (mtls.DeferStreams).
	deferring atomic.Bool
}

func newHBHarness(t *testing.T, interval time.Duration) *hbHarness {
	t.Helper()
	h := &hbHarness{pki: newPKI(t), fake: newFakeHeartbeat(interval), clock: newFakeClock(), logs: &syncBuffer{}}
	lis := listen(t)
	h.addr = lis.Addr().String()
	h.serve(t, lis)
	h.cfg = testConfig(t, "127.0.0.1:1", h.pki.caHash(), h.clock, &bytes.Buffer{})
	h.cfg.Once = false
	h.cfg.BootID = "boot-1"
	h.cfg.UptimeFile = filepath.Join(t.TempDir(), "no-uptime") // uptime by the fake clock
	h.cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return h
}

func (h *hbHarness) serve(t *testing.T, lis net.Listener) {
	t.Helper()
	cfg := mtls.DeferStreams(mtls.ServerConfig(h.pki.servers[mtls.ServiceHeartbeat]), h.deferring.Load)
	serveGRPCWith(t, h.pki.root, cfg, lis, func(s *grpc.Server) {
		berthv1.RegisterHeartbeatServiceServer(s, h.fake)
		h.mu.Lock()
		h.srv = s
		h.mu.Unlock()
	})
}

// stop stops the service: its listener and every connection close.
func (h *hbHarness) stop() {
	h.mu.Lock()
	s := h.srv
	h.mu.Unlock()
	s.Stop()
}

// restart brings a stopped service up again on its address.
func (h *hbHarness) restart(t *testing.T) {
	lis, err := net.Listen("tcp", h.addr)
	if err != nil {
		t.Errorf("restart: %v", err)
		return
	}
	h.serve(t, lis)
}

// serveHeartbeat runs fake over real TLS on lis.
func serveHeartbeat(t *testing.T, p *testPKI, fake *fakeHeartbeat, lis net.Listener) {
	t.Helper()
	serveGRPC(t, p.root, p.servers[mtls.ServiceHeartbeat], lis, func(s *grpc.Server) {
		berthv1.RegisterHeartbeatServiceServer(s, fake)
	})
}

// nodeCreds are approved credentials naming addr as the heartbeat
// endpoint.
func nodeCreds(t *testing.T, p *testPKI, cfg Config, addr string, life time.Duration) *Credentials {
	t.Helper()
	nc := approved(t, p, pubOf(cfg.Keys), life)
	nc.Endpoints = &berthv1.Endpoints{Heartbeat: addr}
	c, err := parseCredentials(nc, cfg.Keys.Identity().Public(), []*x509.Certificate{p.root})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs the heartbeater until it returns; ctx should be one the test
// cancels, with a deadline in case it does not.
func (h *hbHarness) run(t *testing.T, ctx context.Context) error {
	t.Helper()
	a, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	creds := nodeCreds(t, h.pki, h.cfg, h.addr, time.Hour)
	err = a.newHeartbeater(a.log).Run(ctx, func() *Credentials { return creds })
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("heartbeater did not stop in time")
	}
	return err
}

// jsonObject is the one JSON object in out, as a map, to see field names.
func jsonObject(t *testing.T, out *bytes.Buffer) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(out.Bytes()))
	if err := dec.Decode(&m); err != nil || dec.More() {
		t.Fatalf("stdout %q is not one JSON object (%v)", out.String(), err)
	}
	return m
}

func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// jittered is what the test configuration's Rand (always the most) makes
// of interval iv: 5 % less.
func jittered(iv time.Duration) time.Duration { return iv - iv/20 }

func checkSleeps(t *testing.T, c *fakeClock, want ...time.Duration) {
	t.Helper()
	if got := c.Sleeps(); !slices.Equal(got, want) {
		t.Errorf("sleeps = %v, want %v", got, want)
	}
}

func checkSequences(t *testing.T, f *fakeHeartbeat, want ...[]uint64) {
	t.Helper()
	got := f.Sequences()
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("sequences per stream = %v, want %v", got, want)
	}
}

func TestHeartbeatsFollowInterval(t *testing.T) {
	h := newHBHarness(t, 10*time.Second)
	ctx, cancel := testContext(t)
	defer cancel()
	var waits atomic.Int32
	h.clock.block = func(wctx context.Context, d time.Duration) error {
		if waits.Add(1) != 2 {
			return nil
		}
		// While the node waits after beat 2, the service speeds the
		// fleet up: the wait must end and start over with the new
		// interval, from the same beat.
		h.fake.setInterval(4 * time.Second)
		select {
		case <-wctx.Done():
			return wctx.Err()
		case <-ctx.Done():
			t.Error("the wait did not follow the new interval")
			return ctx.Err()
		}
	}
	h.fake.beat = func(_, n int) error {
		if n == 4 {
			cancel()
			return status.Error(codes.Unavailable, "test over")
		}
		return nil
	}
	if err := h.run(t, ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkSequences(t, h.fake, []uint64{1, 2, 3, 4})
	checkSleeps(t, h.clock, jittered(10*time.Second), jittered(4*time.Second), jittered(4*time.Second))
	var uptimes []time.Duration
	for _, b := range h.fake.Beats() {
		if b.GetBootId() != "boot-1" || b.GetStatus() != berthv1.ReportedStatus_REPORTED_STATUS_UP || len(b.GetEvents()) != 0 {
			t.Errorf("beat %d = %v, want boot-1, up", b.GetSequence(), b)
		}
		uptimes = append(uptimes, b.GetUptime().AsDuration())
	}
	// Without an uptime file the uptime is the agent's, by its clock.
	if want := []time.Duration{0, 9500 * time.Millisecond, 13300 * time.Millisecond, 17100 * time.Millisecond}; !slices.Equal(uptimes, want) {
		t.Errorf("uptimes = %v, want %v", uptimes, want)
	}
	for i, p := range h.fake.Peers() {
		if p.Kind != mtls.KindNode || p.Name != nodeID {
			t.Errorf("stream %d came from %v, want node %s", i, p, nodeID)
		}
	}
}

func TestHeartbeatReconnects(t *testing.T) {
	const backoff0, backoff1 = 250 * time.Millisecond, 500 * time.Millisecond
	tests := []struct {
		name string
		// lost ends stream 1 at beat 2 with the service going away
		// altogether; it comes back during the second backoff.
		lost       bool
		wantSleeps []time.Duration
	}{
		{name: "service ends the stream", wantSleeps: []time.Duration{jittered(10 * time.Second), backoff0, jittered(10 * time.Second)}},
		{name: "connection lost", lost: true, wantSleeps: []time.Duration{jittered(10 * time.Second), backoff0, backoff1, jittered(10 * time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHBHarness(t, 10*time.Second)
			ctx, cancel := testContext(t)
			defer cancel()
			h.fake.beat = func(_, n int) error {
				switch n {
				case 2:
					if tt.lost {
						h.stop()
					}
					return status.Error(codes.Unavailable, "shutting down")
				case 4:
					cancel()
					return status.Error(codes.Unavailable, "test over")
				}
				return nil
			}
			h.clock.block = func(_ context.Context, d time.Duration) error {
				if tt.lost && d == backoff1 {
					h.restart(t)
				}
				return nil
			}
			if err := h.run(t, ctx); err != nil {
				t.Fatalf("Run: %v", err)
			}
			// A new stream goes on with the sequence: the service checks
			// it per stream, and the node's beats stay one series.
			checkSequences(t, h.fake, []uint64{1, 2}, []uint64{3, 4})
			checkSleeps(t, h.clock, tt.wantSleeps...)
			if tt.lost && !strings.Contains(h.logs.String(), "connect to "+h.addr) {
				t.Errorf("logs do not show the refused reconnection:\n%s", h.logs)
			}
		})
	}
}

// endAtBeat is a fake's beat hook that ends the test at the stream's
// beat last: it cancels the heartbeater's context and ends the stream.
func endAtBeat(last int, cancel context.CancelFunc) func(_, n int) error {
	return func(_, n int) error {
		if n == last {
			cancel()
			return status.Error(codes.Unavailable, "test over")
		}
		return nil
	}
}

// TestHeartbeatDeferred: a heartbeat service deferring new streams (the
// fleet is booting) refuses the node's connection in its handshake; the
// node says so and retries after its backoff, and its stream then opens.
func TestHeartbeatDeferred(t *testing.T) {
	h := newHBHarness(t, 10*time.Second)
	h.deferring.Store(true)
	ctx, cancel := testContext(t)
	defer cancel()
	h.fake.beat = endAtBeat(2, cancel)
	h.clock.block = func(_ context.Context, d time.Duration) error {
		h.deferring.Store(false) // the boots are over by the first wait
		return nil
	}
	if err := h.run(t, ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The refused connection never reached the service.
	checkSequences(t, h.fake, []uint64{1, 2})
	checkSleeps(t, h.clock, 250*time.Millisecond, jittered(10*time.Second))
	if logs := h.logs.String(); !strings.Contains(logs, "level=INFO msg=\"heartbeat stream deferred; reconnecting\"") ||
		!strings.Contains(logs, "deferred the stream, as it does while the fleet boots") {
		t.Errorf("logs do not say the stream was deferred:\n%s", h.logs)
	}
}

func TestHeartbeatRevoked(t *testing.T) {
	revoked := status.Error(codes.PermissionDenied, "node n-0001 is revoked")
	tests := []struct {
		name       string
		atConnect  bool
		wantSleeps []time.Duration
		wantSeqs   []uint64
	}{
		{name: "at connect", atConnect: true, wantSeqs: []uint64{1}},
		{name: "mid-stream", wantSleeps: []time.Duration{jittered(10 * time.Second)}, wantSeqs: []uint64{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHBHarness(t, 10*time.Second)
			if tt.atConnect {
				h.fake.connect = func(int) error { return revoked }
			} else {
				h.fake.beat = func(_, n int) error {
					if n == 2 {
						return revoked
					}
					return nil
				}
			}
			ctx, cancel := testContext(t)
			defer cancel()
			err := h.run(t, ctx)
			if !errors.Is(err, ErrDenied) || ExitCode(err) != ExitDenied {
				t.Fatalf("err = %v, want ErrDenied", err)
			}
			if want := "heartbeat denied: node n-0001 is revoked"; err.Error() != want {
				t.Errorf("err = %q, want %q", err, want)
			}
			if n := len(h.fake.Peers()); n != 1 {
				t.Errorf("%d streams, want 1: a revoked node must not reconnect", n)
			}
			if !tt.atConnect {
				checkSequences(t, h.fake, tt.wantSeqs)
			}
			checkSleeps(t, h.clock, tt.wantSleeps...)
		})
	}
}

// TestHeartbeatSuperseded: another stream of the node replaced ours. The
// agent steps back for a long pause instead of fighting, then resumes.
func TestHeartbeatSuperseded(t *testing.T) {
	h := newHBHarness(t, 10*time.Second)
	h.fake.beat = func(s, n int) error {
		switch {
		case s == 1 && n == 2:
			return status.Error(codes.Aborted, "superseded by a newer stream of this node")
		case s == 2:
			return status.Error(codes.PermissionDenied, "node n-0001 is revoked") // ends the test
		}
		return nil
	}
	ctx, cancel := testContext(t)
	defer cancel()
	if err := h.run(t, ctx); !errors.Is(err, ErrDenied) {
		t.Fatalf("Run: %v, want the denial that ends the second stream", err)
	}
	checkSequences(t, h.fake, []uint64{1, 2}, []uint64{3})
	checkSleeps(t, h.clock, jittered(10*time.Second), supersededRetry(10*time.Second))
	if !strings.Contains(h.logs.String(), "replaced this one") {
		t.Errorf("logs do not say why heartbeats paused:\n%s", h.logs)
	}
}

// newHeartbeatAgent is an agent whose registration service names a fake
// heartbeat service (interval iv) over real TLS, at the returned address.
func newHeartbeatAgent(t *testing.T, iv time.Duration) (*harness, *fakeRegistration, *fakeHeartbeat, string) {
	t.Helper()
	reg := &fakeRegistration{}
	h := newHarness(t, reg)
	fake := newFakeHeartbeat(iv)
	lis := listen(t)
	addr := lis.Addr().String()
	serveHeartbeat(t, h.pki, fake, lis)
	reg.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		c := approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)
		c.Endpoints = &berthv1.Endpoints{Heartbeat: addr}
		return &berthv1.ResumeResponse{Credentials: c}, nil
	}
	h.cfg.BootID = "boot-1"
	return h, reg, fake, addr
}

func TestBootOnceHeartbeat(t *testing.T) {
	tests := []struct {
		name         string
		firstRefused bool // the first stream ends Unavailable
		wantSeqs     [][]uint64
		wantSleeps   []time.Duration
	}{
		{name: "first beat acknowledged", wantSeqs: [][]uint64{{1}}},
		{name: "service restarting", firstRefused: true, wantSeqs: [][]uint64{{}, {2}},
			wantSleeps: []time.Duration{250 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _, fake, _ := newHeartbeatAgent(t, 7*time.Second)
			if tt.firstRefused {
				fake.connect = func(s int) error {
					if s == 1 {
						return status.Error(codes.Unavailable, "shutting down")
					}
					return nil
				}
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			m := jsonObject(t, &h.stdout)
			if m["heartbeat"] != HeartbeatAcked || m["heartbeat_interval"] != float64(7) || m["status"] != "approved" {
				t.Errorf("result = %v, want heartbeat acked, heartbeat_interval 7", m)
			}
			checkSequences(t, fake, tt.wantSeqs...)
			fake.mu.Lock()
			closed := fake.closed[len(fake.closed)-1]
			fake.mu.Unlock()
			if !closed {
				t.Error("the agent did not close its stream")
			}
			for i, p := range fake.Peers() {
				if p.Kind != mtls.KindNode || p.Name != nodeID {
					t.Errorf("stream %d came from %v, want the node certificate", i, p)
				}
			}
			checkSleeps(t, h.clock, tt.wantSleeps...)
		})
	}
}

func TestBootOnceHeartbeatUnreachable(t *testing.T) {
	h, reg, _, _ := newHeartbeatAgent(t, 7*time.Second)
	lis := listen(t)
	down := lis.Addr().String()
	lis.Close()
	reg.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		c := approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)
		c.Endpoints = &berthv1.Endpoints{Heartbeat: down}
		return &berthv1.ResumeResponse{Credentials: c}, nil
	}
	h.cfg.Wait = time.Minute
	err := h.run(t)
	if err == nil || ExitCode(err) != ExitFailure {
		t.Fatalf("err = %v, want a failure", err)
	}
	for _, want := range []string{"heartbeat service " + down + " unreachable for 1m0s", "connect to " + down} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to say %q", err, want)
		}
	}
	if n, total := h.clock.Slept(); n < 2 || total != time.Minute {
		t.Errorf("slept %d times, %s in all; want backoff up to --wait", n, total)
	}
	if h.stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", h.stdout.String())
	}
}

func TestBootHeartbeatSkipped(t *testing.T) {
	tests := []struct {
		name        string
		noEndpoint  bool
		noHeartbeat bool
		once        bool
		want        string
	}{
		{name: "no endpoint", noEndpoint: true, once: true, want: HeartbeatNone},
		{name: "no endpoint, long-running", noEndpoint: true, want: HeartbeatNone},
		{name: "disabled", noHeartbeat: true, once: true, want: HeartbeatDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, reg, fake, _ := newHeartbeatAgent(t, 7*time.Second)
			h.cfg.NoHeartbeat = tt.noHeartbeat
			h.cfg.Once = tt.once
			if tt.noEndpoint {
				reg.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
					return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)}, nil
				}
			}
			ctx, cancel := testContext(t)
			defer cancel()
			if !tt.once {
				h.clock.block = func(context.Context, time.Duration) error {
					cancel() // the renewal wait: enough
					return ctx.Err()
				}
			}
			a, err := New(h.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Run(ctx); err != nil {
				t.Fatalf("Run: %v", err)
			}
			m := jsonObject(t, &h.stdout)
			if m["heartbeat"] != tt.want {
				t.Errorf("heartbeat = %v, want %q", m["heartbeat"], tt.want)
			}
			if _, ok := m["heartbeat_interval"]; ok {
				t.Errorf("result = %v, want no heartbeat_interval", m)
			}
			if n := len(fake.Peers()); n != 0 {
				t.Errorf("%d heartbeat streams, want none", n)
			}
		})
	}
}

// renewalWait tells the renewal loop's waits from the heartbeater's in a
// long-running agent sharing one fake clock: those are hours, these
// seconds.
const renewalWait = time.Minute

func TestRunHeartbeatRevoked(t *testing.T) {
	h, reg, fake, _ := newHeartbeatAgent(t, 10*time.Second)
	h.cfg.Once = false
	h.clock.block = func(ctx context.Context, d time.Duration) error {
		if d >= renewalWait {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	fake.beat = func(_, n int) error {
		if n == 2 {
			return status.Error(codes.PermissionDenied, "node n-0001 is revoked")
		}
		return nil
	}
	err := h.run(t)
	if !errors.Is(err, ErrDenied) || ExitCode(err) != ExitDenied {
		t.Fatalf("err = %v, want ErrDenied (exit %d)", err, ExitDenied)
	}
	if calls := reg.Calls(); !slices.Equal(calls, []string{"Resume"}) {
		t.Errorf("calls = %v, want Resume only", calls)
	}
	checkSequences(t, fake, []uint64{1, 2})
	m := jsonObject(t, &h.stdout)
	if _, ok := m["heartbeat"]; ok || m["status"] != "approved" {
		t.Errorf("result = %v, want approved and no heartbeat field for a long-running agent", m)
	}
}

func TestRunHeartbeatUsesRenewedCertificate(t *testing.T) {
	h, reg, fake, addr := newHeartbeatAgent(t, 10*time.Second)
	h.cfg.Once = false
	h.cfg.Output = OutputText
	reg.renew = func(context.Context, *berthv1.RenewRequest) (*berthv1.RenewResponse, error) {
		// Long enough that the next renewal, by the clock advanced to this
		// one, is still hours away.
		c := approved(t, h.pki, pubOf(h.cfg.Keys), 3*time.Hour)
		c.Endpoints = &berthv1.Endpoints{Heartbeat: addr}
		return &berthv1.RenewResponse{Credentials: c}, nil
	}
	ctx, cancel := testContext(t)
	defer cancel()
	renewed := make(chan struct{})
	var renewals, beatWaits atomic.Int32
	h.clock.block = func(wctx context.Context, d time.Duration) error {
		if d >= renewalWait {
			if renewals.Add(1) == 1 {
				return nil // renew now
			}
			close(renewed) // the new certificate is in place
			<-wctx.Done()
			return wctx.Err()
		}
		if beatWaits.Add(1) == 1 {
			// The stream opened with the first certificate outlives it.
			select {
			case <-renewed:
			case <-wctx.Done():
				return wctx.Err()
			}
		}
		return nil
	}
	fake.beat = func(_, n int) error {
		switch n {
		case 2:
			return status.Error(codes.Unavailable, "shutting down")
		case 3:
			cancel()
			return status.Error(codes.Unavailable, "test over")
		}
		return nil
	}
	a, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("agent did not stop in time")
	}
	if calls := reg.Calls(); !slices.Equal(calls, []string{"Resume", "Renew"}) {
		t.Errorf("calls = %v", calls)
	}
	checkSequences(t, fake, []uint64{1, 2}, []uint64{3})
	peers := fake.Peers()
	if len(peers) != 2 {
		t.Fatalf("%d streams, want 2", len(peers))
	}
	first, second := peers[0].Leaf.SerialNumber, peers[1].Leaf.SerialNumber
	onDisk := readPEMCerts(t, filepath.Join(h.cfg.CertDir, CertFile))[0].SerialNumber
	if first.Cmp(second) == 0 || second.Cmp(onDisk) != 0 {
		t.Errorf("streams presented certificates %s then %s; want the renewed one (%s) after renewal", first, second, onDisk)
	}
}

// TestBootOnceRecorded: a registration service that records the boot as
// the node's first heartbeat (it answers with the interval) ends a --once
// boot with the node alive and no heartbeat stream; Resume carried the
// boot, sequence 1.
func TestBootOnceRecorded(t *testing.T) {
	h, reg, fake, addr := newHeartbeatAgent(t, 7*time.Second)
	var (
		mu   sync.Mutex
		boot *berthv1.BootBeat
	)
	reg.resume = func(_ context.Context, r *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		mu.Lock()
		boot = r.GetBoot()
		mu.Unlock()
		c := approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)
		c.Endpoints = &berthv1.Endpoints{Heartbeat: addr}
		c.HeartbeatInterval = durationpb.New(8 * time.Second)
		return &berthv1.ResumeResponse{Credentials: c}, nil
	}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	m := jsonObject(t, &h.stdout)
	if m["heartbeat"] != HeartbeatRecorded || m["heartbeat_interval"] != float64(8) {
		t.Errorf("result = %v, want heartbeat recorded, heartbeat_interval 8", m)
	}
	checkSequences(t, fake)
	mu.Lock()
	defer mu.Unlock()
	if boot.GetBootId() != "boot-1" || boot.GetSequence() != 1 || boot.GetStatus() != berthv1.ReportedStatus_REPORTED_STATUS_UP || boot.GetUptime() == nil {
		t.Errorf("Resume's boot = %v, want boot-1, sequence 1, up, with uptime", boot)
	}
}

// TestBootBeatOff: a node that will not beat reports no boot, which would
// make it look alive; nor does one told to beat at once (NoBootBeat), which
// then beats on its stream.
func TestBootBeatOff(t *testing.T) {
	for _, tt := range []struct {
		name      string
		set       func(*Config)
		heartbeat string
	}{
		{"no heartbeat", func(c *Config) { c.NoHeartbeat = true }, HeartbeatDisabled},
		{"no boot beat", func(c *Config) { c.NoBootBeat = true }, HeartbeatAcked},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, reg, _, addr := newHeartbeatAgent(t, 7*time.Second)
			tt.set(&h.cfg)
			got := make(chan *berthv1.BootBeat, 1)
			reg.resume = func(_ context.Context, r *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
				got <- r.GetBoot()
				c := approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)
				c.Endpoints = &berthv1.Endpoints{Heartbeat: addr}
				return &berthv1.ResumeResponse{Credentials: c}, nil
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if b := <-got; b != nil {
				t.Errorf("Resume carried boot %v", b)
			}
			if m := jsonObject(t, &h.stdout); m["heartbeat"] != tt.heartbeat {
				t.Errorf("result = %v, want heartbeat %s", m, tt.heartbeat)
			}
		})
	}
}

// TestHeartbeatFollowsRecordedBoot: after a boot the registration service
// recorded, the stream opens at a random moment in the second half of the
// interval (the test's Rand draws the last, or the first) and goes on
// with sequence 2 of the boot.
func TestHeartbeatFollowsRecordedBoot(t *testing.T) {
	for _, tt := range []struct {
		name string
		rand func(int64) int64
		want time.Duration
	}{
		{"the last moment", nil, 6*time.Second - 1},
		{"the first moment", func(int64) int64 { return 0 }, 3 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHBHarness(t, 10*time.Second)
			if tt.rand != nil {
				h.cfg.Backoff.Rand = tt.rand
			}
			ctx, cancel := testContext(t)
			defer cancel()
			h.fake.beat = endAtBeat(2, cancel)
			a, err := New(h.cfg)
			if err != nil {
				t.Fatal(err)
			}
			creds := nodeCreds(t, h.pki, h.cfg, h.addr, time.Hour)
			creds.HeartbeatInterval = 6 * time.Second
			hb := a.newHeartbeater(a.log)
			hb.followBoot(creds)
			if err := hb.Run(ctx, func() *Credentials { return creds }); err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkSequences(t, h.fake, []uint64{2, 3})
			if s := h.clock.Sleeps(); len(s) == 0 || s[0] != tt.want {
				t.Errorf("sleeps = %v, want the first stream after %v", s, tt.want)
			}
			for _, b := range h.fake.Beats() {
				if b.GetBootId() != "boot-1" {
					t.Errorf("beat %d of boot %q, want boot-1", b.GetSequence(), b.GetBootId())
				}
			}
		})
	}
}

// TestParseHeartbeatInterval: the interval a registration service gives
// is bounded like one the heartbeat service sets.
func TestParseHeartbeatInterval(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, "127.0.0.1:1", p.caHash(), newFakeClock(), &bytes.Buffer{})
	for _, tt := range []struct {
		in   *durationpb.Duration
		want time.Duration
	}{
		{nil, 0},
		{durationpb.New(0), 0},
		{durationpb.New(-time.Second), 0},
		{&durationpb.Duration{Seconds: 1, Nanos: -1}, 0},
		{durationpb.New(time.Millisecond), minInterval},
		{durationpb.New(15 * time.Second), 15 * time.Second},
		{durationpb.New(1000 * time.Hour), maxInterval},
	} {
		nc := approved(t, p, pubOf(cfg.Keys), time.Hour)
		nc.HeartbeatInterval = tt.in
		c, err := parseCredentials(nc, cfg.Keys.Identity().Public(), []*x509.Certificate{p.root})
		if err != nil {
			t.Fatal(err)
		}
		if c.HeartbeatInterval != tt.want {
			t.Errorf("interval %v: parsed %v, want %v", tt.in, c.HeartbeatInterval, tt.want)
		}
	}
}

// TestFirstStreamDelay: the first stream waits for the second half of the
// interval, whatever is drawn, and never past the interval; without an
// interval it does not wait, and draws nothing (math/rand/v2's Int64N
// panics on an empty range).
func TestFirstStreamDelay(t *testing.T) {
	first := func(int64) int64 { return 0 }
	last := func(n int64) int64 { return n - 1 }
	for _, tt := range []struct {
		iv   time.Duration
		rand func(int64) int64
		want time.Duration
	}{
		{10 * time.Second, first, 5 * time.Second},
		{10 * time.Second, last, 10*time.Second - 1},
		{3, first, 1},
		{3, last, 2},
		{1, last, 0},
		{0, rand.Int64N, 0},
		{-time.Second, rand.Int64N, 0},
	} {
		if got := FirstStreamDelay(tt.iv, tt.rand); got != tt.want {
			t.Errorf("FirstStreamDelay(%v) = %v, want %v", tt.iv, got, tt.want)
		}
	}
}
