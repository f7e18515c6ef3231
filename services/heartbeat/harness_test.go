package heartbeat

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/hbstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// lockedBuffer collects log output from concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// env is a heartbeat service over a real gRPC server with berth's
// interceptors, mTLS with certificates from pki.Init, a bufconn listener
// and the real SQLite store.
type env struct {
	layout  *pki.Layout
	signer  *pki.Signer
	store   hbstore.Store
	clock   *clock.Fake
	svc     *Service
	logs    *lockedBuffer
	lis     *bufconn.Listener
	addr    string   // set instead of lis on TCP
	revoked sync.Map // node IDs the IsRevoked hook reports
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvOn(t, false)
}

// newEnvOn is newEnv, listening on loopback TCP instead of bufconn when tcp
// is set (bufconn's 1 MiB pipes would dwarf what a connection costs), with
// the service's Config changed by mod.
func newEnvOn(t testing.TB, tcp bool, mod ...func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	l, err := pki.Init(ctx, pki.InitConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{layout: l, clock: clock.NewFake(t0), logs: &lockedBuffer{}}
	sc, err := l.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if e.signer, err = pki.NewSigner(sc); err != nil {
		t.Fatal(err)
	}
	store, err := hbstore.NewSQLite(ctx, filepath.Join(t.TempDir(), "heartbeat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	e.store = store
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{
		Store:  store,
		Logger: log,
		Clock:  e.clock,
		IsRevoked: func(_ context.Context, id string) bool {
			_, ok := e.revoked.Load(id)
			return ok
		},
	}
	for _, m := range mod {
		m(&cfg)
	}
	e.svc, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := l.ServiceCertificate(pki.ServiceHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(rpc.ServerConfig{
		Name: "heartbeat", Logger: log, TrustDomain: l.TrustDomain,
		Cert: cert, Roots: l.RootPool(), Policy: e.svc.Policy(),
	})
	e.svc.Register(srv.Server)
	var lis net.Listener
	if tcp {
		if lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		e.addr = lis.Addr().String()
	} else {
		e.lis = bufconn.Listen(1 << 20)
		lis = e.lis
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return e
}

// dial connects presenting cert.
func (e *env) dial(t testing.TB, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := mtls.ClientConfig(cert, e.layout.RootPool())
	cfg.ServerName = pki.ServiceHeartbeat
	c := rpc.ClientConfig{Addr: "passthrough:///" + pki.ServiceHeartbeat, TLS: cfg}
	if e.addr != "" {
		c.Addr = e.addr
	} else {
		c.Options = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return e.lis.DialContext(ctx)
		})}
	}
	conn, err := rpc.Dial(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// nodeCert mints a node certificate for id, as the CA does.
func (e *env) nodeCert(t testing.TB, id string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := e.signer.Sign(context.Background(), pki.SignRequest{NodeID: id, Hostname: id, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: signed.Chain, PrivateKey: key}
}

func (e *env) node(t testing.TB, id string) berthv1.HeartbeatServiceClient {
	return berthv1.NewHeartbeatServiceClient(e.dial(t, e.nodeCert(t, id)))
}

func (e *env) admin(t *testing.T) berthv1.HeartbeatAdminServiceClient {
	t.Helper()
	cert, err := e.layout.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return berthv1.NewHeartbeatAdminServiceClient(e.dial(t, cert))
}

// stream is an open heartbeat stream of a node.
type stream struct {
	t   *testing.T
	s   berthv1.HeartbeatService_HeartbeatClient
	seq atomic.Uint64
}

// open opens a stream and reads the first message, which carries the
// interval.
func open(t *testing.T, c berthv1.HeartbeatServiceClient) (*stream, *berthv1.HeartbeatResponse) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := c.Heartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Recv()
	if err != nil {
		t.Fatalf("first message: %v", err)
	}
	return &stream{t: t, s: s}, first
}

func (s *stream) send(req *berthv1.HeartbeatRequest) {
	s.t.Helper()
	if err := s.s.Send(req); err != nil {
		s.t.Fatalf("Send: %v", err)
	}
}

// beat sends the next beat and returns the acknowledgement.
func (s *stream) beat(events ...*berthv1.StatusEvent) *berthv1.HeartbeatResponse {
	s.t.Helper()
	s.send(&berthv1.HeartbeatRequest{Sequence: s.seq.Add(1), BootId: "boot-1", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP, Events: events})
	resp, err := s.s.Recv()
	if err != nil {
		s.t.Fatalf("Recv: %v", err)
	}
	return resp
}

// wantCode fails the test unless err carries the code.
func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

// endOf reads until the stream ends and returns its error.
func endOf(s berthv1.HeartbeatService_HeartbeatClient) error {
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
}
