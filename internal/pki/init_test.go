package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.step.sm/crypto/pemutil"

	"github.com/berth-dev/berth/internal/mtls"
)

func TestInitCreatesPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	l := initPKI(t, InitConfig{Dir: dir, TrustDomain: "fleet.example", SANs: []string{"ca.fleet.example", "10.0.0.5", " ca.fleet.example "}})
	if l.Existing {
		t.Error("Existing = true for a new PKI")
	}
	if l.TrustDomain != "fleet.example" {
		t.Errorf("TrustDomain = %q", l.TrustDomain)
	}

	modes := map[string]os.FileMode{".": 0o700, RootDir: 0o700, TrustDomainFile: 0o644, RootCertFile: 0o644,
		filepath.Join(RootDir, RootKeyFile): 0o600}
	for _, r := range Roles() {
		modes[r] = 0o700
		for _, f := range roleFiles(r) {
			modes[filepath.Join(r, f)] = 0o644
			if strings.HasSuffix(f, ".key") {
				modes[filepath.Join(r, f)] = 0o600
			}
		}
	}
	// Nothing else: each role directory holds only what that role needs.
	var got []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got = append(got, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for name := range modes {
		want = append(want, name)
	}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("files of the PKI (-want +got):\n%s", diff)
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", name, got, want)
		}
	}
	for _, r := range Roles() {
		for _, f := range []string{RootCertFile, TrustDomainFile} {
			a, _ := os.ReadFile(filepath.Join(dir, f))
			b, _ := os.ReadFile(filepath.Join(dir, r, f))
			if !bytes.Equal(a, b) {
				t.Errorf("%s/%s differs from %s", r, f, f)
			}
		}
	}
	if !l.RootKeyOnline {
		t.Error("RootKeyOnline = false right after init")
	}
	rootKey, err := pemutil.Read(l.RootKeyPath())
	if err != nil || !mtls.SameKey(rootKey.(crypto.Signer).Public(), l.Root.PublicKey) {
		t.Errorf("%s is not the root's key: %v", l.RootKeyPath(), err)
	}
	td, _ := os.ReadFile(filepath.Join(dir, TrustDomainFile))
	if string(td) != "fleet.example\n" {
		t.Errorf("trust-domain file = %q", td)
	}

	root, inter := l.Root, l.Intermediate
	checkCA(t, "root", root, root, 1, RootLifetime)
	checkCA(t, "intermediate", inter, root, 0, IntermediateLifetime)
	if !bytes.Equal(root.RawSubject, root.RawIssuer) || root.CheckSignatureFrom(root) != nil {
		t.Error("root is not self-signed")
	}

	for _, svc := range ServiceNames() {
		chain := readChain(t, l.ServiceCertPath(svc))
		if len(chain) != 3 || !chain[1].Equal(inter) || !chain[2].Equal(root) {
			t.Fatalf("%s chain is not leaf, intermediate, root", svc)
		}
		leaf := chain[0]
		checkLeaf(t, svc, leaf, l, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://fleet.example/service/"+svc {
			t.Errorf("%s URI SANs = %v, want only its own identity", svc, leaf.URIs)
		}
		if diff := cmp.Diff([]string{svc, "localhost", "ca.fleet.example"}, leaf.DNSNames); diff != "" {
			t.Errorf("%s DNS SANs (-want +got):\n%s", svc, diff)
		}
		var ips []string
		for _, ip := range leaf.IPAddresses {
			ips = append(ips, ip.String())
		}
		if diff := cmp.Diff([]string{"127.0.0.1", "::1", "10.0.0.5"}, ips); diff != "" {
			t.Errorf("%s IP SANs (-want +got):\n%s", svc, diff)
		}
		id, err := mtls.IdentityOf(l.TrustDomain, leaf)
		if err != nil || id.Kind != mtls.KindService || id.Name != svc {
			t.Errorf("%s identity = %v, %v", svc, id, err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: svc, Roots: l.RootPool(), Intermediates: pool(inter)}); err != nil {
			t.Errorf("%s does not verify as a server for %q: %v", svc, svc, err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "10.0.0.5", Roots: l.RootPool(), Intermediates: pool(inter)}); err != nil {
			t.Errorf("%s does not verify for the extra IP SAN: %v", svc, err)
		}
		if _, err := l.ServiceCertificate(svc); err != nil {
			t.Errorf("ServiceCertificate(%s): %v", svc, err)
		}
	}

	admin := readChain(t, l.AdminCertPath())
	if len(admin) != 2 || !admin[1].Equal(inter) {
		t.Fatalf("admin chain is not leaf, intermediate")
	}
	checkLeaf(t, "admin", admin[0], l, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	if id, err := mtls.IdentityOf(l.TrustDomain, admin[0]); err != nil || id.Kind != mtls.KindAdmin || id.Name != AdminName {
		t.Errorf("admin identity = %v, %v", id, err)
	}
	if len(admin[0].DNSNames)+len(admin[0].IPAddresses) != 0 {
		t.Errorf("admin certificate has DNS or IP SANs: %v %v", admin[0].DNSNames, admin[0].IPAddresses)
	}
	if _, err := l.AdminCertificate(); err != nil {
		t.Errorf("AdminCertificate: %v", err)
	}
	if got := l.CAHash(); got != mtls.CAHash(root) || !strings.HasPrefix(got, "sha256:") {
		t.Errorf("CAHash = %q", got)
	}
}

func checkCA(t *testing.T, name string, c, parent *x509.Certificate, maxPathLen int, life time.Duration) {
	t.Helper()
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != maxPathLen {
		t.Errorf("%s: IsCA=%v MaxPathLen=%d, want CA with path length %d", name, c.IsCA, c.MaxPathLen, maxPathLen)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("%s key usage = %v", name, c.KeyUsage)
	}
	if err := c.CheckSignatureFrom(parent); err != nil {
		t.Errorf("%s is not signed by its parent: %v", name, err)
	}
	checkP256(t, name, c)
	checkLifetime(t, name, c, life)
}

func checkLeaf(t *testing.T, name string, c *x509.Certificate, l *Layout, eku []x509.ExtKeyUsage) {
	t.Helper()
	if c.IsCA {
		t.Errorf("%s is a CA", name)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("%s key usage = %v", name, c.KeyUsage)
	}
	if diff := cmp.Diff(eku, c.ExtKeyUsage); diff != "" {
		t.Errorf("%s extended key usage (-want +got):\n%s", name, diff)
	}
	if len(c.URIs) != 1 {
		t.Errorf("%s URI SANs = %v", name, c.URIs)
	}
	checkP256(t, name, c)
	checkLifetime(t, name, c, LeafLifetime)
	if _, err := c.Verify(x509.VerifyOptions{Roots: l.RootPool(), Intermediates: pool(l.Intermediate), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("%s does not verify as a client: %v", name, err)
	}
}

func checkP256(t *testing.T, name string, c *x509.Certificate) {
	t.Helper()
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("%s key is %T, want ECDSA P-256", name, c.PublicKey)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 100 {
		t.Errorf("%s serial %x is not a large positive random number", name, c.SerialNumber)
	}
}

func checkLifetime(t *testing.T, name string, c *x509.Certificate, life time.Duration) {
	t.Helper()
	if got := c.NotAfter.Sub(c.NotBefore); got < life || got > life+Backdate+time.Second {
		t.Errorf("%s lifetime = %v, want %v plus the backdate", name, got, life)
	}
	if since := time.Since(c.NotBefore); since < Backdate-time.Second || since > Backdate+time.Minute {
		t.Errorf("%s NotBefore is %v ago, want about %v", name, since, Backdate)
	}
}

func readChain(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	certs, err := pemutil.ReadCertificateBundle(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestInitIsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	first := initPKI(t, InitConfig{Dir: dir})
	before := snapshot(t, dir)

	tests := []struct {
		name string
		c    InitConfig
	}{
		{"same config", InitConfig{Dir: dir}},
		{"explicit same trust domain", InitConfig{Dir: dir, TrustDomain: mtls.DefaultTrustDomain}},
		{"other SANs are ignored", InitConfig{Dir: dir, SANs: []string{"other.example", "192.0.2.1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Init(context.Background(), tt.c)
			if err != nil {
				t.Fatalf("second Init: %v", err)
			}
			if !l.Existing {
				t.Error("Existing = false for a complete PKI")
			}
			if !l.Root.Equal(first.Root) || l.CAHash() != first.CAHash() {
				t.Error("root changed")
			}
			if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
				t.Errorf("files changed (-before +after):\n%s", diff)
			}
		})
	}
}

// snapshot maps every file under dir to its mode and content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[strings.TrimPrefix(p, dir)] = fi.Mode().String() + " " + string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInitRefuses(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		c       InitConfig
		wantErr error
		wantMsg []string
	}{
		{
			name: "partial PKI",
			prepare: func(t *testing.T, dir string) {
				initPKI(t, InitConfig{Dir: dir})
				removeAll(t, dir, filepath.Join(ServiceCA, IntermediateKeyFile), filepath.Join(ServiceBundles, ServiceCertFile))
			},
			wantErr: ErrIncomplete,
			wantMsg: []string{filepath.Join(ServiceCA, IntermediateKeyFile), filepath.Join(ServiceBundles, ServiceCertFile)},
		},
		{
			name: "no CA role",
			prepare: func(t *testing.T, dir string) {
				initPKI(t, InitConfig{Dir: dir})
				removeAll(t, dir, ServiceCA)
			},
			wantErr: ErrIncomplete,
			wantMsg: []string{filepath.Join(ServiceCA, IntermediateKeyFile), filepath.Join(ServiceCA, ServiceCertFile)},
		},
		{
			name: "only a root key",
			prepare: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, RootDir, RootKeyFile), "x")
			},
			wantErr: ErrIncomplete,
			wantMsg: []string{RootCertFile, TrustDomainFile, filepath.Join(ServiceCA, IntermediateKeyFile)},
		},
		{
			name: "part of the old layout",
			prepare: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, RootKeyFile), "x")
			},
			wantErr: ErrIncomplete,
			wantMsg: []string{"old single-directory layout", filepath.Join("services", "ca.crt"), AdminKeyFile},
		},
		{
			name:    "other trust domain",
			prepare: func(t *testing.T, dir string) { initPKI(t, InitConfig{Dir: dir}) },
			c:       InitConfig{TrustDomain: "other.example"},
			wantMsg: []string{`"other.example"`, mtls.DefaultTrustDomain},
		},
		{name: "bad trust domain", c: InitConfig{TrustDomain: "Bad_Domain"}, wantMsg: []string{"Bad_Domain"}},
		{name: "bad SAN", c: InitConfig{SANs: []string{"not a name"}}, wantMsg: []string{`"not a name"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if tt.prepare != nil {
				tt.prepare(t, dir)
			}
			before := snapshotIfExists(t, dir)
			tt.c.Dir = dir
			_, err := Init(context.Background(), tt.c)
			if err == nil {
				t.Fatal("Init succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if diff := cmp.Diff(before, snapshotIfExists(t, dir)); diff != "" {
				t.Errorf("a refused Init changed files (-before +after):\n%s", diff)
			}
		})
	}
}

func snapshotIfExists(t *testing.T, dir string) map[string]string {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	return snapshot(t, dir)
}

func TestLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	made := initPKI(t, InitConfig{Dir: dir, TrustDomain: "fleet.example"})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.Existing || l.TrustDomain != "fleet.example" || !l.Root.Equal(made.Root) || !l.Intermediate.Equal(made.Intermediate) {
		t.Errorf("Load = %+v", l)
	}
	if got := l.ServiceKeyPath(ServiceCA); got != filepath.Join(dir, "ca", "service.key") {
		t.Errorf("ServiceKeyPath = %q", got)
	}
	for got, want := range map[string]string{
		l.AdminKeyPath():  filepath.Join(dir, "admin", "admin.key"),
		l.AdminCertPath(): filepath.Join(dir, "admin", "admin.crt"),
		l.AdminCAPath():   filepath.Join(dir, "admin", "ca.crt"),
		l.RootPath():      filepath.Join(dir, "ca.crt"),
		l.RootKeyPath():   filepath.Join(dir, "root", "root.key"),
	} {
		if got != want {
			t.Errorf("path %q, want %q", got, want)
		}
	}
	sc, err := l.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Intermediate.Equal(l.Intermediate) || !sc.Root.Equal(l.Root) || sc.TrustDomain != "fleet.example" || sc.Key == nil {
		t.Errorf("SignerConfig = %+v", sc)
	}
	tc, err := l.ServiceCertificate(ServiceRegistration)
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificate) != 3 || tc.Leaf == nil || tc.Leaf.URIs[0].String() != "spiffe://fleet.example/service/registration" {
		t.Errorf("ServiceCertificate: %d certificates, leaf %v", len(tc.Certificate), tc.Leaf)
	}
	if _, err := l.ServiceCertificate("nope"); err == nil {
		t.Error("ServiceCertificate of an unknown service succeeded")
	}
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrIncomplete) {
		t.Errorf("Load of an empty dir: %v, want ErrIncomplete", err)
	}
}

func removeAll(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
