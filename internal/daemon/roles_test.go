package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
)

// deployment is berthd processes (in this test process) serving a PKI.
type deployment struct {
	layout *pki.Layout
	// addrs maps a role to the address serving it.
	addrs map[string]string
}

// newPKI makes a deployment's PKI in a temporary directory.
func newPKI(t testing.TB, td string) *pki.Layout { return grpctest.NewPKIOf(t, td) }

// ownDir copies a role's directory, and nothing else of the PKI, into a
// new directory, as a container that mounts only its own credentials.
func ownDir(t testing.TB, l *pki.Layout, role string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), role)
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(l.RoleDir(role))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(l.RoleDir(role), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// serve runs c on a loopback port (and SQLite in a temporary directory
// unless c says otherwise) until the test ends, and returns its address.
func serve(t *testing.T, c Config) string {
	t.Helper()
	c.Listen = "127.0.0.1:0"
	if c.DataDir == "" && c.DB == "" {
		c.DataDir = t.TempDir()
	}
	return start(t, c).addr
}

// startApart runs the four roles as four processes would, each from a copy
// of its own directory alone, on SQLite.
func startApart(t *testing.T, l *pki.Layout) *deployment {
	t.Helper()
	d := &deployment{layout: l, addrs: map[string]string{}}
	d.addrs[RoleCA] = serve(t, Config{Role: RoleCA, PKIDir: ownDir(t, l, RoleCA)})
	d.addrs[RoleBundles] = serve(t, Config{Role: RoleBundles, PKIDir: ownDir(t, l, RoleBundles), CAAddr: d.addrs[RoleCA]})
	d.addrs[RoleHeartbeat] = serve(t, Config{Role: RoleHeartbeat, PKIDir: ownDir(t, l, RoleHeartbeat), CAAddr: d.addrs[RoleCA]})
	d.addrs[RoleRegistration] = serve(t, Config{Role: RoleRegistration, PKIDir: ownDir(t, l, RoleRegistration),
		CAAddr: d.addrs[RoleCA], BundlesAddr: d.addrs[RoleBundles]})
	return d
}

// startAll runs every role in one process from the whole PKI directory.
func startAll(t *testing.T, l *pki.Layout) *deployment {
	t.Helper()
	addr := serve(t, Config{Role: RoleAll, PKIDir: l.Dir})
	d := &deployment{layout: l, addrs: map[string]string{}}
	for _, r := range servedRoles(RoleAll) {
		d.addrs[r] = addr
	}
	return d
}

// dial connects to the address of role presenting cert and checking, as
// every berth client does, that the server is that role's service.
func (d *deployment) dial(t testing.TB, role string, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := mtls.ExpectServer(mtls.ClientConfig(cert, d.layout.RootPool()), d.layout.TrustDomain, role)
	cfg.ServerName = "127.0.0.1"
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: d.addrs[role], TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// nodeCert issues a node certificate with the deployment's CA role.
func nodeCert(t *testing.T, l *pki.Layout, id string) tls.Certificate {
	t.Helper()
	sc, err := l.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := pki.NewSigner(sc)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := signer.Sign(context.Background(), pki.SignRequest{NodeID: id, Hostname: id, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: signed.Chain, PrivateKey: key, Leaf: signed.Leaf}
}

// foreignURICert issues, with the deployment's own intermediate, a client
// certificate whose identity is in another trust domain: the chain
// verifies, the identity does not belong here.
func foreignURICert(t *testing.T, l *pki.Layout) tls.Certificate {
	t.Helper()
	sc, err := l.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	u, _ := url.Parse("spiffe://other.example/admin/admin")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "foreign admin"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, sc.Intermediate, key.Public(), sc.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, sc.Intermediate.Raw}, PrivateKey: key}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
