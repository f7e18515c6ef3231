package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/pki"
)

// creds are the credentials of the roles a process runs, each read from
// its own directory. No process opens the root key or the admin's key,
// and only the CA role opens the intermediate key.
type creds struct {
	trustDomain string
	root        *x509.Certificate
	roles       map[string]*pki.Role
	// api is the front door's own identity, with which it forwards REST
	// calls to the services; nil unless the process serves REST.
	api *pki.Role
}

// servedRoles are the roles whose services role runs.
func servedRoles(role string) []string {
	switch role {
	case RoleAll:
		return []string{RoleCA, RoleBundles, RoleHeartbeat, RoleRegistration}
	case RoleAPI:
		return []string{pki.ServiceAPI}
	}
	return []string{role}
}

// openCreds opens the credentials of the roles c runs from c.PKIDir.
func openCreds(c Config) (*creds, error) {
	if c.Role == RoleAll {
		// Every role's own directory, from the whole PKI directory.
		if _, err := pki.Load(c.PKIDir); err != nil {
			return nil, fmt.Errorf("role all needs the whole PKI directory made by berthd init: %w", err)
		}
	}
	cr := &creds{roles: map[string]*pki.Role{}}
	for _, name := range servedRoles(c.Role) {
		r, err := pki.OpenRole(c.PKIDir, name)
		if err != nil {
			return nil, err
		}
		if cr.root == nil {
			cr.trustDomain, cr.root = r.TrustDomain, r.Root
		} else if r.TrustDomain != cr.trustDomain || !r.Root.Equal(cr.root) {
			return nil, fmt.Errorf("the %s role's directory %s is of another PKI", name, r.Dir)
		}
		cr.roles[name] = r
	}
	if c.Role == RoleAPI {
		cr.api = cr.roles[pki.ServiceAPI]
	} else if c.servesREST() {
		r, err := pki.OpenRole(c.PKIDir, pki.ServiceAPI)
		if err != nil {
			return nil, err
		}
		if r.TrustDomain != cr.trustDomain || !r.Root.Equal(cr.root) {
			return nil, fmt.Errorf("the api role's directory %s is of another PKI", r.Dir)
		}
		cr.api = r
	}
	return cr, nil
}

func (cr *creds) rootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(cr.root)
	return p
}

// listenerCert is the certificate the process serves with: its role's own,
// or, for a process serving every role, one issued at start by its CA role
// that carries the identity of each service it serves.
func (cr *creds) listenerCert(sc *pki.SignerConfig, now time.Time) (tls.Certificate, error) {
	if len(cr.roles) == 1 {
		for _, r := range cr.roles {
			return r.Cert, nil
		}
	}
	if sc == nil {
		return tls.Certificate{}, fmt.Errorf("a listener serving several roles needs the CA role")
	}
	var roles []*pki.Role
	for _, name := range servedRoles(RoleAll) {
		roles = append(roles, cr.roles[name])
	}
	return pki.ListenerCertificate(*sc, roles, now)
}
