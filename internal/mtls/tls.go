package mtls

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// SelfSigned makes a throwaway self-signed certificate for key, which a node
// presents to the registration service to prove it holds the key.
func SelfSigned(key crypto.Signer) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "berth node key"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign identity key: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// LoadPool reads PEM certificates from a file into a pool.
func LoadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificates", path)
	}
	return pool, nil
}

// ServerConfig is the TLS configuration of every berth service. It asks for
// any client certificate: chain verification and the self-signed bootstrap
// case are decided per connection by Credentials, so that the registration
// service can accept nodes that do not hold a certificate yet.
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
	}
}

// ClientConfig is the TLS configuration of a client holding a certificate
// issued by berth (services, admins and nodes after boot).
func ClientConfig(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
	}
}

// ErrCAPinMismatch means the server's root does not match the pinned hash.
var ErrCAPinMismatch = errors.New("server's CA does not match the pinned --ca-hash")

// PinnedClientConfig trusts exactly the root whose SPKI hash is pin. berth
// servers send their whole chain, root included, so a node with no local
// state can check the root against the pin from the kernel command line
// and then verify the chain and host name as usual: no trust on first use.
func PinnedClientConfig(cert tls.Certificate, pin [32]byte, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		ServerName:         serverName,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := VerifyPinned(cs, pin)
			return err
		},
	}
}

// VerifyPinned checks the chain a server sent (root included) against the
// root pinned by pin and the server name, as PinnedClientConfig does, and
// returns the chain it verified: leaf first, the pinned root last.
func VerifyPinned(cs tls.ConnectionState, pin [32]byte) ([]*x509.Certificate, error) {
	certs := cs.PeerCertificates
	if len(certs) < 2 {
		return nil, fmt.Errorf("%w: server sent no CA certificate", ErrCAPinMismatch)
	}
	// The pin names the root by its key, and the chain below must verify
	// under that key. The root certificate's own self-signature adds
	// nothing to that (x509 never checks a trust anchor's), so it is not
	// checked: one ECDSA verification less on every boot.
	root := certs[len(certs)-1]
	if sha256.Sum256(root.RawSubjectPublicKeyInfo) != pin {
		return nil, ErrCAPinMismatch
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range certs[1 : len(certs)-1] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{
		DNSName:       cs.ServerName,
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("verify server certificate: %w", err)
	}
	return chains[0], nil
}

// SameKey reports whether two public keys are equal.
func SameKey(a, b crypto.PublicKey) bool {
	da, err1 := x509.MarshalPKIXPublicKey(a)
	db, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}
