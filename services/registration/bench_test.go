package registration

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
					ID: newNodeID(), Status: regstore.StatusApproved, KeySHA256: key,
					HardwareUUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Hostname: "n",
					BundleKEM: 0x647a, BundleKey: make([]byte, 32), CSR: []byte{1}, CreatedAt: now, UpdatedAt: now,
				}
				if _, err := e.reg.RegisterNode(ctx, tok.ID, now, node, ""); err != nil {
					errs <- err
					return
				}
				if _, err := e.reg.SetCertificate(ctx, node.ID, "", cert, now); err != nil {
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
				b.Run("boot", func(b *testing.B) {
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
				})
				if after := e.issuedCount(b); after != before {
					b.Fatalf("Resume issued %d certificates", after-before)
				}
			})
		}
	}
}
