package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"go.step.sm/crypto/pemutil"

	"github.com/berth-dev/berth/internal/mtls"
)

// Role is the credentials of one role, read from its own directory: its
// certificate and key, the trust bundle and the trust domain. The CA role
// also has an intermediate, whose key only SignerConfig opens.
type Role struct {
	// Name is the role: a service name or RoleAdmin.
	Name string
	// Dir is the role's directory.
	Dir         string
	TrustDomain string
	// Root is the trust bundle, Dir/ca.crt.
	Root *x509.Certificate
	// Cert is the role's chain and key: leaf, intermediate and root for a
	// service (nodes pin the root from the chain a server sends); leaf and
	// intermediate for the admin.
	Cert tls.Certificate
	// Leaf is Cert's parsed leaf.
	Leaf *x509.Certificate
}

// OpenRole reads the credentials of role from dir, which is either the
// whole PKI directory made by Init (DIR/<role> is then read) or the role's
// own directory. It opens no other role's files, and never the root key or
// (but through SignerConfig) the intermediate key. Every problem is an
// error naming the file: one that is missing, unreadable, belongs to
// another role, or does not chain to the trust bundle.
func OpenRole(dir, role string) (*Role, error) {
	if !slices.Contains(Roles(), role) {
		return nil, fmt.Errorf("unknown role %q (want one of %s)", role, strings.Join(Roles(), ", "))
	}
	if isOldLayout(dir) {
		return nil, oldLayoutError(dir)
	}
	rdir, err := roleDir(dir, role)
	if err != nil {
		return nil, err
	}
	r := &Role{Name: role, Dir: rdir}
	certPath, keyPath := r.certPaths()
	// Which role a directory belongs to is the first thing to tell: given
	// the registration directory, the CA role also misses intermediate.key,
	// but the useful message is whose directory it is.
	if err := checkOwner(rdir, role, certPath); err != nil {
		return nil, err
	}
	if missing := missingIn(rdir, roleFiles(role)); len(missing) > 0 {
		for i, m := range missing {
			missing[i] = filepath.Join(rdir, m)
		}
		return nil, fmt.Errorf("%s role: %w: missing %s", role, ErrIncomplete, strings.Join(missing, ", "))
	}
	if r.TrustDomain, r.Root, err = readTrust(rdir); err != nil {
		return nil, err
	}
	if r.Cert, err = tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		return nil, fmt.Errorf("%s role: load %s with %s: %w", role, certPath, keyPath, err)
	}
	r.Leaf = r.Cert.Leaf
	if err := r.checkIdentity(certPath); err != nil {
		return nil, err
	}
	if role == ServiceCA {
		if _, err := r.intermediate(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// roleDir picks the role's directory: DIR/<role> in a whole PKI, else dir.
func roleDir(dir, role string) (string, error) {
	if d := filepath.Join(dir, role); isDir(d) {
		return d, nil
	}
	// A whole PKI without this role's directory is not the role's own.
	for _, other := range Roles() {
		if isDir(filepath.Join(dir, other)) {
			return "", fmt.Errorf("%s role: %w: missing %s", role, ErrIncomplete, filepath.Join(dir, role))
		}
	}
	if !isDir(dir) {
		return "", fmt.Errorf("%s role: PKI directory %s does not exist", role, dir)
	}
	return dir, nil
}

func (r *Role) certPaths() (cert, key string) {
	if r.Name == RoleAdmin {
		return filepath.Join(r.Dir, AdminCertFile), filepath.Join(r.Dir, AdminKeyFile)
	}
	return filepath.Join(r.Dir, ServiceCertFile), filepath.Join(r.Dir, ServiceKeyFile)
}

// checkOwner refuses another role's directory, naming the file that shows
// whose it is.
func checkOwner(dir, role, certPath string) error {
	if role != RoleAdmin {
		if p := filepath.Join(dir, AdminCertFile); exists(p) && !exists(certPath) {
			return fmt.Errorf("%s role: %s is the admin's directory (%s), not the %s service's", role, dir, p, role)
		}
	} else if p := filepath.Join(dir, ServiceCertFile); exists(p) && !exists(certPath) {
		return fmt.Errorf("admin: %s is a service's directory (%s), not the admin's", dir, p)
	}
	if !exists(certPath) {
		return nil // reported with the other missing files
	}
	leaf, err := readCert(certPath)
	if err != nil {
		return err
	}
	if !ownedBy(leaf, role) {
		return fmt.Errorf("%s role: %s is the certificate of %s, not of the %s role: give --pki-dir the whole PKI directory or the %s role's own",
			role, certPath, urisOf(leaf), role, role)
	}
	return nil
}

// ownedBy reports whether a leaf carries exactly the identity of role.
func ownedBy(leaf *x509.Certificate, role string) bool {
	if len(leaf.URIs) != 1 {
		return false
	}
	want := "/service/" + role
	if role == RoleAdmin {
		return strings.HasPrefix(leaf.URIs[0].Path, "/admin/")
	}
	return leaf.URIs[0].Path == want
}

func urisOf(c *x509.Certificate) string {
	if len(c.URIs) == 0 {
		return "no berth identity"
	}
	var s []string
	for _, u := range c.URIs {
		s = append(s, u.String())
	}
	return strings.Join(s, ", ")
}

// checkIdentity checks the role's certificate: its URI is in the trust
// domain and names this role, and its chain verifies to the trust bundle.
func (r *Role) checkIdentity(certPath string) error {
	id, err := mtls.IdentityOf(r.TrustDomain, r.Leaf)
	if err != nil {
		return fmt.Errorf("%s role: %s: %w", r.Name, certPath, err)
	}
	wantKind := mtls.KindService
	if r.Name == RoleAdmin {
		wantKind = mtls.KindAdmin
	}
	if id.Kind != wantKind || (wantKind == mtls.KindService && id.Name != r.Name) {
		return fmt.Errorf("%s role: %s is the certificate of %s", r.Name, certPath, urisOf(r.Leaf))
	}
	inter := x509.NewCertPool()
	for _, der := range r.Cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%s role: %s: %w", r.Name, certPath, err)
		}
		inter.AddCert(c)
	}
	if _, err := r.Leaf.Verify(x509.VerifyOptions{
		Roots: r.RootPool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return fmt.Errorf("%s role: %s does not chain to the trust bundle %s: %w",
			r.Name, certPath, filepath.Join(r.Dir, RootCertFile), err)
	}
	return nil
}

// RootPool returns a pool holding the role's trust bundle.
func (r *Role) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(r.Root)
	return p
}

// CAHash is the root's pin, "sha256:HEX".
func (r *Role) CAHash() string { return mtls.CAHash(r.Root) }

// intermediate reads the CA role's intermediate certificate and checks
// that the root signed it.
func (r *Role) intermediate() (*x509.Certificate, error) {
	if r.Name != ServiceCA {
		return nil, fmt.Errorf("%s role: only the CA role holds the intermediate", r.Name)
	}
	p := filepath.Join(r.Dir, IntermediateCertFile)
	c, err := readCert(p)
	if err != nil {
		return nil, err
	}
	if !c.IsCA || c.CheckSignatureFrom(r.Root) != nil {
		return nil, fmt.Errorf("ca role: %s is not a CA certificate signed by the root in %s", p, filepath.Join(r.Dir, RootCertFile))
	}
	return c, nil
}

// SignerConfig opens the intermediate key, which only the CA role holds,
// and returns a SignerConfig; the caller may still set Lifetime, Clock and
// AllowedHostDomains.
func (r *Role) SignerConfig() (SignerConfig, error) {
	inter, err := r.intermediate()
	if err != nil {
		return SignerConfig{}, err
	}
	keyPath := filepath.Join(r.Dir, IntermediateKeyFile)
	key, err := readSigner(keyPath)
	if err != nil {
		return SignerConfig{}, err
	}
	if !mtls.SameKey(key.Public(), inter.PublicKey) {
		return SignerConfig{}, fmt.Errorf("ca role: %s is not the key of %s", keyPath, filepath.Join(r.Dir, IntermediateCertFile))
	}
	return SignerConfig{Intermediate: inter, Key: key, Root: r.Root, TrustDomain: r.TrustDomain}, nil
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

// ServiceCertificate loads a service's TLS certificate from its directory.
func (l *Layout) ServiceCertificate(name string) (tls.Certificate, error) {
	if name == RoleAdmin {
		return tls.Certificate{}, fmt.Errorf("%s is not a service", name)
	}
	r, err := l.Role(name)
	if err != nil {
		return tls.Certificate{}, err
	}
	return r.Cert, nil
}

// AdminCertificate loads the admin client certificate from DIR/admin.
func (l *Layout) AdminCertificate() (tls.Certificate, error) {
	r, err := l.Role(RoleAdmin)
	if err != nil {
		return tls.Certificate{}, err
	}
	return r.Cert, nil
}

// DirRole tells whose directory dir is: the role of a role directory, or
// "" for a whole PKI directory (or anything else).
func DirRole(dir string) (string, error) {
	if p := filepath.Join(dir, AdminCertFile); exists(p) {
		return RoleAdmin, nil
	}
	p := filepath.Join(dir, ServiceCertFile)
	if !exists(p) {
		return "", nil
	}
	leaf, err := readCert(p)
	if err != nil {
		return "", err
	}
	for _, r := range ServiceNames() {
		if ownedBy(leaf, r) {
			return r, nil
		}
	}
	return "", fmt.Errorf("%s is the certificate of %s, no berth role", p, urisOf(leaf))
}
