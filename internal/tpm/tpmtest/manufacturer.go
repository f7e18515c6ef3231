package tpmtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Manufacturer is a TPM vendor's certificate authority made for a test: a
// root and an issuing intermediate. swtpm_setup, through swtpm_localca,
// signs EK certificates with the intermediate, so a test controls which CA
// an EK certificate chains to.
type Manufacturer struct {
	// Root is the self-signed root, the trust anchor.
	Root *x509.Certificate
	// Issuer is the intermediate that signs EK certificates.
	Issuer *x509.Certificate
	// Bundle is Root and Issuer in PEM, as an operator's --ek-ca file
	// would hold them.
	Bundle []byte

	dir string // swtpm_localca's state: issuer key, cert, serial counter
}

// NewManufacturer makes a manufacturer CA named name.
func NewManufacturer(t testing.TB, name string) *Manufacturer {
	t.Helper()
	rootKey := newKey(t)
	root := newCert(t, &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{name}, CommonName: name + " EK Root CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, &rootKey.PublicKey, rootKey)
	issuerKey := newKey(t)
	issuer := newCert(t, &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{name}, CommonName: name + " EK Issuing CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, root, &issuerKey.PublicKey, rootKey)

	m := &Manufacturer{Root: root, Issuer: issuer, dir: t.TempDir()}
	m.Bundle = append(pemCert(root), pemCert(issuer)...)
	der, err := x509.MarshalECPrivateKey(issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	m.write(t, "signkey.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	m.write(t, "issuercert.pem", pemCert(issuer))
	m.write(t, "localca.conf", fmt.Appendf(nil,
		"statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", m.dir))
	m.write(t, "localca.options", []byte("--platform-manufacturer berth-test\n--platform-version 1\n--platform-model swtpm\n"))
	m.write(t, "swtpm_setup.conf", fmt.Appendf(nil,
		"create_certs_tool = swtpm_localca\ncreate_certs_tool_config = %[1]s/localca.conf\ncreate_certs_tool_options = %[1]s/localca.options\nactive_pcr_banks = sha256\n", m.dir))
	return m
}

// Provision manufactures a TPM state directory the way swtpm_setup does
// for a virtual machine: an RSA 2048 EK (persistent at 0x81010001) and an
// ECC P-384 EK, each with a certificate from m in NV, and a platform
// certificate. Start it with StartDir.
func Provision(t testing.TB, m *Manufacturer) string {
	t.Helper()
	Require(t, "swtpm", "swtpm_setup", "swtpm_localca")
	dir := stateDir(t)
	log := filepath.Join(filepath.Dir(dir), "swtpm_setup.log")
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", dir,
		"--create-ek-cert", "--create-platform-cert",
		"--config", filepath.Join(m.dir, "swtpm_setup.conf"), "--logfile", log)
	if out, err := cmd.CombinedOutput(); err != nil {
		logText, _ := os.ReadFile(log)
		t.Fatalf("swtpm_setup: %v\n%s\n%s", err, out, logText)
	}
	return dir
}

// StartProvisioned is Provision followed by StartDir.
func StartProvisioned(t testing.TB, m *Manufacturer, opts ...Option) *Sim {
	t.Helper()
	return StartDir(t, Provision(t, m), opts...)
}

func (m *Manufacturer) write(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(m.dir, name), data, 0o600); err != nil {
		t.Fatal(err)
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

func newCert(t testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	if parent == nil {
		parent = tmpl
	}
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

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
