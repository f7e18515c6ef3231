package pki

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestInspect(t *testing.T) {
	l := initPKI(t, InitConfig{})
	keysOf := func(found []Found) map[string]string {
		m := map[string]string{}
		for _, f := range found {
			if f.Kind == FoundPrivateKey {
				what := f.Identity
				if f.CA != "" {
					what = f.CA + " CA"
				}
				if !f.Matched {
					what = "unknown"
				}
				m[f.Path] = what
			}
		}
		return m
	}
	found, err := Inspect([]string{l.RoleDir(ServiceRegistration)})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(found); len(got) != 1 || got[l.ServiceKeyPath(ServiceRegistration)] != "spiffe://berth.local/service/registration" {
		t.Errorf("keys in the registration directory: %v", got)
	}
	var cas []string
	for _, f := range found {
		if f.Kind == FoundCertificate && f.CA != "" {
			cas = append(cas, f.CA+" "+filepath.Base(f.Path))
		}
	}
	slices.Sort(cas)
	if want := []string{"intermediate service.crt", "root ca.crt", "root service.crt"}; !slices.Equal(cas, want) {
		t.Errorf("CA certificates found: %v, want %v", cas, want)
	}

	found, err = Inspect([]string{l.Dir})
	if err != nil {
		t.Fatal(err)
	}
	keys := keysOf(found)
	if keys[l.RootKeyPath()] != "root CA" || keys[filepath.Join(l.RoleDir(ServiceCA), IntermediateKeyFile)] != "intermediate CA" ||
		keys[l.AdminKeyPath()] != "spiffe://berth.local/admin/admin" || len(keys) != len(Roles())+2 {
		t.Errorf("keys in the whole PKI: %v", keys)
	}

	// A key without its certificate is reported, as unknown.
	found, err = Inspect([]string{l.ServiceKeyPath(ServiceHeartbeat)})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(found); got[l.ServiceKeyPath(ServiceHeartbeat)] != "unknown" {
		t.Errorf("a lone key: %v", got)
	}
}
