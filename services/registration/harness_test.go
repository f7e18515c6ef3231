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
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/store/castore"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/services/bundles"
	"github.com/berth-dev/berth/services/ca"
)

// env is a running registration + CA server on loopback, with real
// certificates, a real store and a real CA, as berthd serve --role all.
type env struct {
	t      testing.TB
	addr   string
	layout *pki.Layout
	clock  *clock.Fake
	reg    regstore.Store
	cas    castore.Store
	bs     bundlestore.Store
	admin  *grpc.ClientConn
	svc    *Service
}

type backend string

const (
	sqliteBackend   backend = "sqlite"
	postgresBackend backend = "postgres"
)

func newEnv(t testing.TB, b backend) *env { return newEnvWith(t, b, true) }

// newEnvWith builds the env; inlineBundles false leaves the registration
// service without a bundle store, so nodes fetch bundles themselves.
func newEnvWith(t testing.TB, b backend, inlineBundles bool) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	layout, err := pki.Init(ctx, pki.InitConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, layout: layout, clock: clock.NewFake(time.Now().UTC().Truncate(time.Second))}
	switch b {
	case sqliteBackend:
		e.reg, err = regstore.NewSQLite(ctx, filepath.Join(dir, "registration.db"))
		if err == nil {
			e.cas, err = castore.NewSQLite(ctx, filepath.Join(dir, "ca.db"))
		}
		if err == nil {
			e.bs, err = bundlestore.NewSQLite(ctx, filepath.Join(dir, "bundles.db"))
		}
	case postgresBackend:
		dsn := pgtest.NewDatabase(t)
		e.reg, err = regstore.NewPostgres(ctx, dsn)
		if err == nil {
			e.cas, err = castore.NewPostgres(ctx, dsn)
		}
		if err == nil {
			e.bs, err = bundlestore.NewPostgres(ctx, dsn)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.reg.Close(); e.cas.Close(); e.bs.Close() })

	sc, err := layout.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	sc.Clock = e.clock
	signer, err := pki.NewSigner(sc)
	if err != nil {
		t.Fatal(err)
	}
	caSvc, err := ca.New(ca.Config{Signer: signer, Store: e.cas, Roots: []*x509.Certificate{layout.Root}, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	regCert, err := layout.ServiceCertificate(pki.ServiceRegistration)
	if err != nil {
		t.Fatal(err)
	}
	bundleSvc, err := bundles.New(bundles.Config{Store: e.bs})
	if err != nil {
		t.Fatal(err)
	}
	caConn := e.dial(regCert)
	var inline Bundles
	if inlineBundles {
		inline = NewGRPCBundles(caConn)
	}
	svc, err := New(Config{
		Store:       e.reg,
		CA:          NewGRPCCA(caConn),
		Bundles:     inline,
		TrustBundle: [][]byte{layout.Root.Raw},
		Endpoints:   &berthv1.Endpoints{Registration: e.addr},
		Clock:       e.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	srv := rpc.NewServer(rpc.ServerConfig{
		Name: "test", TrustDomain: layout.TrustDomain, Cert: regCert, Roots: layout.RootPool(),
		Policy: rpc.Merge(svc.Policy(), caSvc.Policy(), bundleSvc.Policy()),
	})
	bundleSvc.Register(srv)
	svc.RegisterService(srv)
	caSvc.Register(srv.Server)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	adminCert, err := layout.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	e.admin = e.dial(adminCert)
	return e
}

// dial connects with a certificate issued by the deployment's CA.
func (e *env) dial(cert tls.Certificate) *grpc.ClientConn { return e.dialAddr(cert, e.addr) }

func (e *env) dialAddr(cert tls.Certificate, addr string) *grpc.ClientConn {
	e.t.Helper()
	cfg := mtls.ClientConfig(cert, e.layout.RootPool())
	cfg.ServerName = "127.0.0.1"
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: cfg})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
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
	self, err := mtls.SelfSigned(key)
	if err != nil {
		e.t.Fatal(err)
	}
	pin, _ := mtls.ParseCAHash(e.layout.CAHash())
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: e.addr, TLS: mtls.PinnedClientConfig(self, pin, "127.0.0.1")})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	nodeSeq.Lock()
	nodeSeq.n++
	name := "node-" + string(rune('a'+nodeSeq.n%26))
	nodeSeq.Unlock()
	return &node{key: key, bundleKey: bk, conn: conn, facts: &berthv1.MachineFacts{
		HardwareUuid: uuid, Hostname: name, Macs: []string{"52:54:00:12:34:56"}, Serial: "SN-1",
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

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

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
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(string(b), func(t *testing.T) { f(t, newEnv(t, b)) })
	}
}

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
