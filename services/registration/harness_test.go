package registration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/store/castore"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/services/bundles"
	"github.com/berth-dev/berth/services/ca"
)

// env is a running registration + CA + bundles server on loopback, with
// real certificates, real stores and a real CA, as berthd serve --role all.
type env struct {
	t      testing.TB
	srv    *grpctest.Server
	addr   string
	layout *pki.Layout
	clock  *clock.Fake
	reg    regstore.Store
	cas    castore.Store
	bs     bundlestore.Store
	admin  *grpc.ClientConn
	svc    *Service
	// ca and bundles stand between the service and its dependencies, so
	// that a test can take them down.
	ca      *caSwitch
	bundles *bundlesSwitch
	// self is the registration service's own connection to the server.
	self *grpc.ClientConn
}

type backend = string

const (
	sqliteBackend   = pgtest.SQLite
	postgresBackend = pgtest.Postgres
)

func newEnv(t testing.TB, b backend) *env { return newEnvWith(t, b, true) }

// postgresAt is a backend on the PostgreSQL database at dsn, such as a
// pgtest.Cluster a test stops and starts.
func postgresAt(dsn string) backend { return "postgres-at:" + dsn }

// sqliteIn is a backend with its SQLite files in dir, such as a small
// file system a test fills up.
func sqliteIn(dir string) backend { return "sqlite-in:" + dir }

// stores opens the three stores on engine b.
func (e *env) openStores(t testing.TB, b backend) {
	t.Helper()
	ctx := context.Background()
	var err error
	dir, dsn := "", ""
	switch {
	case b == sqliteBackend:
		dir = t.TempDir()
	case strings.HasPrefix(b, "sqlite-in:"):
		dir = strings.TrimPrefix(b, "sqlite-in:")
	case b == postgresBackend:
		dsn = pgtest.NewDatabase(t)
	case strings.HasPrefix(b, "postgres-at:"):
		dsn = strings.TrimPrefix(b, "postgres-at:")
	default:
		t.Fatalf("unknown engine %q", b)
	}
	switch {
	case dir != "":
		e.reg, err = regstore.Open(ctx, db.SQLite, filepath.Join(dir, "registration.db"))
		if err == nil {
			e.cas, err = castore.Open(ctx, db.SQLite, filepath.Join(dir, "ca.db"))
		}
		if err == nil {
			e.bs, err = bundlestore.Open(ctx, db.SQLite, filepath.Join(dir, "bundles.db"))
		}
	default:
		e.reg, err = regstore.Open(ctx, db.Postgres, dsn)
		if err == nil {
			e.cas, err = castore.Open(ctx, db.Postgres, dsn)
		}
		if err == nil {
			e.bs, err = bundlestore.Open(ctx, db.Postgres, dsn)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.reg.Close(); e.cas.Close(); e.bs.Close() })
}

// newEnvWith builds the env; inlineBundles false leaves the registration
// service without a bundle store, so nodes fetch bundles themselves.
func newEnvWith(t testing.TB, b backend, inlineBundles bool) *env {
	t.Helper()
	return newEnvConfig(t, b, func(c *Config) {
		if !inlineBundles {
			c.Bundles = nil
		}
	})
}

// newEnvConfig builds the env, with the registration service's Config
// changed by mod.
func newEnvConfig(t testing.TB, b backend, mod func(*Config)) *env {
	t.Helper()
	return newEnvLimits(t, b, rpc.Limits{}, mod)
}

// newEnvLimits is newEnvConfig on a server with the given connection limits.
func newEnvLimits(t testing.TB, b backend, limits rpc.Limits, mod func(*Config)) *env {
	t.Helper()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	srv := grpctest.New(t, grpctest.Config{TCP: true, Clock: clk, Limits: limits})
	e := &env{t: t, srv: srv, addr: srv.Addr, layout: srv.Layout, clock: clk}
	e.openStores(t, b)
	caSvc, err := ca.New(ca.Config{Signer: srv.Signer, Store: e.cas, Roots: []*x509.Certificate{e.layout.Root}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	bundleSvc, err := bundles.New(bundles.Config{Store: e.bs, TrustDomain: e.layout.TrustDomain, Roots: e.layout.RootPool()})
	if err != nil {
		t.Fatal(err)
	}
	// The registration service reaches the CA and the bundle store, here on
	// the same server, over its own connection, as in berthd.
	self := srv.Service(t, pki.ServiceRegistration)
	e.ca = &caSwitch{cur: NewGRPCCA(self)}
	e.bundles = &bundlesSwitch{cur: NewGRPCBundles(self)}
	e.self = self
	c := Config{
		Store:       e.reg,
		CA:          e.ca,
		Bundles:     e.bundles,
		TrustBundle: [][]byte{e.layout.Root.Raw},
		Endpoints:   &berthv1.Endpoints{Registration: e.addr},
		Clock:       clk,
	}
	if mod != nil {
		mod(&c)
	}
	e.svc, err = New(c)
	if err != nil {
		t.Fatal(err)
	}
	policy := rpc.Merge(e.svc.Policy(), caSvc.Policy(), bundleSvc.Policy())
	srv.Serve(t, pki.ServiceRegistration, policy, func(g grpc.ServiceRegistrar) {
		e.svc.Register(g)
		caSvc.Register(g)
		bundleSvc.Register(g)
	})
	e.admin = srv.Admin(t)
	return e
}

// dial connects with a certificate issued by the deployment's CA.
func (e *env) dial(cert tls.Certificate) *grpc.ClientConn {
	e.t.Helper()
	return e.srv.Dial(e.t, cert)
}

// deadConn is a connection, as the registration service, to a loopback
// address nothing listens on: a dependency that is down.
func (e *env) deadConn() *grpc.ClientConn {
	e.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	cfg := mtls.ClientConfig(e.srv.ServiceCert(e.t, pki.ServiceRegistration), e.layout.RootPool())
	cfg.ServerName = "127.0.0.1"
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: cfg})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

// caDown makes every call of the registration service to the CA fail as
// an unreachable CA's do.
func (e *env) caDown() { e.ca.set(NewGRPCCA(e.deadConn())) }

// bundlesDown makes every call of the registration service to the bundle
// store fail as an unreachable store's do.
func (e *env) bundlesDown() { e.bundles.set(NewGRPCBundles(e.deadConn())) }

// caSwitch is the registration service's CA client, which a test may
// swap for one whose CA is down.
type caSwitch struct {
	mu  sync.Mutex
	cur CA
}

func (s *caSwitch) set(c CA) { s.mu.Lock(); s.cur = c; s.mu.Unlock() }
func (s *caSwitch) get() CA  { s.mu.Lock(); defer s.mu.Unlock(); return s.cur }

func (s *caSwitch) Sign(ctx context.Context, requestID, nodeID, hostname string, csr []byte) (regstore.Cert, error) {
	return s.get().Sign(ctx, requestID, nodeID, hostname, csr)
}

func (s *caSwitch) RevokeNode(ctx context.Context, nodeID string, keep []byte, reason string, nodeRevoked bool) error {
	return s.get().RevokeNode(ctx, nodeID, keep, reason, nodeRevoked)
}

func (s *caSwitch) ListIssued(ctx context.Context, nodeID string) ([]*berthv1.IssuedCertificate, error) {
	return s.get().ListIssued(ctx, nodeID)
}

func (s *caSwitch) Revoke(ctx context.Context, serial, reason string) error {
	return s.get().Revoke(ctx, serial, reason)
}

// bundlesSwitch is the registration service's bundle store client, which
// a test may swap for one whose store is down.
type bundlesSwitch struct {
	mu  sync.Mutex
	cur Bundles
}

func (s *bundlesSwitch) set(b Bundles) { s.mu.Lock(); s.cur = b; s.mu.Unlock() }
func (s *bundlesSwitch) get() Bundles  { s.mu.Lock(); defer s.mu.Unlock(); return s.cur }

func (s *bundlesSwitch) Sealed(ctx context.Context, nodeID string, bundleKey []byte) (*berthv1.SealedBundle, error) {
	return s.get().Sealed(ctx, nodeID, bundleKey)
}

func (s *bundlesSwitch) Delete(ctx context.Context, nodeID string) error {
	return s.get().Delete(ctx, nodeID)
}

func (s *bundlesSwitch) Epoch() (uint64, bool) {
	if c, ok := s.get().(newNodes); ok {
		return c.Epoch()
	}
	return 0, false
}

func (s *bundlesSwitch) Created(nodeID string, bundleKey []byte, epoch uint64) {
	if c, ok := s.get().(newNodes); ok {
		c.Created(nodeID, bundleKey, epoch)
	}
}

// cacheBundles puts a BundleCache, as berthd has, between the
// registration service and the bundle store on the env's own server, and
// waits until it answers from memory; the returned function takes it away.
func (e *env) cacheBundles(t testing.TB) (*BundleCache, func()) {
	t.Helper()
	prev := e.bundles.get()
	cache, err := NewBundleCache(BundleCacheConfig{Source: prev, Watch: berthv1.NewBundleAdminServiceClient(e.self)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(ctx) }()
	wait, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	if err := cache.waitUntil(wait, func() bool { return cache.live }); err != nil {
		t.Fatalf("bundle cache: %v", err)
	}
	e.bundles.set(cache)
	return cache, func() { e.bundles.set(prev); cancel(); <-done }
}

func (e *env) adminClient() berthv1.NodeAdminServiceClient {
	return berthv1.NewNodeAdminServiceClient(e.admin)
}

// node is a simulated node: its keys, its facts and a connection that
// proves its identity key with a self-signed certificate, as the agent does.
type node struct {
	key       *ecdsa.PrivateKey
	bundleKey hpke.PrivateKey
	facts     *berthv1.MachineFacts
	conn      *grpc.ClientConn
	// source is the identity_source it reports; seed-file unless a test
	// says otherwise.
	source string
}

var nodeSeq struct {
	sync.Mutex
	n int
}

func (e *env) newNode(uuid string) *node {
	e.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.nodeWithKey(key, uuid)
}

func (e *env) nodeWithKey(key *ecdsa.PrivateKey, uuid string) *node {
	e.t.Helper()
	bk, err := hpke.MLKEM768X25519().GenerateKey()
	if err != nil {
		e.t.Fatal(err)
	}
	conn := e.srv.Bootstrap(e.t, key)
	nodeSeq.Lock()
	nodeSeq.n++
	name := "node-" + string(rune('a'+nodeSeq.n%26))
	// Each node its own MAC, so that only tests that mean to share
	// hardware make duplicates.
	mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", nodeSeq.n>>16&0xff, nodeSeq.n>>8&0xff, nodeSeq.n&0xff)
	nodeSeq.Unlock()
	return &node{key: key, bundleKey: bk, conn: conn, source: "seed-file", facts: &berthv1.MachineFacts{
		HardwareUuid: uuid, Hostname: name, Macs: []string{mac}, Serial: "SN-1",
	}}
}

// identity is how the server sees this node's bare key.
func (n *node) identity(t testing.TB) mtls.Identity {
	sum, err := mtls.KeyHash(n.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return mtls.Identity{Kind: mtls.KindBootstrap, KeySHA256: sum}
}

func (n *node) client() berthv1.RegistrationServiceClient {
	return berthv1.NewRegistrationServiceClient(n.conn)
}

func csrFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "node"}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (n *node) registerRequest(t testing.TB, token string) *berthv1.RegisterRequest {
	pub := n.bundleKey.PublicKey()
	raw := pub.Bytes()
	return &berthv1.RegisterRequest{
		Facts:     proto.Clone(n.facts).(*berthv1.MachineFacts),
		Csr:       csrFor(t, n.key, nil),
		BundleKey: &berthv1.BundleKey{KemId: uint32(pub.KEM().ID()), PublicKey: raw},
		Token:     token,

		IdentitySource: n.source,
	}
}

func (e *env) token(t testing.TB, req *berthv1.CreateTokenRequest) string {
	t.Helper()
	resp, err := e.adminClient().CreateToken(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetSecretToken()
}

// register registers n with a fresh token and returns the credentials.
func (e *env) register(t testing.TB, n *node, autoApprove bool) *berthv1.NodeCredentials {
	t.Helper()
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: autoApprove})
	resp, err := n.client().Register(context.Background(), n.registerRequest(t, tok))
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return resp.GetCredentials()
}

func wantCode(t *testing.T, err error, want codes.Code) { t.Helper(); grpctest.WantCode(t, err, want) }

func leafOf(t testing.TB, creds *berthv1.NodeCredentials) *x509.Certificate {
	t.Helper()
	if len(creds.GetCertificateChain()) == 0 {
		t.Fatal("no certificate chain")
	}
	c, err := x509.ParseCertificate(creds.GetCertificateChain()[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// onlyTokenUses returns the uses left of the one token the test made; it
// fails the test if there is not exactly one.
func (e *env) onlyTokenUses(t testing.TB) int32 {
	t.Helper()
	toks, err := e.adminClient().ListTokens(t.Context(), &berthv1.ListTokensRequest{})
	if err != nil || len(toks.GetTokens()) != 1 {
		t.Fatalf("ListTokens = %v, %v; want one token", toks.GetTokens(), err)
	}
	return toks.GetTokens()[0].GetUsesLeft()
}

func (e *env) nodeCount(t testing.TB) int {
	t.Helper()
	nodes, err := e.reg.ListNodes(context.Background(), regstore.NodeFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(nodes)
}

func (e *env) issuedCount(t testing.TB) int64 {
	t.Helper()
	n, err := e.cas.CountIssued(context.Background(), "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// backends runs f against SQLite and PostgreSQL.
func backends(t *testing.T, f func(t *testing.T, e *env)) {
	pgtest.OnEngines(t, func(t *testing.T, b string) { f(t, newEnv(t, b)) })
}

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
