package registration

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// preload fills the store with n approved nodes (random keys, a stored
// certificate) so that lookups run against a realistically sized index.
// They are registered through the store's own RegisterNode, in parallel.
func preload(b *testing.B, e *env, n int) {
	b.Helper()
	ctx := context.Background()
	now := e.clock.Now()
	tok := regstore.Token{ID: "preload1", SecretHash: make([]byte, 32), ExpiresAt: now.Add(time.Hour), UsesLeft: n, CreatedAt: now}
	if err := e.reg.CreateToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	cert := regstore.Cert{Serial: "01", NotBefore: now, NotAfter: now.Add(30 * 24 * time.Hour), Chain: [][]byte{make([]byte, 600), make([]byte, 500)}}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				key := make([]byte, 32)
				rand.Read(key)
				node := regstore.Node{
					ID: ident.NewNodeID(), Status: regstore.StatusApproved, KeySHA256: key,
					HardwareUUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Hostname: "n",
					BundleKEM: 0x647a, BundleKey: make([]byte, 32), CSR: []byte{1}, CreatedAt: now, UpdatedAt: now,
				}
				if _, err := e.reg.RegisterNode(ctx, tok.ID, now, node, ""); err != nil {
					errs <- err
					return
				}
				if err := install(ctx, e.reg, node, cert, now); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// install gives approved node n certificate c the way Register does: it
// opens an issuance for the node's key and completes it with c.
func install(ctx context.Context, s regstore.Store, n regstore.Node, c regstore.Cert, now time.Time) error {
	in := regstore.Intent{RequestID: "install-" + n.ID, NodeID: n.ID, KeySHA256: n.KeySHA256, CreatedAt: now}
	if _, claimed, err := s.ClaimIssuance(ctx, in); err != nil || !claimed {
		return fmt.Errorf("claim issuance for %s: claimed %v, %v", n.ID, claimed, err)
	}
	_, _, err := s.CompleteIssuance(ctx, in.RequestID, c, now)
	return err
}

// BenchmarkResume measures the boot path against the real services (CA,
// registration, store) over loopback mTLS, with 1,000 and 100,000 nodes
// registered, on SQLite and PostgreSQL:
//
//   - reused: Resume calls on established connections, from parallel
//     clients: the server-side cost and throughput of Resume itself;
//   - boot: what a booting node pays, a fresh TLS handshake plus Resume.
func BenchmarkResume(b *testing.B) {
	for _, be := range []backend{sqliteBackend, postgresBackend} {
		for _, size := range []int{1_000, 100_000} {
			b.Run(fmt.Sprintf("%s/nodes=%d", be, size), func(b *testing.B) {
				e := newEnv(b, be)
				preload(b, e, size)
				nodes := make([]*node, 32)
				for i := range nodes {
					nodes[i] = e.newNode(fmt.Sprintf("10000000-0000-4000-8000-%012d", i))
					e.register(b, nodes[i], true)
				}
				before := e.issuedCount(b)
				b.Run("reused", func(b *testing.B) {
					var i atomic.Int64
					b.SetParallelism(4)
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							n := nodes[int(i.Add(1))%len(nodes)]
							if _, err := n.client().Resume(context.Background(), &berthv1.ResumeRequest{}); err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resumes/s")
				})
				boot := func(b *testing.B) {
					pin, _ := mtls.ParseCAHash(e.layout.CAHash())
					n := nodes[0]
					self, err := mtls.SelfSigned(n.key)
					if err != nil {
						b.Fatal(err)
					}
					b.ResetTimer()
					for range b.N {
						conn, err := rpc.Dial(rpc.ClientConfig{Addr: e.addr, TLS: mtls.PinnedClientConfig(self, pin, "127.0.0.1")})
						if err != nil {
							b.Fatal(err)
						}
						if _, err := berthv1.NewRegistrationServiceClient(conn).Resume(context.Background(), &berthv1.ResumeRequest{}); err != nil {
							b.Fatal(err)
						}
						conn.Close()
					}
				}
				// boot-hop: each Resume asks the bundle store over the
				// registration service's connection; boot: as berthd,
				// through the BundleCache.
				b.Run("boot-hop", boot)
				_, uncache := e.cacheBundles(b)
				b.Run("boot", boot)
				b.Run("reused-cached", func(b *testing.B) {
					var i atomic.Int64
					b.SetParallelism(4)
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							n := nodes[int(i.Add(1))%len(nodes)]
							if _, err := n.client().Resume(context.Background(), &berthv1.ResumeRequest{}); err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resumes/s")
				})
				uncache()
				if after := e.issuedCount(b); after != before {
					b.Fatalf("Resume issued %d certificates", after-before)
				}
			})
		}
	}
}

// BenchmarkBootWithBundle is what a booting node pays to come back with its
// configuration: a fresh TLS handshake, Resume, the sealed bundle, and
// opening it. "inline" gets the bundle inside the Resume response (the
// registration service fetches it over its own long-lived connection);
// "separate" makes a second mTLS connection with the node certificate to
// the bundle store, as a node would without inlining.
func BenchmarkBootWithBundle(b *testing.B) {
	for _, size := range []int{4 << 10, 256 << 10} {
		for _, inline := range []bool{true, false} {
			name := fmt.Sprintf("%dKiB/separate", size>>10)
			if inline {
				name = fmt.Sprintf("%dKiB/inline", size>>10)
			}
			b.Run(name, func(b *testing.B) {
				e := newEnvWith(b, sqliteBackend, inline)
				n := e.newNode(uuidA)
				creds := e.register(b, n, true)
				content := make([]byte, size)
				rand.Read(content) // incompressible: the sealed size is the real size
				info := e.putBundle(b, creds.GetNodeId(), []bundle.File{{Path: "etc/berth/config", Mode: 0o600, Content: content}})
				verify := e.nodeVerifier(creds.GetNodeId(), info.GetVersion())
				pin, _ := mtls.ParseCAHash(e.layout.CAHash())
				self, err := mtls.SelfSigned(n.key)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					sealed := bootOnce(b, e, n, self, pin, inline)
					if _, err := bundle.Open(n.bundleKey, sealed, verify); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// bootOnce resumes over a new connection and returns the sealed bundle.
func bootOnce(b *testing.B, e *env, n *node, self tls.Certificate, pin [32]byte, inline bool) []byte {
	ctx := context.Background()
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: e.addr, TLS: mtls.PinnedClientConfig(self, pin, "127.0.0.1")})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	resp, err := berthv1.NewRegistrationServiceClient(conn).Resume(ctx, &berthv1.ResumeRequest{})
	if err != nil {
		b.Fatal(err)
	}
	creds := resp.GetCredentials()
	if inline {
		return creds.GetBundle().GetSealed()
	}
	roots := x509.NewCertPool()
	for _, der := range creds.GetTrustBundle() {
		c, _ := x509.ParseCertificate(der)
		roots.AddCert(c)
	}
	cfg := mtls.ClientConfig(tls.Certificate{Certificate: creds.GetCertificateChain(), PrivateKey: n.key}, roots)
	cfg.ServerName = "127.0.0.1"
	bconn, err := rpc.Dial(rpc.ClientConfig{Addr: e.addr, TLS: cfg})
	if err != nil {
		b.Fatal(err)
	}
	defer bconn.Close()
	got, err := berthv1.NewBundleServiceClient(bconn).GetBundle(ctx, &berthv1.GetBundleRequest{})
	if err != nil {
		b.Fatal(err)
	}
	return got.GetBundle().GetSealed()
}

// BenchmarkRegisterWrites measures the store writes of one registration on
// SQLite, where their cost is the engine's durability setting: RegisterNode
// (the node row and the token use), then ClaimIssuance and CompleteIssuance
// (install), each its own committed transaction, as Register issues them. writers is goroutines per
// CPU; SQLite serialises them on its write lock, so each commit pays its
// own sync either way.
func BenchmarkRegisterWrites(b *testing.B) {
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprintf("sqlite/writers=%d", par), func(b *testing.B) {
			e := newEnv(b, sqliteBackend)
			ctx := context.Background()
			now := e.clock.Now()
			tok := regstore.Token{ID: "benchreg", SecretHash: make([]byte, 32), ExpiresAt: now.Add(time.Hour), UsesLeft: 1 << 30, CreatedAt: now}
			if err := e.reg.CreateToken(ctx, tok); err != nil {
				b.Fatal(err)
			}
			cert := regstore.Cert{Serial: "01", NotBefore: now, NotAfter: now.Add(30 * 24 * time.Hour), Chain: [][]byte{make([]byte, 600), make([]byte, 500)}}
			var next atomic.Int64
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					key := make([]byte, 32)
					rand.Read(key)
					node := regstore.Node{
						ID: ident.NewNodeID(), Status: regstore.StatusApproved, KeySHA256: key,
						HardwareUUID: fmt.Sprintf("20000000-0000-4000-8000-%012d", i), Hostname: "n",
						BundleKEM: 0x647a, BundleKey: make([]byte, 32), CSR: []byte{1}, CreatedAt: now, UpdatedAt: now,
					}
					if _, err := e.reg.RegisterNode(ctx, tok.ID, now, node, ""); err != nil {
						b.Error(err)
						return
					}
					if err := install(ctx, e.reg, node, cert, now); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
		})
	}
}

// BenchmarkRegister measures one node's first registration end to end, as
// the node sees it: a Register call over loopback mTLS with an
// auto-approve token, through the real CA (a signature, the issued log)
// and the store writes of issuance, on SQLite and PostgreSQL. Making the
// node (key, CSR, connection and its TLS handshake) is not timed.
func BenchmarkRegister(b *testing.B) {
	for _, be := range []backend{sqliteBackend, postgresBackend} {
		b.Run(be, func(b *testing.B) {
			e := newEnv(b, be)
			tok := e.token(b, &berthv1.CreateTokenRequest{AutoApprove: true, Uses: 1_000_000})
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				n := e.newNode(fmt.Sprintf("30000000-0000-4000-8000-%012d", i))
				req := n.registerRequest(b, tok)
				ready(b, n.conn)
				b.StartTimer()
				resp, err := n.client().Register(ctx, req)
				if err != nil || len(resp.GetCredentials().GetCertificateChain()) == 0 {
					b.Fatalf("Register: %v, %v", resp, err)
				}
			}
		})
	}
}

// ready connects conn and waits until it is, so that a benchmark does not
// time the handshake.
func ready(b *testing.B, conn *grpc.ClientConn) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn.Connect()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			b.Fatalf("connection stuck in %v", s)
		}
	}
}
