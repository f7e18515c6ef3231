package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berth-dev/berth/internal/mtls"
)

// listenerCert issues the certificate of a listener serving the four
// services of --role all.
func listenerCert(t *testing.T, l *Layout) tls.Certificate {
	t.Helper()
	sc, err := l.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	var roles []*Role
	for _, s := range []string{ServiceCA, ServiceRegistration, ServiceBundles, ServiceHeartbeat} {
		r, err := l.Role(s)
		if err != nil {
			t.Fatal(err)
		}
		roles = append(roles, r)
	}
	c, err := ListenerCertificate(sc, roles, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestListenerCertificate(t *testing.T) {
	l := initPKI(t, InitConfig{SANs: []string{"berth.example.com", "192.0.2.1"}})
	c := listenerCert(t, l)
	leaf := c.Leaf
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	want := []string{
		"spiffe://berth.local/service/ca", "spiffe://berth.local/service/registration",
		"spiffe://berth.local/service/bundles", "spiffe://berth.local/service/heartbeat",
	}
	if diff := cmp.Diff(want, uris); diff != "" {
		t.Errorf("URI SANs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ca", "registration", "bundles", "heartbeat", "localhost", "berth.example.com"}, leaf.DNSNames); diff != "" {
		t.Errorf("DNS SANs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage); diff != "" {
		t.Errorf("a listener certificate must serve only (-want +got):\n%s", diff)
	}
	if len(c.Certificate) != 3 || !bytesEqual(c.Certificate[2], l.Root.Raw) {
		t.Error("chain is not leaf, intermediate, root")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "192.0.2.1", Roots: l.RootPool(), Intermediates: pool(l.Intermediate), CurrentTime: testNow}); err != nil {
		t.Errorf("does not verify as a server: %v", err)
	}
	// A client accepts it as any of the four, and as nothing else.
	for _, s := range []string{ServiceCA, ServiceRegistration, ServiceBundles, ServiceHeartbeat} {
		if err := mtls.CheckServer(leaf, l.TrustDomain, s); err != nil {
			t.Errorf("not accepted as %s: %v", s, err)
		}
	}
	if err := mtls.CheckServer(leaf, l.TrustDomain, ServiceAPI); !errors.Is(err, mtls.ErrWrongServer) {
		t.Errorf("accepted as the front door: %v", err)
	}
	// It cannot act as a client: several identities are no identity.
	if _, err := mtls.IdentityOf(l.TrustDomain, leaf); err == nil {
		t.Error("a listener certificate classifies as one identity")
	}
	admin, err := l.Role(RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := l.SignerConfig()
	if _, err := ListenerCertificate(sc, []*Role{admin}, testNow); err == nil {
		t.Error("a listener certificate for the admin was issued")
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }
