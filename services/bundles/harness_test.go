package bundles

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

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

// node is a node with a certificate issued by the deployment's CA and a
// bundle key, as an agent holds them after Resume.
type node struct {
	id        string
	cert      tls.Certificate
	serial    string
	bundleKey hpke.PrivateKey
}

// env is a bundles service over a real gRPC server with berth's
// interceptors, mTLS with certificates from pki.Init, the real SQLite store
// and a bufconn listener.
type env struct {
	layout *pki.Layout
	signer *pki.Signer
	store  bundlestore.Store
	dbDir  string
	clock  *clock.Fake
	logs   *lockedBuffer
	lis    *bufconn.Listener
	svc    *Service
}

func newEnv(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	l, err := pki.Init(ctx, pki.InitConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{layout: l, clock: clock.NewFake(time.Now().UTC().Truncate(time.Second)), logs: &lockedBuffer{}, dbDir: t.TempDir()}
	sc, err := l.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	sc.Clock = e.clock
	if e.signer, err = pki.NewSigner(sc); err != nil {
		t.Fatal(err)
	}
	s, err := bundlestore.NewSQLite(ctx, filepath.Join(e.dbDir, "bundles.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	e.store = s
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := Config{Store: s, Logger: log, Clock: e.clock}
	if edit != nil {
		edit(&c)
	}
	svc, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	cert, err := l.ServiceCertificate(pki.ServiceBundles)
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(rpc.ServerConfig{
		Name: "bundles", Logger: log, TrustDomain: l.TrustDomain,
		Cert: cert, Roots: l.RootPool(), Policy: svc.Policy(),
	})
	svc.Register(srv)
	e.lis = bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(e.lis) }()
	t.Cleanup(srv.Stop)
	return e
}

// conn dials the service presenting cert.
func (e *env) conn(t *testing.T, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := mtls.ClientConfig(cert, e.layout.RootPool())
	cfg.ServerName = pki.ServiceBundles
	conn, err := rpc.Dial(rpc.ClientConfig{
		Addr: "passthrough:///" + pki.ServiceBundles,
		TLS:  cfg,
		Options: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return e.lis.DialContext(ctx)
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (e *env) nodeClient(t *testing.T, n *node) berthv1.BundleServiceClient {
	t.Helper()
	return berthv1.NewBundleServiceClient(e.conn(t, n.cert))
}

func (e *env) adminClient(t *testing.T, cert tls.Certificate) berthv1.BundleAdminServiceClient {
	t.Helper()
	return berthv1.NewBundleAdminServiceClient(e.conn(t, cert))
}

func (e *env) admin(t *testing.T) berthv1.BundleAdminServiceClient {
	t.Helper()
	return e.adminClient(t, load(t)(e.layout.AdminCertificate()))
}

// newNode issues a node certificate for id through the CA core, with a
// bundle key of the given KEM.
func (e *env) newNode(t *testing.T, id string, kem hpke.KEM) *node {
	t.Helper()
	key := newKey(t)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := e.signer.Sign(context.Background(), pki.SignRequest{NodeID: id, Hostname: id, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	bk, err := kem.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &node{id: id, cert: tls.Certificate{Certificate: signed.Chain, PrivateKey: key}, serial: signed.Serial, bundleKey: bk}
}

// identities are the non-node callers the tests use, by name.
func (e *env) identities(t *testing.T) map[string]tls.Certificate {
	t.Helper()
	foreign, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(t.TempDir(), "other")})
	if err != nil {
		t.Fatal(err)
	}
	l := load(t)
	return map[string]tls.Certificate{
		"admin":        l(e.layout.AdminCertificate()),
		"registration": l(e.layout.ServiceCertificate(pki.ServiceRegistration)),
		"heartbeat":    l(e.layout.ServiceCertificate(pki.ServiceHeartbeat)),
		"bootstrap":    l(mtls.SelfSigned(newKey(t))),
		"foreign CA":   l(foreign.AdminCertificate()),
	}
}

func load(t *testing.T) func(tls.Certificate, error) tls.Certificate {
	return func(c tls.Certificate, err error) tls.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	xwing = hpke.MLKEM768X25519()
	p256  = hpke.DHKEM(ecdh.P256())
)

// sealFor seals files for n, as the agent or berthctl does.
func sealFor(t *testing.T, n *node, files ...bundle.File) []byte {
	t.Helper()
	sealed, err := bundle.Seal(n.bundleKey.KEM().ID(), n.bundleKey.PublicKey().Bytes(), n.id, files)
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

// config returns a distinct one-file bundle for n.
func config(t *testing.T, n *node, text string) []byte {
	t.Helper()
	return sealFor(t, n, bundle.File{Path: "etc/berth/node.conf", Mode: 0o600, Content: []byte(text)})
}

// wantCode fails the test unless err carries the code.
func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

// wantStatus fails the test unless err carries the code and message.
func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	wantCode(t, err, code)
	if got := status.Convert(err).Message(); got != msg {
		t.Fatalf("message = %q, want %q", got, msg)
	}
}

// history lists a node's versions as "version:state:author", newest first,
// straight from the store.
func (e *env) history(t *testing.T, nodeID string) []string {
	t.Helper()
	h, err := e.store.History(context.Background(), nodeID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range h {
		out = append(out, fmt.Sprintf("%d:%s:%s", m.Version, m.State, m.Author))
	}
	return out
}
