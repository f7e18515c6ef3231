package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

const testTrustDomain = "berth.test"

// testPKI is a real root → intermediate CA made at run time, with a
// certificate per service whose chain includes the root, as berth servers
// send; server is the registration service's.
type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	server            tls.Certificate
	servers           map[string]tls.Certificate
	serial            int64
	mu                sync.Mutex
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: newKey(t), interKey: newKey(t), serial: 100}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	p.root = mustCert(t, rootTmpl, rootTmpl, p.rootKey.Public(), p.rootKey)
	p.inter = mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "berth test intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign,
	}, p.root, p.interKey.Public(), p.rootKey)
	p.servers = map[string]tls.Certificate{}
	for i, name := range []string{mtls.ServiceRegistration, mtls.ServiceBundles, mtls.ServiceHeartbeat} {
		srvKey := newKey(t)
		srv := mustCert(t, &x509.Certificate{
			SerialNumber: big.NewInt(int64(3 + i)), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			URIs:        []*url.URL{mtls.ServiceURI(testTrustDomain, name)},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}, p.inter, srvKey.Public(), p.interKey)
		p.servers[name] = tls.Certificate{Certificate: [][]byte{srv.Raw, p.inter.Raw, p.root.Raw}, PrivateKey: srvKey, Leaf: srv}
	}
	p.server = p.servers[mtls.ServiceRegistration]
	return p
}

func (p *testPKI) caHash() string { return mtls.CAHash(p.root) }

// issue signs a node certificate for pub, backdated as berth's CA does,
// valid for life from now.
func (p *testPKI) issue(t testing.TB, pub crypto.PublicKey, nodeID string, now time.Time, life time.Duration) [][]byte {
	t.Helper()
	p.mu.Lock()
	p.serial++
	serial := p.serial
	p.mu.Unlock()
	leaf := mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "node-1"},
		NotBefore: now.Add(-mtls.NodeBackdate), NotAfter: now.Add(life),
		DNSNames:    []string{"node-1"},
		URIs:        []*url.URL{mtls.NodeURI(testTrustDomain, nodeID)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.inter, pub, p.interKey)
	return [][]byte{leaf.Raw, p.inter.Raw}
}

// fakeRegistration is a hand-written RegistrationServiceServer; each test
// fills in the calls it expects.
type fakeRegistration struct {
	berthv1.UnimplementedRegistrationServiceServer
	register func(context.Context, *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error)
	resume   func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error)
	renew    func(context.Context, *berthv1.RenewRequest) (*berthv1.RenewResponse, error)

	mu    sync.Mutex
	calls []string
	peers []mtls.Identity
}

func (f *fakeRegistration) record(ctx context.Context, name string) {
	id, _, _ := mtls.PeerIdentity(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	f.peers = append(f.peers, id)
}

func (f *fakeRegistration) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeRegistration) Register(ctx context.Context, r *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
	f.record(ctx, "Register")
	return f.register(ctx, r)
}

func (f *fakeRegistration) Resume(ctx context.Context, r *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
	f.record(ctx, "Resume")
	return f.resume(ctx, r)
}

func (f *fakeRegistration) Renew(ctx context.Context, r *berthv1.RenewRequest) (*berthv1.RenewResponse, error) {
	f.record(ctx, "Renew")
	return f.renew(ctx, r)
}

// serve runs fake over real TLS on lis with berth's server credentials.
func serve(t *testing.T, p *testPKI, fake *fakeRegistration, lis net.Listener) {
	t.Helper()
	serveGRPC(t, p.root, p.server, lis, func(s *grpc.Server) { berthv1.RegisterRegistrationServiceServer(s, fake) })
}

// serveBundles runs a fake bundle store over real TLS on lis.
func serveBundles(t *testing.T, p *testPKI, fake *fakeBundles, lis net.Listener) {
	t.Helper()
	serveGRPC(t, p.root, p.servers[mtls.ServiceBundles], lis, func(s *grpc.Server) { berthv1.RegisterBundleServiceServer(s, fake) })
}

// serveGRPC runs a server with berth's server credentials: cert, and
// client chains verified against root.
func serveGRPC(t *testing.T, root *x509.Certificate, cert tls.Certificate, lis net.Listener, register func(*grpc.Server)) {
	t.Helper()
	serveGRPCWith(t, root, mtls.ServerConfig(cert), lis, register)
}

// serveGRPCWith is serveGRPC with the server's TLS configuration.
func serveGRPCWith(t *testing.T, root *x509.Certificate, cfg *tls.Config, lis net.Listener, register func(*grpc.Server)) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(root)
	creds := mtls.NewServerCredentials(credentials.NewTLS(cfg), testTrustDomain, roots)
	s := grpc.NewServer(grpc.Creds(creds))
	register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
}

// fakeBundles is a hand-written BundleServiceServer. Like the real one it
// serves only callers with a node certificate issued by the deployment.
// GetBundle answers NotFound unless get is set.
type fakeBundles struct {
	berthv1.UnimplementedBundleServiceServer
	get func(context.Context) (*berthv1.GetBundleResponse, error)
	put func(context.Context, *berthv1.PutBundleRequest) (*berthv1.PutBundleResponse, error)
	// versions answers GetBundleVersions; nil says the node has none and
	// the next version is 1.
	versions func(context.Context) (*berthv1.GetBundleVersionsResponse, error)

	mu    sync.Mutex
	calls []string
	peers []mtls.Identity
	puts  []*berthv1.PutBundleRequest
}

func (f *fakeBundles) record(ctx context.Context, name string) error {
	id, verr, ok := mtls.PeerIdentity(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	f.peers = append(f.peers, id)
	if !ok || verr != nil || id.Kind != mtls.KindNode {
		return status.Error(codes.Unauthenticated, "caller is not a node")
	}
	return nil
}

func (f *fakeBundles) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBundles) Puts() []*berthv1.PutBundleRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*berthv1.PutBundleRequest(nil), f.puts...)
}

func (f *fakeBundles) GetBundle(ctx context.Context, _ *berthv1.GetBundleRequest) (*berthv1.GetBundleResponse, error) {
	if err := f.record(ctx, "GetBundle"); err != nil {
		return nil, err
	}
	if f.get == nil {
		return nil, status.Error(codes.NotFound, "no bundle")
	}
	return f.get(ctx)
}

func (f *fakeBundles) PutBundle(ctx context.Context, r *berthv1.PutBundleRequest) (*berthv1.PutBundleResponse, error) {
	if err := f.record(ctx, "PutBundle"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.puts = append(f.puts, r)
	f.mu.Unlock()
	if f.put == nil {
		return nil, status.Error(codes.Unimplemented, "no uploads in this test")
	}
	return f.put(ctx, r)
}

func (f *fakeBundles) GetBundleVersions(ctx context.Context, _ *berthv1.GetBundleVersionsRequest) (*berthv1.GetBundleVersionsResponse, error) {
	if err := f.record(ctx, "GetBundleVersions"); err != nil {
		return nil, err
	}
	if f.versions == nil {
		return &berthv1.GetBundleVersionsResponse{Next: 1}, nil
	}
	return f.versions(ctx)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// fakeClock advances by exactly what the agent sleeps, and records the
// sleeps, with hooks that let a test act during one. clock.Fake, which
// waits for a test to move it, suits code that waits on timers instead.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	sleeps  []time.Duration
	onSleep func(n int, d time.Duration) error // n counts from 1
	// block, if set, runs first, with the sleep's context: it may wait for
	// something to happen meanwhile. An error ends the sleep at once,
	// without advancing the clock.
	block func(ctx context.Context, d time.Duration) error
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	block := c.block
	c.mu.Unlock()
	if block != nil {
		if err := block(ctx, d); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.sleeps = append(c.sleeps, d)
	n, hook := len(c.sleeps), c.onSleep
	c.mu.Unlock()
	if hook != nil {
		return hook(n, d)
	}
	return nil
}

// After is Sleep without a context; the agent itself only sleeps.
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	_ = c.Sleep(context.Background(), d)
	ch <- c.Now()
	return ch
}

var _ clock.Clock = (*fakeClock)(nil)

// Sleeps returns the completed sleeps.
func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

func (c *fakeClock) Slept() (n int, total time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.sleeps {
		total += d
	}
	return len(c.sleeps), total
}

var testSeed = bytes.Repeat([]byte("berth-agent test seed "), 2)

func testKeys(t *testing.T) keys.Source {
	t.Helper()
	src, err := keys.NewSeed(testSeed, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

const testUUID = "4c4c4544-0043-3310-8052-b4c04f4e4b32"

// testConfig is a --once --output json agent for server, with all machine
// facts overridden and no real sleeps.
func testConfig(t *testing.T, server, caHash string, clock *fakeClock, stdout *bytes.Buffer) Config {
	t.Helper()
	return Config{
		Server:  server,
		CAHash:  caHash,
		Token:   "tok1.secret",
		Keys:    testKeys(t),
		CertDir: t.TempDir() + "/run/berth",

		IdentitySource: keys.AssuranceSeedFile,
		Root:           t.TempDir(),
		Wait:           5 * time.Minute,
		Once:           true,
		Output:         OutputJSON,
		CmdlineFile:    t.TempDir() + "/no-cmdline",
		Facts: FactOverrides{
			HardwareUUID: testUUID,
			Hostname:     "node-1",
			Serial:       "SN123",
			MACs:         []string{"52:54:00:AB:CD:EF"},
		},
		Stdout:         stdout,
		Clock:          clock,
		Backoff:        Backoff{Rand: func(n int64) int64 { return n - 1 }}, // always the ceiling
		AttemptTimeout: 5 * time.Second,
	}
}
