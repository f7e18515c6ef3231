package pki

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/mtls"
)

// copyDir copies the files of src (not recursively) into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestOpenRoleFromItsOwnDirectory(t *testing.T) {
	l := initPKI(t, InitConfig{TrustDomain: "fleet.example"})
	for _, role := range Roles() {
		t.Run(role, func(t *testing.T) {
			whole, err := OpenRole(l.Dir, role)
			if err != nil {
				t.Fatalf("OpenRole(whole PKI): %v", err)
			}
			if whole.Dir != l.RoleDir(role) {
				t.Errorf("Dir = %s, want %s", whole.Dir, l.RoleDir(role))
			}
			// Only the role's directory, nothing else of the PKI anywhere.
			own := copyDir(t, l.RoleDir(role))
			r, err := OpenRole(own, role)
			if err != nil {
				t.Fatalf("OpenRole(own directory alone): %v", err)
			}
			if r.Dir != own || r.TrustDomain != "fleet.example" || !r.Root.Equal(l.Root) || r.CAHash() != l.CAHash() {
				t.Errorf("role = %+v", r)
			}
			if !r.Leaf.Equal(whole.Leaf) {
				t.Error("the role's own directory holds another certificate")
			}
			id, err := mtls.IdentityOf(r.TrustDomain, r.Leaf)
			if err != nil {
				t.Fatal(err)
			}
			wantKind := mtls.KindService
			if role == RoleAdmin {
				wantKind = mtls.KindAdmin
			}
			if id.Kind != wantKind || (wantKind == mtls.KindService && id.Name != role) {
				t.Errorf("identity = %v", id)
			}
			_, err = r.SignerConfig()
			if role == ServiceCA {
				if err != nil {
					t.Errorf("the CA role cannot open its intermediate key: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), "only the CA role") {
				t.Errorf("SignerConfig of the %s role: %v, want a refusal", role, err)
			}
		})
	}
}

func TestOpenRoleRefuses(t *testing.T) {
	l := initPKI(t, InitConfig{})
	other := initPKI(t, InitConfig{})
	tests := []struct {
		name string
		role string
		// dir returns the directory to open (a fresh copy where it edits).
		dir     func(t *testing.T) string
		wantErr error
		// wantMsg are substrings of the error; "%s" is the opened directory.
		wantMsg []string
	}{
		{
			name: "another service's directory", role: ServiceHeartbeat,
			dir:     func(t *testing.T) string { return l.RoleDir(ServiceRegistration) },
			wantMsg: []string{"%s/service.crt", "spiffe://berth.local/service/registration", "not of the heartbeat role"},
		},
		{
			name: "the registration directory for the CA", role: ServiceCA,
			dir:     func(t *testing.T) string { return copyDir(t, l.RoleDir(ServiceRegistration)) },
			wantMsg: []string{"%s/service.crt", "spiffe://berth.local/service/registration"},
		},
		{
			name: "the admin directory for a service", role: ServiceBundles,
			dir:     func(t *testing.T) string { return l.RoleDir(RoleAdmin) },
			wantMsg: []string{"admin's directory", "%s/admin.crt"},
		},
		{
			name: "a service directory for the admin", role: RoleAdmin,
			dir:     func(t *testing.T) string { return l.RoleDir(ServiceAPI) },
			wantMsg: []string{"%s/service.crt", "not the admin's"},
		},
		{
			name: "missing key", role: ServiceHeartbeat,
			dir:     func(t *testing.T) string { return without(t, l.RoleDir(ServiceHeartbeat), ServiceKeyFile) },
			wantErr: ErrIncomplete, wantMsg: []string{"missing %s/service.key"},
		},
		{
			name: "missing certificate", role: ServiceHeartbeat,
			dir:     func(t *testing.T) string { return without(t, l.RoleDir(ServiceHeartbeat), ServiceCertFile) },
			wantErr: ErrIncomplete, wantMsg: []string{"missing %s/service.crt"},
		},
		{
			name: "missing trust bundle", role: ServiceBundles,
			dir:     func(t *testing.T) string { return without(t, l.RoleDir(ServiceBundles), RootCertFile) },
			wantErr: ErrIncomplete, wantMsg: []string{"missing %s/ca.crt"},
		},
		{
			name: "missing trust domain", role: RoleAdmin,
			dir:     func(t *testing.T) string { return without(t, l.RoleDir(RoleAdmin), TrustDomainFile) },
			wantErr: ErrIncomplete, wantMsg: []string{"missing %s/trust-domain"},
		},
		{
			name: "missing intermediate key", role: ServiceCA,
			dir:     func(t *testing.T) string { return without(t, l.RoleDir(ServiceCA), IntermediateKeyFile) },
			wantErr: ErrIncomplete, wantMsg: []string{"missing %s/intermediate.key"},
		},
		{
			name: "key of another role", role: ServiceRegistration,
			dir: func(t *testing.T) string {
				d := copyDir(t, l.RoleDir(ServiceRegistration))
				copyFile(t, l.ServiceKeyPath(ServiceHeartbeat), filepath.Join(d, ServiceKeyFile))
				return d
			},
			wantMsg: []string{"%s/service.crt", "%s/service.key"},
		},
		{
			name: "another deployment's trust bundle", role: ServiceRegistration,
			dir: func(t *testing.T) string {
				d := copyDir(t, l.RoleDir(ServiceRegistration))
				copyFile(t, other.RootPath(), filepath.Join(d, RootCertFile))
				return d
			},
			wantMsg: []string{"%s/service.crt does not chain to the trust bundle %s/ca.crt"},
		},
		{
			name: "another trust domain", role: ServiceRegistration,
			dir: func(t *testing.T) string {
				d := copyDir(t, l.RoleDir(ServiceRegistration))
				writeFile(t, filepath.Join(d, TrustDomainFile), "other.example\n")
				return d
			},
			wantMsg: []string{"%s/service.crt", "other.example"},
		},
		{
			name: "whole PKI without the role", role: ServiceAPI,
			dir: func(t *testing.T) string {
				d := filepath.Join(t.TempDir(), "pki")
				initPKI(t, InitConfig{Dir: d})
				removeAll(t, d, ServiceAPI)
				return d
			},
			wantErr: ErrIncomplete, wantMsg: []string{"missing %s/api"},
		},
		{
			name: "no such directory", role: ServiceCA,
			dir:     func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") },
			wantMsg: []string{"%s does not exist"},
		},
		{
			name: "old layout", role: ServiceCA,
			dir:     func(t *testing.T) string { return oldLayout(t, l) },
			wantErr: ErrOldLayout, wantMsg: []string{"berthd init --dir %s"},
		},
		{
			name: "unknown role", role: "dns",
			dir:     func(t *testing.T) string { return l.Dir },
			wantMsg: []string{`unknown role "dns"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			_, err := OpenRole(dir, tt.role)
			if err == nil {
				t.Fatal("OpenRole succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if m = strings.ReplaceAll(m, "%s", dir); !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
		})
	}
}

// TestSignerConfigRefusesMismatchedKey names the intermediate key that is
// not the intermediate certificate's.
func TestSignerConfigRefusesMismatchedKey(t *testing.T) {
	l := initPKI(t, InitConfig{})
	d := copyDir(t, l.RoleDir(ServiceCA))
	copyFile(t, l.ServiceKeyPath(ServiceCA), filepath.Join(d, IntermediateKeyFile))
	r, err := OpenRole(d, ServiceCA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SignerConfig(); err == nil || !strings.Contains(err.Error(), filepath.Join(d, IntermediateKeyFile)) {
		t.Fatalf("SignerConfig = %v, want an error naming intermediate.key", err)
	}
}

// without copies a role directory leaving out a file.
func without(t *testing.T, src, name string) string {
	t.Helper()
	d := copyDir(t, src)
	removeAll(t, d, name)
	return d
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
