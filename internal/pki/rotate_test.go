package pki

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRotateIntermediate(t *testing.T) {
	l := initPKI(t, InitConfig{})
	before := newSigner(t, l, nil)
	oldNode, err := before.Sign(context.Background(), SignRequest{NodeID: "n1", Hostname: "n1", CSR: csrFor(t, p256(t), nil)})
	if err != nil {
		t.Fatal(err)
	}

	rot, err := RotateIntermediate(context.Background(), l.Dir, l.RootKeyPath(), fixedClock(testNow))
	if err != nil {
		t.Fatal(err)
	}
	if !rot.Old.Equal(l.Intermediate) || rot.New.Equal(rot.Old) || rot.Dir != l.RoleDir(ServiceCA) {
		t.Fatalf("rotation = %+v", rot)
	}
	checkCA(t, "new intermediate", rot.New, l.Root, 0, IntermediateLifetime)
	checkModes(t, l.Dir)

	// The CA role, opened again as at its next start, signs with the new one.
	after := newSigner(t, l, nil)
	newNode, err := after.Sign(context.Background(), SignRequest{NodeID: "n2", Hostname: "n2", CSR: csrFor(t, p256(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	if newNode.Leaf.CheckSignatureFrom(rot.New) != nil {
		t.Error("the CA role does not sign with the new intermediate")
	}
	// Both node chains verify against the one root the nodes pin.
	for name, chain := range map[string][][]byte{"old node": oldNode.Chain, "new node": newNode.Chain} {
		certs := parseChain(t, chain)
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: l.RootPool(), Intermediates: pool(certs[1:]...),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: testNow}); err != nil {
			t.Errorf("%s certificate does not verify after the rotation: %v", name, err)
		}
	}
	// Service certificates issued under the old intermediate still load.
	for _, r := range Roles() {
		if _, err := l.Role(r); err != nil {
			t.Errorf("%s role after the rotation: %v", r, err)
		}
	}
	if got, err := Load(l.Dir); err != nil || !got.Intermediate.Equal(rot.New) || got.CAHash() != l.CAHash() {
		t.Errorf("Load after the rotation: %v", err)
	}
}

func TestRotateIntermediateRefuses(t *testing.T) {
	l := initPKI(t, InitConfig{})
	other := initPKI(t, InitConfig{})
	tests := []struct {
		name, dir, rootKey string
		wantMsg            []string
	}{
		{"another deployment's root key", l.Dir, other.RootKeyPath(), []string{other.RootKeyPath(), "not the key of the root"}},
		{"the intermediate key for the root key", l.Dir, filepath.Join(l.RoleDir(ServiceCA), IntermediateKeyFile), []string{"not the key of the root"}},
		{"no root key", l.Dir, filepath.Join(t.TempDir(), "root.key"), []string{"root.key"}},
		{"not the CA role's directory", l.RoleDir(ServiceBundles), l.RootKeyPath(), []string{"service/bundles", "not of the ca role"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, l.Dir)
			_, err := RotateIntermediate(context.Background(), tt.dir, tt.rootKey, nil)
			if err == nil {
				t.Fatal("RotateIntermediate succeeded")
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
			if diff := cmp.Diff(before, snapshot(t, l.Dir)); diff != "" {
				t.Errorf("a refused rotation changed files (-before +after):\n%s", diff)
			}
		})
	}
}

func parseChain(t *testing.T, ders [][]byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}
