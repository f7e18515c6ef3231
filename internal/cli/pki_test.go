package cli_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/mtls"
)

const trustDomain = "berth.local"

// testPKI is a deployment's certificates made at run time: a root, an
// intermediate, the server's certificate and client certificates, written
// to files the way berthd init leaves them for berthctl.
type testPKI struct {
	dir   string
	roots *x509.CertPool
	// server is the registration service's certificate; its chain ends
	// with the root.
	server      tls.Certificate
	root, inter issuer
	// caFile holds the root; the others are client cert and key files.
	caFile                  string
	adminCert, adminKey     string
	nodeCert, nodeKey       string
	foreignCert, foreignKey string
	// foreignCAFile holds another deployment's root.
	foreignCAFile string
}

type issuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issue signs tmpl for key with parent (nil: self-signed).
func issue(t *testing.T, tmpl *x509.Certificate, key crypto.Signer, parent *issuer) issuer {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issuer{cert: cert, key: key}
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

func leafTemplate(cn string, uri *url.URL, usage ...x509.ExtKeyUsage) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: usage,
	}
	if uri != nil {
		tmpl.URIs = []*url.URL{uri}
	}
	return tmpl
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir, roots: x509.NewCertPool()}

	root := issue(t, caTemplate("berth test root"), newKey(t), nil)
	inter := issue(t, caTemplate("berth test intermediate"), newKey(t), &root)
	p.roots.AddCert(root.cert)
	p.caFile = writePEM(t, dir, "ca.crt", root.cert)

	p.root, p.inter = root, inter
	p.server = p.serverFor(t, "registration")

	client := func(name string, tmpl *x509.Certificate, parent issuer) (string, string) {
		c := issue(t, tmpl, newKey(t), &parent)
		certs := []*x509.Certificate{c.cert}
		if parent.cert.Subject.String() != parent.cert.Issuer.String() {
			certs = append(certs, parent.cert) // an intermediate goes with the leaf
		}
		return writePEM(t, dir, name+".crt", certs...), writeKey(t, dir, name+".key", c.key)
	}
	p.adminCert, p.adminKey = client("admin",
		leafTemplate("admin", mtls.AdminURI(trustDomain, "admin"), x509.ExtKeyUsageClientAuth), inter)
	p.nodeCert, p.nodeKey = client("node",
		leafTemplate("n-1", mtls.NodeURI(trustDomain, "n-1"), x509.ExtKeyUsageClientAuth), inter)

	// An admin certificate from another deployment's CA.
	other := issue(t, caTemplate("another root"), newKey(t), nil)
	p.foreignCAFile = writePEM(t, dir, "foreign-ca.crt", other.cert)
	p.foreignCert, p.foreignKey = client("foreign",
		leafTemplate("admin", mtls.AdminURI(trustDomain, "admin"), x509.ExtKeyUsageClientAuth), other)
	return p
}

// serverFor issues a server certificate carrying the identity of each of
// services, as a berthd serving them on one listener presents.
func (p *testPKI) serverFor(t *testing.T, services ...string) tls.Certificate {
	t.Helper()
	tmpl := leafTemplate("berth", nil, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	for _, s := range services {
		tmpl.URIs = append(tmpl.URIs, mtls.ServiceURI(trustDomain, s))
	}
	tmpl.DNSNames = []string{"localhost"}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	srv := issue(t, tmpl, newKey(t), &p.inter)
	return tls.Certificate{
		Certificate: [][]byte{srv.cert.Raw, p.inter.cert.Raw, p.root.cert.Raw},
		PrivateKey:  srv.key,
		Leaf:        srv.cert,
	}
}

func writePEM(t *testing.T, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeKey(t *testing.T, dir, name string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
