package rpc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/h2raw"
)

// wait is how long a test waits for an event that must happen.
const wait = 20 * time.Second

// Methods of the test service.
const (
	methodMark  = "/berth.test.Limits/Mark"  // a bare key proves it is known
	methodEcho  = "/berth.test.Limits/Echo"  // anyone, any message size
	methodAdmin = "/berth.test.Limits/Admin" // admins only
)

// limitsService is a test service: Mark authenticates a bare key's
// connection as the registration service does for a registered node.
var limitsService = grpc.ServiceDesc{
	ServiceName: "berth.test.Limits",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Mark", Handler: unary(methodMark, func(ctx context.Context) { MarkAuthenticated(ctx) })},
		{MethodName: "Echo", Handler: unary(methodEcho, func(context.Context) {})},
		{MethodName: "Admin", Handler: unary(methodAdmin, func(context.Context) {})},
	},
}

func unary(method string, do func(context.Context)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.BytesValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, _ any) (any, error) { do(ctx); return &emptypb.Empty{}, nil }
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, h)
	}
}

// limitsEnv is a server under test limits on loopback TCP, and the
// credentials of each kind of caller.
type limitsEnv struct {
	srv     *Server
	addr    string
	layout  *pki.Layout
	admin   tls.Certificate
	foreign tls.Certificate
}

func newLimitsEnv(t *testing.T, l Limits) *limitsEnv {
	t.Helper()
	return newLimitsEnvWith(t, l, nil, nil)
}

// newLimitsEnvWith is newLimitsEnv with a policy in place of the default
// one (when not nil), and bearer tokens checked by auth.
func newLimitsEnvWith(t *testing.T, l Limits, policy Policy, auth BearerAuth) *limitsEnv {
	t.Helper()
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(t.TempDir(), "other")})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := layout.ServiceCertificate(pki.ServiceRegistration)
	if err != nil {
		t.Fatal(err)
	}
	if policy == nil {
		policy = Policy{
			"/berth.test.Limits/Mark":  NodeKey,
			"/berth.test.Limits/Echo":  Anyone,
			"/berth.test.Limits/Admin": Admin,
		}
	}
	srv := NewServer(ServerConfig{
		Name: "limits", TrustDomain: layout.TrustDomain, Cert: cert, Roots: layout.RootPool(), Limits: l,
		Policy: policy, Bearer: auth,
	})
	srv.RegisterService(&limitsService, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	e := &limitsEnv{srv: srv, addr: lis.Addr().String(), layout: layout}
	if e.admin, err = layout.AdminCertificate(); err != nil {
		t.Fatal(err)
	}
	if e.foreign, err = other.AdminCertificate(); err != nil {
		t.Fatal(err)
	}
	return e
}

// bareKey is a node's self-signed certificate for a fresh key.
func bareKey(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := mtls.SelfSigned(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *limitsEnv) tls(cert tls.Certificate) *tls.Config {
	cfg := mtls.ClientConfig(cert, e.layout.RootPool())
	cfg.ServerName = "127.0.0.1"
	return cfg
}

// dial opens a gRPC client connection from the loopback address src.
func (e *limitsEnv) dial(t *testing.T, cert tls.Certificate, src string) *grpc.ClientConn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := Dial(ClientConfig{Addr: e.addr, TLS: e.tls(cert), Options: []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// raw opens a raw HTTP/2 connection from src.
func (e *limitsEnv) raw(t *testing.T, cert tls.Certificate, src string) *h2raw.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := h2raw.Dial(ctx, &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}, e.addr, e.tls(cert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func call(conn *grpc.ClientConn, method string, size int) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return conn.Invoke(ctx, method, wrapperspb.Bytes(make([]byte, size)), new(emptypb.Empty))
}

// callNoDeadline makes a call without a deadline, as the stream limit
// answers those with a status rather than by closing the connection.
func callNoDeadline(conn *grpc.ClientConn, method string) error {
	return conn.Invoke(context.Background(), method, wrapperspb.Bytes(nil), new(emptypb.Empty))
}

// eventually waits until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: %v, want code %v", what, err, want)
	}
}

// nextFrame reads frames until one that match accepts, or the connection ends.
func nextFrame(t *testing.T, c *h2raw.Conn, match func(http2.Frame) bool) http2.Frame {
	t.Helper()
	c.TLS.SetReadDeadline(time.Now().Add(wait))
	for {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended before the expected frame: %v", err)
		}
		if match(f) {
			return f
		}
	}
}

// TestPerSourceLimit: a source holds at most MaxUnauthenticatedPerSource
// unauthenticated connections; its next one is closed during the
// handshake, while other sources and known peers are not limited by it.
func TestPerSourceLimit(t *testing.T) {
	e := newLimitsEnv(t, Limits{MaxUnauthenticatedPerSource: 2})
	// Known peers from the same address never count: ten admins stay
	// connected, and the source still has both of its slots.
	for range 10 {
		wantCode(t, "admin call", call(e.dial(t, e.admin, "127.0.0.1"), methodEcho, 1), codes.OK)
	}
	a := e.dial(t, bareKey(t), "127.0.0.1")
	wantCode(t, "first bare key", call(a, methodEcho, 1), codes.OK)
	wantCode(t, "second bare key", call(e.dial(t, bareKey(t), "127.0.0.1"), methodEcho, 1), codes.OK)
	err := call(e.dial(t, bareKey(t), "127.0.0.1"), methodEcho, 1)
	wantCode(t, "third bare key from the same source", err, codes.Unavailable)
	// A foreign certificate is as unauthenticated as a bare key.
	wantCode(t, "foreign certificate from the same source", call(e.dial(t, e.foreign, "127.0.0.1"), methodEcho, 1), codes.Unavailable)
	// Even an admin cannot start a handshake from a source at its limit:
	// nobody is known before the handshake.
	wantCode(t, "admin from the full source", call(e.dial(t, e.admin, "127.0.0.1"), methodEcho, 1), codes.Unavailable)
	// Another source is not affected.
	wantCode(t, "bare key from another source", call(e.dial(t, bareKey(t), "127.0.0.2"), methodEcho, 1), codes.OK)

	// A bare key that turns out to be a known node frees its slot.
	wantCode(t, "mark", call(a, methodMark, 1), codes.OK)
	wantCode(t, "bare key after a known node left the count", call(e.dial(t, bareKey(t), "127.0.0.1"), methodEcho, 1), codes.OK)
	if got := e.srv.limits.unauthenticated(); got != 3 {
		t.Errorf("unauthenticated connections = %d, want 3 (two from 127.0.0.1, one from 127.0.0.2)", got)
	}
}

// TestPerSourceLimitFreedOnClose: closing an unauthenticated connection
// gives its source's slot back.
func TestPerSourceLimitFreedOnClose(t *testing.T) {
	e := newLimitsEnv(t, Limits{MaxUnauthenticatedPerSource: 1})
	a := e.dial(t, bareKey(t), "127.0.0.3")
	wantCode(t, "first", call(a, methodEcho, 1), codes.OK)
	wantCode(t, "second while the first is open", call(e.dial(t, bareKey(t), "127.0.0.3"), methodEcho, 1), codes.Unavailable)
	a.Close()
	eventually(t, "the server saw the connection close", func() bool { return e.srv.limits.unauthenticated() == 0 })
	wantCode(t, "second after the first closed", call(e.dial(t, bareKey(t), "127.0.0.3"), methodEcho, 1), codes.OK)
}

// TestUnauthenticatedStreams: an unauthenticated connection has at most
// MaxUnauthenticatedStreams calls in flight; the next is refused with
// ResourceExhausted before a handler runs. Known peers are not limited.
func TestUnauthenticatedStreams(t *testing.T) {
	e := newLimitsEnv(t, Limits{MaxUnauthenticatedStreams: 2})
	conn := e.dial(t, bareKey(t), "127.0.0.1")
	health := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancels []context.CancelFunc
	for range 2 {
		wctx, wcancel := context.WithCancel(ctx)
		cancels = append(cancels, wcancel)
		w, err := health.Watch(wctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("watch: %v", err)
		}
	}
	err := callNoDeadline(conn, methodEcho)
	wantCode(t, "third call in flight", err, codes.ResourceExhausted)
	if !strings.Contains(status.Convert(err).Message(), "one at a time") {
		t.Errorf("message %q does not say what to do", status.Convert(err).Message())
	}
	cancels[0]()
	eventually(t, "a call ended and made room", func() bool { return call(conn, methodEcho, 1) == nil })

	admin := e.dial(t, e.admin, "127.0.0.1")
	for range 5 {
		w, err := healthpb.NewHealthClient(admin).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("admin watch: %v", err)
		}
	}
	wantCode(t, "admin call with five watches open", call(admin, methodEcho, 1), codes.OK)
}

// TestUnauthenticatedStreamsWithDeadline: a call with a deadline beyond
// the limit ends the whole connection, since gRPC would keep its timer.
func TestUnauthenticatedStreamsWithDeadline(t *testing.T) {
	e := newLimitsEnv(t, Limits{MaxUnauthenticatedStreams: 1})
	c := e.raw(t, bareKey(t), "127.0.0.1")
	timeout := hpack.HeaderField{Name: "grpc-timeout", Value: "99999999H"}
	for range 2 {
		if _, err := c.OpenStream(methodEcho, timeout); err != nil {
			t.Fatal(err)
		}
	}
	waitClosed(t, c)
	eventually(t, "the server dropped the connection", func() bool { return e.srv.limits.unauthenticated() == 0 })
}

// TestUnauthenticatedDeniedBeforeMessage: a call an unauthenticated peer
// may not make is refused as soon as its headers arrive, without waiting
// for a message (which a flood never sends).
func TestUnauthenticatedDeniedBeforeMessage(t *testing.T) {
	e := newLimitsEnv(t, Limits{})
	for _, tt := range []struct {
		name   string
		cert   tls.Certificate
		want   string
		method string
	}{
		{"bare key", bareKey(t), "16", methodAdmin},                    // Unauthenticated
		{"foreign certificate", e.foreign, "16", methodAdmin},          // Unauthenticated
		{"method nobody may call", bareKey(t), "7", "/berth.test.X/Y"}, // PermissionDenied
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.raw(t, tt.cert, "127.0.0.1")
			id, err := c.OpenStream(tt.method)
			if err != nil {
				t.Fatal(err)
			}
			f := nextFrame(t, c, func(f http2.Frame) bool {
				_, _, ok := h2raw.Status(f)
				return ok && f.Header().StreamID == id
			})
			if code, msg, _ := h2raw.Status(f); code != tt.want {
				t.Errorf("grpc-status %s (%s), want %s", code, msg, tt.want)
			}
		})
	}
}

// TestUnauthenticatedBytes: an unauthenticated connection that sends more
// than MaxUnauthenticatedBytes is closed; a known peer sends what it likes.
func TestUnauthenticatedBytes(t *testing.T) {
	e := newLimitsEnv(t, Limits{MaxUnauthenticatedBytes: 64 << 10})
	bare := e.dial(t, bareKey(t), "127.0.0.1")
	wantCode(t, "small message", call(bare, methodEcho, 1<<10), codes.OK)
	wantCode(t, "message past the budget", call(bare, methodEcho, 100<<10), codes.Unavailable)
	admin := e.dial(t, e.admin, "127.0.0.1")
	for range 3 {
		wantCode(t, "admin message", call(admin, methodEcho, 100<<10), codes.OK)
	}
	// A node found known stops counting.
	marked := e.dial(t, bareKey(t), "127.0.0.1")
	wantCode(t, "mark", call(marked, methodMark, 1), codes.OK)
	wantCode(t, "known node's message", call(marked, methodEcho, 100<<10), codes.OK)
}

// TestMaxConcurrentStreams: a known peer's streams beyond
// MaxConcurrentStreams are refused with REFUSED_STREAM.
func TestMaxConcurrentStreams(t *testing.T) {
	e := newLimitsEnv(t, Limits{MaxConcurrentStreams: 2})
	c := e.raw(t, e.admin, "127.0.0.1")
	var last uint32
	for range 3 {
		id, err := c.OpenStream(methodEcho)
		if err != nil {
			t.Fatal(err)
		}
		last = id
	}
	f := nextFrame(t, c, func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
	if rst := f.(*http2.RSTStreamFrame); rst.StreamID != last || rst.ErrCode != http2.ErrCodeRefusedStream {
		t.Errorf("got %s, want RST_STREAM %d REFUSED_STREAM", h2raw.Describe(f), last)
	}
}

// TestMaxHeaderListSize: a call whose headers add up to more than
// MaxHeaderListSize is reset and the connection goes on; a single header
// field beyond it ends the connection (HPACK refuses to decode it).
func TestMaxHeaderListSize(t *testing.T) {
	e := newLimitsEnv(t, Limits{MaxHeaderListSize: 4 << 10})
	c := e.raw(t, e.admin, "127.0.0.1")
	var many []hpack.HeaderField
	for i := range 8 {
		many = append(many, hpack.HeaderField{Name: fmt.Sprintf("x-h%d", i), Value: strings.Repeat("b", 1<<10)})
	}
	id, err := c.OpenStream(methodEcho, many...)
	if err != nil {
		t.Fatal(err)
	}
	f := nextFrame(t, c, func(f http2.Frame) bool { return f.Header().StreamID == id })
	if _, ok := f.(*http2.RSTStreamFrame); !ok {
		t.Fatalf("oversized header list: got %s, want RST_STREAM", h2raw.Describe(f))
	}
	conn := e.dial(t, e.admin, "127.0.0.1")
	wantCode(t, "call with small headers", call(conn, methodEcho, 1), codes.OK)

	if _, err := c.OpenStream(methodEcho, hpack.HeaderField{Name: "x-big", Value: strings.Repeat("b", 8<<10)}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	wantCode(t, "other connections after one was closed", call(conn, methodEcho, 1), codes.OK)
}

// waitClosed reads until the server closes the connection; a GOAWAY may
// come first, but no answer to a call.
func waitClosed(t *testing.T, c *h2raw.Conn) {
	t.Helper()
	c.TLS.SetReadDeadline(time.Now().Add(wait))
	for {
		f, err := c.ReadFrame()
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("the server did not close the connection: %v", err)
			}
			return
		}
		if _, _, ok := h2raw.Status(f); ok {
			t.Fatalf("got an answer instead of the end of the connection: %s", h2raw.Describe(f))
		}
	}
}

// TestHandshakeTimeout: a connection that never completes its handshake
// is closed, and gives its slot back.
func TestHandshakeTimeout(t *testing.T) {
	e := newLimitsEnv(t, Limits{HandshakeTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read from a silent connection: %v, want it closed by the server", err)
	}
	eventually(t, "the slot was given back", func() bool { return e.srv.limits.unauthenticated() == 0 })
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestIdleTimeout: a connection with no call in flight for IdleTimeout
// gets a GOAWAY.
func TestIdleTimeout(t *testing.T) {
	e := newLimitsEnv(t, Limits{IdleTimeout: 100 * time.Millisecond})
	c := e.raw(t, e.admin, "127.0.0.1")
	f := nextFrame(t, c, func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	if g := f.(*http2.GoAwayFrame); g.ErrCode != http2.ErrCodeNo {
		t.Errorf("got %s, want a graceful GOAWAY", h2raw.Describe(f))
	}
}

// TestKeepaliveEnforcement: a client that pings faster than
// KeepaliveMinTime is sent away with ENHANCE_YOUR_CALM.
func TestKeepaliveEnforcement(t *testing.T) {
	e := newLimitsEnv(t, Limits{})
	c := e.raw(t, e.admin, "127.0.0.1")
	for range 5 {
		if err := c.Ping(); err != nil {
			t.Fatal(err)
		}
	}
	f := nextFrame(t, c, func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	if g := f.(*http2.GoAwayFrame); g.ErrCode != http2.ErrCodeEnhanceYourCalm || string(g.DebugData()) != "too_many_pings" {
		t.Errorf("got %s, want GOAWAY ENHANCE_YOUR_CALM too_many_pings", h2raw.Describe(f))
	}
}

// blockedHandshake starts a TLS handshake that the server cannot answer
// until it accepts; done is closed when the handshake ends.
func (e *limitsEnv) blockedHandshake(t *testing.T, cert tls.Certificate) (done chan error) {
	t.Helper()
	done = make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		c, err := (&tls.Dialer{Config: e.tls(cert)}).DialContext(ctx, "tcp", e.addr)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		done <- err
	}()
	return done
}

// blocked reports whether the listener waits for room in sem.
func (e *limitsEnv) blocked(sem chan struct{}) bool {
	return e.srv.limits.waiting.Load() == 1 && len(sem) == cap(sem)
}

// TestListenerLimits: at MaxConnections, or at MaxUnauthenticated
// unauthenticated connections, the listener stops accepting; a connection
// waiting in the backlog is served as soon as there is room.
func TestListenerLimits(t *testing.T) {
	t.Run("connections", func(t *testing.T) {
		e := newLimitsEnv(t, Limits{MaxConnections: 2})
		first := e.dial(t, e.admin, "127.0.0.1")
		wantCode(t, "first", call(first, methodEcho, 1), codes.OK)
		wantCode(t, "second", call(e.dial(t, e.admin, "127.0.0.1"), methodEcho, 1), codes.OK)
		done := e.blockedHandshake(t, e.admin)
		eventually(t, "the listener waits for room", func() bool { return e.blocked(e.srv.limits.total) })
		select {
		case err := <-done:
			t.Fatalf("third handshake ended while the listener was full: %v", err)
		default:
		}
		first.Close()
		if err := <-done; err != nil {
			t.Fatalf("third handshake after a connection closed: %v", err)
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		e := newLimitsEnv(t, Limits{MaxUnauthenticated: 2})
		first := e.dial(t, bareKey(t), "127.0.0.1")
		wantCode(t, "first", call(first, methodEcho, 1), codes.OK)
		wantCode(t, "second", call(e.dial(t, bareKey(t), "127.0.0.2"), methodEcho, 1), codes.OK)
		done := e.blockedHandshake(t, e.admin)
		eventually(t, "the listener waits for room", func() bool { return e.blocked(e.srv.limits.unauth) })
		select {
		case err := <-done:
			t.Fatalf("handshake ended while two unauthenticated connections were open: %v", err)
		default:
		}
		// The first proves it is a known node: room for one more.
		wantCode(t, "mark", call(first, methodMark, 1), codes.OK)
		if err := <-done; err != nil {
			t.Fatalf("handshake after a connection authenticated: %v", err)
		}
	})
}

// TestLimitsCheck: contradictory limits are refused.
func TestLimitsCheck(t *testing.T) {
	for _, tt := range []struct {
		l    Limits
		want string
	}{
		{Limits{}, ""},
		{Limits{MaxConnections: -1, MaxUnauthenticated: -1, MaxUnauthenticatedPerSource: -1}, ""},
		{Limits{MaxConnections: 10, MaxUnauthenticated: 20}, "above the connection limit"},
		{Limits{MaxUnauthenticated: 10, MaxUnauthenticatedPerSource: 20}, "per-source"},
		{Limits{MaxHeaderListSize: 100}, "below 1 KiB"},
	} {
		err := tt.l.Check()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v.Check() = %v, want %q", tt.l, err, tt.want)
		}
	}
}

// TestSourceOf: IPv4 addresses count alone, IPv6 ones by their /64, and
// connections without an IP address against no source.
func TestSourceOf(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 4000}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 4000}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), Port: 4000}, "2001:db8:1:2::"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::9"), Port: 4000}, "2001:db8:1:2::"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, ""},
		{&connAddr{Addr: &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}}, ""},
	} {
		got := ""
		if ip, ok := sourceOf(tt.addr); ok {
			got = ip.String()
		}
		if got != tt.want {
			t.Errorf("sourceOf(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// TestUnauthenticatedMaxAge: a connection still unauthenticated after
// UnauthenticatedMaxAge is closed; known ones are not.
func TestUnauthenticatedMaxAge(t *testing.T) {
	e := newLimitsEnv(t, Limits{UnauthenticatedMaxAge: 200 * time.Millisecond})
	admin := e.dial(t, e.admin, "127.0.0.1")
	wantCode(t, "admin", call(admin, methodEcho, 1), codes.OK)
	marked := e.dial(t, bareKey(t), "127.0.0.1")
	wantCode(t, "mark", call(marked, methodMark, 1), codes.OK)
	c := e.raw(t, bareKey(t), "127.0.0.1")
	if _, err := c.OpenStream(methodEcho); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	eventually(t, "the server dropped the connection", func() bool { return e.srv.limits.unauthenticated() == 0 })
	e.srv.limits.mu.Lock()
	got := len(e.srv.limits.conns)
	e.srv.limits.mu.Unlock()
	if got != 2 {
		t.Errorf("%d connections tracked, want the admin's and the marked node's", got)
	}
	wantCode(t, "admin after the age limit", call(admin, methodEcho, 1), codes.OK)
	wantCode(t, "known node after the age limit", call(marked, methodEcho, 1), codes.OK)
}

// TestUnauthenticatedRefusals: an unauthenticated connection that has
// maxRefusals calls refused is closed; up to then each gets its status.
func TestUnauthenticatedRefusals(t *testing.T) {
	e := newLimitsEnv(t, Limits{MaxUnauthenticatedStreams: 1})
	c := e.raw(t, bareKey(t), "127.0.0.1")
	if _, err := c.OpenStream(methodEcho); err != nil { // held: the limit is reached
		t.Fatal(err)
	}
	for range maxRefusals - 1 {
		if _, err := c.OpenStream(methodEcho); err != nil {
			t.Fatal(err)
		}
	}
	for range maxRefusals - 1 {
		f := nextFrame(t, c, func(f http2.Frame) bool { _, _, ok := h2raw.Status(f); return ok })
		if code, _, _ := h2raw.Status(f); code != "8" {
			t.Fatalf("refused call: grpc-status %s, want 8 (ResourceExhausted)", code)
		}
	}
	if got := e.srv.limits.unauthenticated(); got != 1 {
		t.Fatalf("connection closed after %d refusals, before the limit of %d", maxRefusals-1, maxRefusals)
	}
	if _, err := c.OpenStream(methodAdmin); err != nil { // denied: counts as well
		t.Fatal(err)
	}
	waitClosed(t, c)
	eventually(t, "the server dropped the connection", func() bool { return e.srv.limits.unauthenticated() == 0 })
}
