package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/mtls"
)

// Lifetimes of the certificates Init makes.
const (
	RootLifetime         = 10 * 365 * 24 * time.Hour
	IntermediateLifetime = 5 * 365 * 24 * time.Hour
	LeafLifetime         = 365 * 24 * time.Hour
	// Backdate is how far NotBefore is set in the past, for clock skew.
	Backdate = time.Minute
)

// Modes of what Init writes.
const (
	dirMode  fs.FileMode = 0o700
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
)

// leafTemplate is the X.509 JSON template of every leaf berth issues:
// service, admin and node certificates differ only in names and usages.
const leafTemplate = `{
	"subject": {{ toJson .Subject }},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": {{ toJson .ExtKeyUsage }}
}`

const extKeyUsageKey = "ExtKeyUsage"

// InitConfig describes the PKI that berthd init creates.
type InitConfig struct {
	// Dir is created (mode 0700) if it does not exist.
	Dir string
	// TrustDomain defaults to mtls.DefaultTrustDomain.
	TrustDomain string
	// SANs are extra DNS names or IP addresses of the service certificates,
	// beyond the service name, localhost, 127.0.0.1 and ::1.
	SANs []string
	// Clock dates the certificates; the system clock when nil.
	Clock clock.Clock
}

// Init creates a PKI in c.Dir: a root (its key in DIR/root, for the
// operator to take offline), an intermediate for the CA role, and one
// directory per role with that role's certificate and key, the trust
// bundle and the trust domain (see Layout).
//
// Init is idempotent. A complete PKI is left untouched and returned with
// Existing set, whether or not the root key is still there. In a PKI whose
// CA role is complete, a role directory that is missing or empty is issued
// from the intermediate and listed in Added. A PKI of the old
// single-directory layout is moved into role directories (Migrated); its
// keys and certificates are kept, so nodes and their pins are unaffected.
// Anything else partial is an error wrapping ErrIncomplete that names what
// is missing, and changes nothing.
func Init(ctx context.Context, c InitConfig) (*Layout, error) {
	if c.Dir == "" {
		return nil, errors.New("init PKI: no directory given")
	}
	td := c.TrustDomain
	if td == "" {
		td = mtls.DefaultTrustDomain
	}
	if err := ValidateTrustDomain(td); err != nil {
		return nil, fmt.Errorf("init PKI: %w", err)
	}
	sans, err := parseSANs(c.SANs)
	if err != nil {
		return nil, fmt.Errorf("init PKI: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := clock.Or(c.Clock).Now()
	if isOldLayout(c.Dir) {
		return migrate(c.Dir, c.TrustDomain, now)
	}
	all := append(layoutFiles(), filepath.Join(RootDir, RootKeyFile))
	switch missing := missingIn(c.Dir, layoutFiles()); {
	case len(missing) == 0:
		return loadExisting(c.Dir, c.TrustDomain)
	case len(missingIn(c.Dir, all)) < len(all):
		return addRoles(c.Dir, c.TrustDomain, sans, now)
	}

	files, err := generate(td, sans, now)
	if err != nil {
		return nil, fmt.Errorf("init PKI: %w", err)
	}
	if err := writeAll(c.Dir, files); err != nil {
		return nil, fmt.Errorf("init PKI in %s: %w", c.Dir, err)
	}
	return Load(c.Dir)
}

// loadExisting returns a complete PKI found by Init, refusing one made for
// another trust domain than the one asked for explicitly.
func loadExisting(dir, wantTD string) (*Layout, error) {
	l, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if wantTD != "" && wantTD != l.TrustDomain {
		return nil, fmt.Errorf("init PKI: %s already holds a PKI for trust domain %q, not %q", dir, l.TrustDomain, wantTD)
	}
	l.Existing = true
	return l, nil
}

// addRoles issues the directories of roles that are missing entirely from
// a PKI whose CA role is complete, with the intermediate and without the
// root key. Any other gap is refused, naming the missing files.
func addRoles(dir, wantTD string, sans subjectNames, now time.Time) (*Layout, error) {
	var add, gaps []string
	for _, r := range Roles() {
		m := missingIn(filepath.Join(dir, r), roleFiles(r))
		switch {
		case len(m) == len(roleFiles(r)) && r != ServiceCA:
			add = append(add, r)
		case len(m) > 0:
			for _, f := range m {
				gaps = append(gaps, filepath.Join(r, f))
			}
		}
	}
	gaps = append(missingIn(dir, topFiles()), gaps...)
	if len(gaps) > 0 {
		return nil, fmt.Errorf("init PKI in %s: %w: missing %s; restore them from a backup, or remove the directory to start over",
			dir, ErrIncomplete, strings.Join(gaps, ", "))
	}
	l, err := loadExisting(dir, wantTD)
	if err != nil {
		return nil, err
	}
	sc, err := l.SignerConfig()
	if err != nil {
		return nil, fmt.Errorf("init PKI: %w", err)
	}
	inter := &issuer{cert: sc.Intermediate, key: sc.Key}
	var files []file
	for _, r := range add {
		fs, err := issueRole(r, l.TrustDomain, l.Root, inter, sans, now)
		if err != nil {
			return nil, fmt.Errorf("init PKI: %w", err)
		}
		files = append(files, fs...)
	}
	if err := writeAll(dir, files); err != nil {
		return nil, fmt.Errorf("init PKI in %s: %w", dir, err)
	}
	l.Added = add
	return l, nil
}

// subjectNames are the DNS names and IP addresses of service certificates
// beyond the service's own name.
type subjectNames struct {
	dns []string
	ips []net.IP
}

// parseSANs splits --san values into DNS names and IP addresses and adds
// the loopback addresses every service certificate carries.
func parseSANs(sans []string) (subjectNames, error) {
	n := subjectNames{ips: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}}
	for _, s := range sans {
		s = strings.TrimSpace(s)
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(n.ips, ip.Equal) {
				n.ips = append(n.ips, ip)
			}
			continue
		}
		name, err := ident.DNSName(s)
		if err != nil {
			return n, fmt.Errorf("--san %q is neither an IP address nor a valid DNS name", s)
		}
		if !slices.Contains(n.dns, name) {
			n.dns = append(n.dns, name)
		}
	}
	return n, nil
}

// file is one file Init writes, its path relative to the PKI directory.
type file struct {
	name string
	data []byte
	mode fs.FileMode
}

// issuer is a CA certificate with its key.
type issuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// generate makes every certificate and key in memory, so that nothing is
// written unless all of it could be made.
func generate(td string, sans subjectNames, now time.Time) ([]file, error) {
	root, err := newCA(td, "berth root CA", x509util.DefaultRootTemplate, nil, now, RootLifetime)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	inter, err := newCA(td, "berth intermediate CA", x509util.DefaultIntermediateTemplate, root, now, IntermediateLifetime)
	if err != nil {
		return nil, fmt.Errorf("intermediate: %w", err)
	}
	rootKey, err := pemKey(root.key)
	if err != nil {
		return nil, err
	}
	interKey, err := pemKey(inter.key)
	if err != nil {
		return nil, err
	}
	files := []file{
		{RootCertFile, pemCerts(root.cert), certMode},
		{TrustDomainFile, []byte(td + "\n"), certMode},
		{filepath.Join(RootDir, RootKeyFile), rootKey, keyMode},
		{filepath.Join(ServiceCA, IntermediateCertFile), pemCerts(inter.cert), certMode},
		{filepath.Join(ServiceCA, IntermediateKeyFile), interKey, keyMode},
	}
	for _, r := range Roles() {
		fs, err := issueRole(r, td, root.cert, inter, sans, now)
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
	}
	return files, nil
}

// issueRole makes the certificate and key of a role and returns the files
// of its directory, but for the CA role's intermediate.
func issueRole(role, td string, root *x509.Certificate, inter *issuer, sans subjectNames, now time.Time) ([]file, error) {
	files := []file{
		{filepath.Join(role, RootCertFile), pemCerts(root), certMode},
		{filepath.Join(role, TrustDomainFile), []byte(td + "\n"), certMode},
	}
	if role == RoleAdmin {
		adminSANs := []x509util.SubjectAlternativeName{{Type: x509util.URIType, Value: mtls.AdminURI(td, AdminName).String()}}
		leaf, key, err := newLeaf(inter, "berth "+AdminName, adminSANs, []string{"clientAuth"}, now)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		kb, err := pemKey(key)
		if err != nil {
			return nil, err
		}
		return append(files,
			file{filepath.Join(role, AdminCertFile), pemCerts(leaf, inter.cert), certMode},
			file{filepath.Join(role, AdminKeyFile), kb, keyMode}), nil
	}
	leaf, key, err := newLeaf(inter, role, serviceSANs(td, []string{role}, sans), []string{"serverAuth", "clientAuth"}, now)
	if err != nil {
		return nil, fmt.Errorf("%s service: %w", role, err)
	}
	kb, err := pemKey(key)
	if err != nil {
		return nil, err
	}
	// The root goes last: nodes pin it by hash from the chain the server sends.
	return append(files,
		file{filepath.Join(role, ServiceCertFile), pemCerts(leaf, inter.cert, root), certMode},
		file{filepath.Join(role, ServiceKeyFile), kb, keyMode}), nil
}

// serviceSANs are the names of a certificate serving services: the URI of
// each (its identity), each service's name and localhost as DNS names, the
// extra names, and the IP addresses.
func serviceSANs(td string, services []string, extra subjectNames) []x509util.SubjectAlternativeName {
	var sans []x509util.SubjectAlternativeName
	for _, s := range services {
		sans = append(sans, x509util.SubjectAlternativeName{Type: x509util.URIType, Value: mtls.ServiceURI(td, s).String()})
	}
	for _, d := range append(append(slices.Clone(services), "localhost"), extra.dns...) {
		if !slices.ContainsFunc(sans, func(s x509util.SubjectAlternativeName) bool { return s.Value == d }) {
			sans = append(sans, x509util.SubjectAlternativeName{Type: x509util.DNSType, Value: d})
		}
	}
	for _, ip := range extra.ips {
		sans = append(sans, x509util.SubjectAlternativeName{Type: x509util.IPType, Value: ip.String()})
	}
	return sans
}

// newCA makes a root (parent nil) or an intermediate from smallstep's
// default CA templates.
func newCA(td, cn, tmpl string, parent *issuer, now time.Time, life time.Duration) (*issuer, error) {
	key, err := keyutil.GenerateSigner("EC", "P-256", 0)
	if err != nil {
		return nil, err
	}
	data := x509util.NewTemplateData()
	data.SetSubject(x509util.Subject{CommonName: cn, Organization: x509util.MultiString{td}})
	t, err := fromTemplate(key.Public(), x509util.WithTemplate(tmpl, data))
	if err != nil {
		return nil, err
	}
	setValidity(t, now, life)
	parentCert, parentKey := t, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	cert, err := x509util.CreateCertificate(t, parentCert, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	return &issuer{cert: cert, key: key}, nil
}

// newLeaf makes a fresh P-256 key and a one-year leaf certificate for it.
func newLeaf(ca *issuer, cn string, sans []x509util.SubjectAlternativeName, eku []string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := keyutil.GenerateSigner("EC", "P-256", 0)
	if err != nil {
		return nil, nil, err
	}
	data := x509util.NewTemplateData()
	data.SetCommonName(cn)
	data.SetSubjectAlternativeNames(sans...)
	data.Set(extKeyUsageKey, eku)
	t, err := fromTemplate(key.Public(), x509util.WithTemplate(leafTemplate, data))
	if err != nil {
		return nil, nil, err
	}
	setValidity(t, now, LeafLifetime)
	if t.NotAfter.After(ca.cert.NotAfter) {
		t.NotAfter = ca.cert.NotAfter
	}
	cert, err := x509util.CreateCertificate(t, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// fromTemplate renders an X.509 JSON template (the option) for pub. Only
// the public key is taken from outside the template: no certificate request
// is involved, so none of a CSR's names can reach the certificate.
func fromTemplate(pub crypto.PublicKey, tmpl x509util.Option) (*x509.Certificate, error) {
	c, err := x509util.NewCertificateFromX509(&x509.Certificate{PublicKey: pub}, tmpl)
	if err != nil {
		return nil, fmt.Errorf("render certificate template: %w", err)
	}
	t := c.GetCertificate()
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t.SerialNumber = serial
	return t, nil
}

func setValidity(t *x509.Certificate, now time.Time, life time.Duration) {
	t.NotBefore = now.Add(-Backdate).UTC().Truncate(time.Second)
	t.NotAfter = now.Add(life).UTC().Truncate(time.Second)
}

// serialBytes is the size of random serial numbers: 144 bits, inside RFC
// 5280's 20-octet limit even with the sign byte.
const serialBytes = 18

// newSerial returns a positive random serial number.
func newSerial() (*big.Int, error) {
	b := make([]byte, serialBytes)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n, nil
		}
	}
}

func pemCerts(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

func pemKey(key crypto.Signer) ([]byte, error) {
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// writeAll writes the files of a new PKI, or new files into an existing
// one, making their directories 0700. Each file is created exclusively,
// so a concurrent init cannot be overwritten; on error, what this call
// created is removed again so that a retry starts from where it did.
func writeAll(dir string, files []file) (err error) {
	dirs := []string{dir}
	for _, f := range files {
		if d := filepath.Join(dir, filepath.Dir(f.name)); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, dirMode); err != nil {
			return err
		}
		// Chmod because a directory may already exist (a mount point) or
		// the umask may have narrowed the mode.
		if err := os.Chmod(d, dirMode); err != nil {
			return err
		}
	}
	var created []string
	defer func() {
		if err != nil {
			for _, p := range created {
				_ = os.Remove(p)
			}
		}
	}()
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeNew(p, f.data, f.mode); err != nil {
			return err
		}
		created = append(created, p)
	}
	return nil
}

func writeNew(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	// Chmod because the umask may have narrowed the mode of a certificate.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
