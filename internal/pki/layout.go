// Package pki is berth's certificate authority core, free of any transport.
// It creates a deployment's PKI on disk (berthd init), loads it back for the
// services, and signs node certificates under berth's name policy. The gRPC
// adapter lives in services/ca.
package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/pemutil"

	"github.com/berth-dev/berth/internal/mtls"
)

// File names inside a PKI directory.
const (
	RootCertFile         = "ca.crt"
	RootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.crt"
	IntermediateKeyFile  = "intermediate.key"
	AdminCertFile        = "admin.crt"
	AdminKeyFile         = "admin.key"
	TrustDomainFile      = "trust-domain"
	ServicesDir          = "services"
)

// Names of the services that get a certificate from Init.
const (
	ServiceRegistration = "registration"
	ServiceCA           = "ca"
	ServiceBundles      = "bundles"
	ServiceHeartbeat    = "heartbeat"
)

// AdminName is the name in the admin certificate's URI SAN.
const AdminName = "admin"

// ServiceNames returns the services Init makes certificates for.
func ServiceNames() []string {
	return []string{ServiceRegistration, ServiceCA, ServiceBundles, ServiceHeartbeat}
}

// Layout is a PKI directory made by Init.
type Layout struct {
	// Dir is the directory holding the files.
	Dir string
	// TrustDomain is the trust domain every berth URI SAN is in.
	TrustDomain string
	// Root and Intermediate are the CA certificates.
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	// Existing is true when Init found a complete PKI and left it untouched.
	Existing bool
}

// Load reads a PKI directory made by Init.
func Load(dir string) (*Layout, error) {
	if missing := missingFiles(dir); len(missing) > 0 {
		return nil, fmt.Errorf("load PKI from %s: %w: missing %s", dir, ErrIncomplete, strings.Join(missing, ", "))
	}
	td, err := os.ReadFile(filepath.Join(dir, TrustDomainFile))
	if err != nil {
		return nil, fmt.Errorf("load PKI: %w", err)
	}
	l := &Layout{Dir: dir, TrustDomain: strings.TrimSpace(string(td))}
	if err := ValidateTrustDomain(l.TrustDomain); err != nil {
		return nil, fmt.Errorf("load PKI from %s: %w", dir, err)
	}
	if l.Root, err = pemutil.ReadCertificate(l.RootPath()); err != nil {
		return nil, fmt.Errorf("load PKI root: %w", err)
	}
	if l.Intermediate, err = pemutil.ReadCertificate(l.path(IntermediateCertFile)); err != nil {
		return nil, fmt.Errorf("load PKI intermediate: %w", err)
	}
	if err := l.Intermediate.CheckSignatureFrom(l.Root); err != nil {
		return nil, fmt.Errorf("load PKI from %s: intermediate is not signed by the root: %w", dir, err)
	}
	return l, nil
}

func (l *Layout) path(elem ...string) string {
	return filepath.Join(append([]string{l.Dir}, elem...)...)
}

// RootPath is the root certificate (the trust bundle), ca.crt.
func (l *Layout) RootPath() string { return l.path(RootCertFile) }

// ServiceCertPath is a service's certificate chain: leaf, intermediate, root.
func (l *Layout) ServiceCertPath(name string) string { return l.path(ServicesDir, name+".crt") }

// ServiceKeyPath is a service's private key.
func (l *Layout) ServiceKeyPath(name string) string { return l.path(ServicesDir, name+".key") }

// AdminCertPath is the admin client certificate chain: leaf, intermediate.
func (l *Layout) AdminCertPath() string { return l.path(AdminCertFile) }

// AdminKeyPath is the admin client private key.
func (l *Layout) AdminKeyPath() string { return l.path(AdminKeyFile) }

// ServiceCertificate loads a service's TLS certificate. Its chain ends with
// the root, so that nodes can check the root against their pinned CA hash.
func (l *Layout) ServiceCertificate(name string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(l.ServiceCertPath(name), l.ServiceKeyPath(name))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load %s service certificate: %w", name, err)
	}
	return c, nil
}

// AdminCertificate loads the admin client certificate.
func (l *Layout) AdminCertificate() (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(l.AdminCertPath(), l.AdminKeyPath())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load admin certificate: %w", err)
	}
	return c, nil
}

// RootPool returns a pool holding the root.
func (l *Layout) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(l.Root)
	return p
}

// CAHash is the root's pin, "sha256:HEX", as berth-agent takes it with --ca-hash.
func (l *Layout) CAHash() string { return mtls.CAHash(l.Root) }

// SignerConfig loads the intermediate key and returns a SignerConfig for
// this PKI; the caller may still set Lifetime, Clock and AllowedHostDomains.
func (l *Layout) SignerConfig() (SignerConfig, error) {
	key, err := readSigner(l.path(IntermediateKeyFile))
	if err != nil {
		return SignerConfig{}, err
	}
	return SignerConfig{Intermediate: l.Intermediate, Key: key, Root: l.Root, TrustDomain: l.TrustDomain}, nil
}

func readSigner(path string) (crypto.Signer, error) {
	k, err := pemutil.Read(path)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("read key %s: %T is not a private key", path, k)
	}
	return s, nil
}

// pkiFiles lists every file of a complete PKI, relative to its directory.
func pkiFiles() []string {
	files := []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile, AdminCertFile, AdminKeyFile}
	for _, s := range ServiceNames() {
		files = append(files, filepath.Join(ServicesDir, s+".crt"), filepath.Join(ServicesDir, s+".key"))
	}
	return append(files, TrustDomainFile)
}

func missingFiles(dir string) []string {
	var missing []string
	for _, f := range pkiFiles() {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing = append(missing, f)
		}
	}
	return missing
}
