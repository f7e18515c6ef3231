package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Names of berth's services, as they appear in spiffe://<td>/service/<name>.
const (
	ServiceRegistration = "registration"
	ServiceCA           = "ca"
	ServiceBundles      = "bundles"
	ServiceHeartbeat    = "heartbeat"
	// ServiceAPI is the front door: the admin API, REST and the web console.
	ServiceAPI = "api"
)

// ErrWrongServer means the server a client reached proved an identity, but
// not that of the service the client meant to reach.
var ErrWrongServer = errors.New("server is not the service this client meant to reach")

// WrongServerError says which identity a client expected and which the
// server's certificate holds. It matches ErrWrongServer with errors.Is.
type WrongServerError struct {
	// Expected is the URI the client wanted (or the URIs, any of which
	// would do).
	Expected []string
	// Found are the URI SANs of the server's certificate.
	Found []string
}

func (e *WrongServerError) Error() string {
	found := "no berth identity"
	if len(e.Found) > 0 {
		found = strings.Join(e.Found, ", ")
	}
	return fmt.Sprintf("expected %s, found %s", strings.Join(e.Expected, " or "), found)
}

// Is makes errors.Is(err, ErrWrongServer) true.
func (e *WrongServerError) Is(target error) bool { return target == ErrWrongServer }

// CheckServer checks that a server's leaf certificate, whose chain the
// caller has verified, carries spiffe://<trustDomain>/service/<s> for one
// of services. A certificate may carry several service identities (one
// listener serving several services); one match is enough. An empty
// trustDomain accepts the trust domain the certificate names: a node that
// pinned the deployment's root by hash does not know it yet.
func CheckServer(leaf *x509.Certificate, trustDomain string, services ...string) error {
	for _, u := range leaf.URIs {
		if u.Scheme != "spiffe" || (trustDomain != "" && u.Host != trustDomain) {
			continue
		}
		name, ok := strings.CutPrefix(u.Path, "/service/")
		if ok && slices.Contains(services, name) {
			return nil
		}
	}
	td := trustDomain
	if td == "" {
		td = foundTrustDomain(leaf.URIs)
	}
	e := &WrongServerError{}
	for _, s := range services {
		e.Expected = append(e.Expected, ServiceURI(td, s).String())
	}
	for _, u := range leaf.URIs {
		e.Found = append(e.Found, u.String())
	}
	return e
}

// foundTrustDomain is the trust domain of a certificate's first berth URI,
// to render what was expected in the same terms; "<trust-domain>" if none.
func foundTrustDomain(uris []*url.URL) string {
	for _, u := range uris {
		if u.Scheme == "spiffe" && u.Host != "" {
			return u.Host
		}
	}
	return "<trust-domain>"
}

// ExpectServer makes cfg refuse, during the handshake, a server whose
// certificate is not that of one of services in trustDomain (see
// CheckServer). It runs after cfg's own verification: the chain checks of
// crypto/tls, or the VerifyConnection cfg already has (CA pinning). Every
// berth client sets it, so that one service's key cannot stand in for
// another: the heartbeat service's certificate is no good as the
// registration service's. It returns cfg.
func ExpectServer(cfg *tls.Config, trustDomain string, services ...string) *tls.Config {
	if len(services) == 0 {
		panic("mtls.ExpectServer: no service named")
	}
	before := cfg.VerifyConnection
	services = slices.Clone(services)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if before != nil {
			if err := before(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: the server sent no certificate", ErrWrongServer)
		}
		return CheckServer(cs.PeerCertificates[0], trustDomain, services...)
	}
	return cfg
}

// TrustDomainOf returns the trust domain of a berth certificate's URI
// SAN, or "" if it has none: clients learn it from their own certificate.
func TrustDomainOf(leaf *x509.Certificate) string {
	if leaf == nil {
		return ""
	}
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" && u.Host != "" {
			return u.Host
		}
	}
	return ""
}
