package daemon

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/pki"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestStartRefusesOtherCredentials starts roles with another role's
// directory or with a file missing: each fails at start, naming the file.
func TestStartRefusesOtherCredentials(t *testing.T) {
	l := newPKI(t, "")
	without := func(role, file string) string {
		d := ownDir(t, l, role)
		if err := os.Remove(filepath.Join(d, file)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name   string
		c      Config
		wantIn []string // "%s" is PKIDir
	}{
		{"heartbeat with registration's directory", Config{Role: RoleHeartbeat, CAAddr: "127.0.0.1:1", PKIDir: l.RoleDir(RoleRegistration)},
			[]string{"%s/service.crt", "spiffe://berth.local/service/registration", "not of the heartbeat role"}},
		{"CA with registration's directory", Config{Role: RoleCA, PKIDir: ownDir(t, l, RoleRegistration)},
			[]string{"%s/service.crt", "spiffe://berth.local/service/registration"}},
		{"registration with the admin's directory", Config{Role: RoleRegistration, CAAddr: "127.0.0.1:1", PKIDir: l.RoleDir(pki.RoleAdmin)},
			[]string{"%s/admin.crt", "admin's directory"}},
		{"bundles without its key", Config{Role: RoleBundles, CAAddr: "127.0.0.1:1", PKIDir: without(RoleBundles, pki.ServiceKeyFile)},
			[]string{"missing %s/service.key"}},
		{"heartbeat without the trust bundle", Config{Role: RoleHeartbeat, CAAddr: "127.0.0.1:1", PKIDir: without(RoleHeartbeat, pki.RootCertFile)},
			[]string{"missing %s/ca.crt"}},
		{"CA without the intermediate key", Config{Role: RoleCA, PKIDir: without(RoleCA, pki.IntermediateKeyFile)},
			[]string{"missing %s/intermediate.key"}},
		{"all from one role's directory", Config{Role: RoleAll, PKIDir: l.RoleDir(RoleCA)},
			[]string{"whole PKI directory", "%s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.DataDir, tt.c.Listen = t.TempDir(), "127.0.0.1:0"
			err := Run(context.Background(), tt.c)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			for _, w := range tt.wantIn {
				if w = strings.ReplaceAll(w, "%s", tt.c.PKIDir); !strings.Contains(err.Error(), w) {
					t.Errorf("Run = %q, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestRotatedIntermediate rotates the intermediate under the same root:
// after a restart the CA role signs with the new one, and a node
// certificate issued under the old one is still accepted.
func TestRotatedIntermediate(t *testing.T) {
	l := newPKI(t, "")
	old := nodeCert(t, l, "node-old")
	reg, err := l.ServiceCertificate(pki.ServiceRegistration)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := pki.RotateIntermediate(context.Background(), l.Dir, l.RootKeyPath(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The root key goes offline; nothing that runs needs it.
	if err := os.Remove(l.RootKeyPath()); err != nil {
		t.Fatal(err)
	}
	d := startAll(t, l)

	if _, err := berthv1.NewVersionServiceClient(d.dial(t, RoleCA, old)).GetVersion(context.Background(), &berthv1.GetVersionRequest{}); err != nil {
		t.Fatalf("a node certificate of the old intermediate is refused after the rotation: %v", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := berthv1.NewCertificateAuthorityServiceClient(d.dial(t, RoleCA, reg)).Sign(context.Background(),
		&berthv1.SignRequest{RequestId: "after-rotation", NodeId: "node-new", Hostname: "node-new", Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(resp.GetCertificateChain()[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(rot.New); err != nil {
		t.Errorf("the restarted CA role does not sign with the new intermediate: %v", err)
	}
	if inter, err := x509.ParseCertificate(resp.GetCertificateChain()[1]); err != nil || !inter.Equal(rot.New) {
		t.Errorf("the chain does not carry the new intermediate")
	}
}
