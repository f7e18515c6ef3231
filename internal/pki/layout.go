// Package pki is berth's certificate authority core, free of any transport.
// It creates a deployment's PKI on disk (berthd init), one directory per
// role holding only what that role needs, loads a role's credentials back
// for the services, rotates the intermediate, and signs node certificates
// under berth's name policy. The gRPC adapter lives in services/ca.
package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/pemutil"

	"github.com/berth-dev/berth/internal/mtls"
)

// The PKI directory made by Init:
//
//	DIR/ca.crt, DIR/trust-domain   the public trust bundle and trust domain
//	DIR/root/root.key              the root key: take it offline
//	DIR/ca/                        the CA role: service.crt/.key, intermediate.crt/.key
//	DIR/registration/, DIR/bundles/, DIR/heartbeat/, DIR/api/
//	                               service.crt/.key of that service
//	DIR/admin/                     admin.crt/.key, for berthctl
//
// Every role directory also holds ca.crt and trust-domain, so that it is
// complete on its own: a container mounts just its role's directory.

// File names inside a PKI directory and its role directories.
const (
	// RootCertFile is the trust bundle: the root certificate.
	RootCertFile    = "ca.crt"
	TrustDomainFile = "trust-domain"
	// ServiceCertFile is a service's chain (leaf, intermediate, root).
	ServiceCertFile = "service.crt"
	ServiceKeyFile  = "service.key"
	// AdminCertFile is the admin client chain (leaf, intermediate).
	AdminCertFile        = "admin.crt"
	AdminKeyFile         = "admin.key"
	IntermediateCertFile = "intermediate.crt"
	IntermediateKeyFile  = "intermediate.key"
	RootKeyFile          = "root.key"
	// RootDir holds the root key, and nothing any service reads.
	RootDir = "root"
)

// Names of the services that get a certificate and a directory from Init.
const (
	ServiceRegistration = mtls.ServiceRegistration
	ServiceCA           = mtls.ServiceCA
	ServiceBundles      = mtls.ServiceBundles
	ServiceHeartbeat    = mtls.ServiceHeartbeat
	ServiceAPI          = mtls.ServiceAPI
)

// RoleAdmin is the directory of the admin client credential.
const RoleAdmin = "admin"

// AdminName is the name in the admin certificate's URI SAN.
const AdminName = "admin"

// ServiceNames returns the services Init makes certificates for.
func ServiceNames() []string {
	return []string{ServiceCA, ServiceRegistration, ServiceBundles, ServiceHeartbeat, ServiceAPI}
}

// Roles returns every role directory Init writes.
func Roles() []string { return append(ServiceNames(), RoleAdmin) }

// ErrOldLayout means a directory holds berth's first PKI layout, every key
// in one directory. Init moves it into role directories.
var ErrOldLayout = errors.New("PKI directory has the old single-directory layout")

// Layout is a whole PKI directory made by Init. Services do not read it:
// each opens its own role with OpenRole.
type Layout struct {
	// Dir is the directory holding the role directories.
	Dir string
	// TrustDomain is the trust domain every berth URI SAN is in.
	TrustDomain string
	// Root and Intermediate are the CA certificates.
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	// Existing is true when Init found a complete PKI and left it untouched
	// (but for Added roles).
	Existing bool
	// Migrated is true when Init moved a PKI of the old single-directory
	// layout into role directories.
	Migrated bool
	// Added lists the roles Init issued a directory for in an existing PKI.
	Added []string
	// RootKeyOnline is true while DIR/root/root.key is there.
	RootKeyOnline bool
}

// Load reads a whole PKI directory made by Init.
func Load(dir string) (*Layout, error) {
	if isOldLayout(dir) {
		return nil, oldLayoutError(dir)
	}
	for _, f := range []string{ServiceCertFile, AdminCertFile} {
		if p := filepath.Join(dir, f); exists(p) {
			return nil, fmt.Errorf("%s is one role's directory (it holds %s), not the whole PKI directory made by berthd init", dir, p)
		}
	}
	l := &Layout{Dir: dir}
	if missing := missingIn(dir, topFiles()); len(missing) > 0 {
		return nil, fmt.Errorf("load PKI from %s: %w: missing %s", dir, ErrIncomplete, strings.Join(missing, ", "))
	}
	td, root, err := readTrust(dir)
	if err != nil {
		return nil, err
	}
	l.TrustDomain, l.Root = td, root
	interPath := l.path(ServiceCA, IntermediateCertFile)
	if l.Intermediate, err = readCert(interPath); err != nil {
		return nil, err
	}
	if err := l.Intermediate.CheckSignatureFrom(l.Root); err != nil {
		return nil, fmt.Errorf("%s is not signed by the root in %s: %w", interPath, l.RootPath(), err)
	}
	l.RootKeyOnline = exists(l.RootKeyPath())
	return l, nil
}

func (l *Layout) path(elem ...string) string {
	return filepath.Join(append([]string{l.Dir}, elem...)...)
}

// RoleDir is the directory of a role (a service name or RoleAdmin).
func (l *Layout) RoleDir(role string) string { return l.path(role) }

// RootPath is the published trust bundle, DIR/ca.crt.
func (l *Layout) RootPath() string { return l.path(RootCertFile) }

// RootKeyPath is where Init writes the root key, DIR/root/root.key.
func (l *Layout) RootKeyPath() string { return l.path(RootDir, RootKeyFile) }

// AdminCAPath is the trust bundle in the admin directory (BERTH_CA).
func (l *Layout) AdminCAPath() string { return l.path(RoleAdmin, RootCertFile) }

// AdminCertPath is the admin client certificate chain (BERTH_CERT).
func (l *Layout) AdminCertPath() string { return l.path(RoleAdmin, AdminCertFile) }

// AdminKeyPath is the admin client private key (BERTH_KEY).
func (l *Layout) AdminKeyPath() string { return l.path(RoleAdmin, AdminKeyFile) }

// ServiceCertPath is a service's certificate chain: leaf, intermediate, root.
func (l *Layout) ServiceCertPath(name string) string { return l.path(name, ServiceCertFile) }

// ServiceKeyPath is a service's private key.
func (l *Layout) ServiceKeyPath(name string) string { return l.path(name, ServiceKeyFile) }

// Role opens the credentials of a role from its directory.
func (l *Layout) Role(name string) (*Role, error) { return OpenRole(l.RoleDir(name), name) }

// RootPool returns a pool holding the root.
func (l *Layout) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(l.Root)
	return p
}

// CAHash is the root's pin, "sha256:HEX", as berth-agent takes it with --ca-hash.
func (l *Layout) CAHash() string { return mtls.CAHash(l.Root) }

// SignerConfig opens the CA role and its intermediate key; see Role.SignerConfig.
func (l *Layout) SignerConfig() (SignerConfig, error) {
	r, err := l.Role(ServiceCA)
	if err != nil {
		return SignerConfig{}, err
	}
	return r.SignerConfig()
}

// topFiles are the public files at the top of a PKI directory.
func topFiles() []string { return []string{RootCertFile, TrustDomainFile} }

// roleFiles lists the files of a role's directory.
func roleFiles(role string) []string {
	files := []string{RootCertFile, TrustDomainFile}
	switch role {
	case RoleAdmin:
		return append(files, AdminCertFile, AdminKeyFile)
	case ServiceCA:
		return append(files, ServiceCertFile, ServiceKeyFile, IntermediateCertFile, IntermediateKeyFile)
	}
	return append(files, ServiceCertFile, ServiceKeyFile)
}

// layoutFiles lists every file of a complete PKI but the root key,
// relative to its directory.
func layoutFiles() []string {
	files := topFiles()
	for _, r := range Roles() {
		for _, f := range roleFiles(r) {
			files = append(files, filepath.Join(r, f))
		}
	}
	return files
}

// missingIn returns the files (relative to dir) that do not exist.
func missingIn(dir string, files []string) []string {
	var missing []string
	for _, f := range files {
		if !exists(filepath.Join(dir, f)) {
			missing = append(missing, f)
		}
	}
	return missing
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// oldLayoutFiles are the files of berth's first layout that the new one
// does not have at the top of the directory; services/ held the service
// certificates and keys.
func oldLayoutFiles() []string {
	return []string{RootKeyFile, IntermediateCertFile, IntermediateKeyFile, AdminCertFile, AdminKeyFile}
}

const oldServicesDir = "services"

// isOldLayout reports whether dir holds (part of) the old layout: its
// services/ directory or a root key beside the trust bundle. A migration
// removes these last, so that one stopped half way is still recognised.
func isOldLayout(dir string) bool {
	if isDir(filepath.Join(dir, oldServicesDir)) {
		return true
	}
	fi, err := os.Stat(filepath.Join(dir, RootKeyFile))
	return err == nil && fi.Mode().IsRegular()
}

func oldLayoutError(dir string) error {
	return fmt.Errorf("%s: %w (every key in one directory); run \"berthd init --dir %s\" once to move it into per-role directories, then move %s offline",
		dir, ErrOldLayout, dir, filepath.Join(dir, RootDir, RootKeyFile))
}

// readTrust reads the trust domain and the root of a directory.
func readTrust(dir string) (string, *x509.Certificate, error) {
	tdPath := filepath.Join(dir, TrustDomainFile)
	b, err := os.ReadFile(tdPath)
	if err != nil {
		return "", nil, fmt.Errorf("read trust domain: %w", err)
	}
	td := strings.TrimSpace(string(b))
	if err := ValidateTrustDomain(td); err != nil {
		return "", nil, fmt.Errorf("%s: %w", tdPath, err)
	}
	rootPath := filepath.Join(dir, RootCertFile)
	root, err := readCert(rootPath)
	if err != nil {
		return "", nil, err
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return "", nil, fmt.Errorf("%s is not a self-signed root CA certificate", rootPath)
	}
	return td, root, nil
}

// readCert reads the first certificate of a PEM file: the leaf of a chain.
func readCert(path string) (*x509.Certificate, error) {
	certs, err := pemutil.ReadCertificateBundle(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate %s: %w", path, err)
	}
	return certs[0], nil
}
