package pki

import (
	"crypto/tls"
	"fmt"
	"slices"
	"time"
)

// ListenerCertificate issues, in memory, the certificate of one listener
// that serves several services (berthd dev and --role all): it carries the
// URI of each role in roles, so that a client accepts it as any of them,
// and the DNS names and IP addresses of their certificates. It is signed
// with sc, the CA role's intermediate, which such a process holds anyway,
// and is for serving only: no key on disk can act as several services.
func ListenerCertificate(sc SignerConfig, roles []*Role, now time.Time) (tls.Certificate, error) {
	var names []string
	extra := subjectNames{}
	for _, r := range roles {
		if r.Name == RoleAdmin {
			return tls.Certificate{}, fmt.Errorf("listener certificate: %s is not a service", r.Name)
		}
		names = append(names, r.Name)
		for _, d := range r.Leaf.DNSNames {
			if !slices.Contains(extra.dns, d) && !slices.Contains(ServiceNames(), d) {
				extra.dns = append(extra.dns, d)
			}
		}
		for _, ip := range r.Leaf.IPAddresses {
			if !slices.ContainsFunc(extra.ips, ip.Equal) {
				extra.ips = append(extra.ips, ip)
			}
		}
	}
	if len(names) == 0 {
		return tls.Certificate{}, fmt.Errorf("listener certificate: no service")
	}
	sans := serviceSANs(sc.TrustDomain, names, extra)
	leaf, key, err := newLeaf(&issuer{cert: sc.Intermediate, key: sc.Key}, "berth services", sans, []string{"serverAuth"}, now)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("listener certificate: %w", err)
	}
	return tls.Certificate{
		Certificate: [][]byte{leaf.Raw, sc.Intermediate.Raw, sc.Root.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}
