package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// session is one run of a leaf command: its resolved settings, where it
// writes, and the connections it opens on first use.
type session struct {
	cfg  Config
	set  settings
	path []string

	tls     *tls.Config
	conns   map[connKey]*grpc.ClientConn
	admin   berthv1.NodeAdminServiceClient
	bundles berthv1.BundleAdminServiceClient
	health  berthv1.HeartbeatAdminServiceClient
	ca      berthv1.CertificateAuthorityServiceClient
	leaf    *x509.Certificate

	// warnedHealth says the heartbeat service's failure was reported.
	warnedHealth bool
}

// connKey names a connection: where, and which berth service must be
// there. Services at one address get a connection each, every one checked
// for its own service's identity.
type connKey struct{ addr, service string }

func (s *session) json() bool { return s.set.output == formatJSON }

// structured says the output is a document (JSON or YAML), not a table.
func (s *session) structured() bool { return s.set.output == formatJSON || s.set.output == formatYAML }

// wide says tables show their extra columns.
func (s *session) wide() bool { return s.set.output == formatWide }

// usagef reports a usage error of the running command.
func (s *session) usagef(format string, args ...any) error {
	return usagef(s.path, "%s"+format, append([]any{prefix(s.path)}, args...)...)
}

// exactArgs checks the positional arguments of a command taking names.
func (s *session) exactArgs(args []string, names ...string) error {
	if len(args) < len(names) {
		return s.usagef("missing %s", names[len(args)])
	}
	if len(args) > len(names) {
		return s.usagef("unexpected argument %q", args[len(names)])
	}
	for i, a := range args {
		if strings.TrimSpace(a) == "" {
			return s.usagef("empty %s", names[i])
		}
	}
	return nil
}

// nodeAdmin connects to the registration service on first use.
func (s *session) nodeAdmin() (berthv1.NodeAdminServiceClient, error) {
	if s.admin != nil {
		return s.admin, nil
	}
	if missing := s.set.missingConnection(); missing != "" {
		return nil, usagef(s.path, "missing connection settings: set %s", missing)
	}
	conn, err := s.dial(s.set.server, mtls.ServiceRegistration)
	if err != nil {
		return nil, err
	}
	s.admin = berthv1.NewNodeAdminServiceClient(conn)
	return s.admin, nil
}

// bundleAdmin connects to the bundles service on first use, sharing the
// registration service's connection when both are at one address.
func (s *session) bundleAdmin() (berthv1.BundleAdminServiceClient, error) {
	if s.bundles != nil {
		return s.bundles, nil
	}
	if missing := s.set.missing(need{bundles: true}); missing != "" {
		return nil, usagef(s.path, "missing connection settings: set %s", missing)
	}
	conn, err := s.dial(s.set.bundlesServer, mtls.ServiceBundles)
	if err != nil {
		return nil, err
	}
	s.bundles = berthv1.NewBundleAdminServiceClient(conn)
	return s.bundles, nil
}

// heartbeatAdmin connects to the heartbeat service on first use, sharing a
// connection with the other services at the same address.
func (s *session) heartbeatAdmin() (berthv1.HeartbeatAdminServiceClient, error) {
	if s.health != nil {
		return s.health, nil
	}
	if missing := s.set.missing(need{heartbeat: true}); missing != "" {
		return nil, usagef(s.path, "missing connection settings: set %s", missing)
	}
	conn, err := s.dial(s.set.heartbeatServer, mtls.ServiceHeartbeat)
	if err != nil {
		return nil, err
	}
	s.health = berthv1.NewHeartbeatAdminServiceClient(conn)
	return s.health, nil
}

// caClient connects to the CA service on first use, sharing a connection
// with the other services at the same address.
func (s *session) caClient() (berthv1.CertificateAuthorityServiceClient, error) {
	if s.ca != nil {
		return s.ca, nil
	}
	if missing := s.set.missing(need{ca: true}); missing != "" {
		return nil, usagef(s.path, "missing connection settings: set %s", missing)
	}
	conn, err := s.dial(s.set.caServer, mtls.ServiceCA)
	if err != nil {
		return nil, err
	}
	s.ca = berthv1.NewCertificateAuthorityServiceClient(conn)
	return s.ca, nil
}

// dial returns the connection to the berth service at addr, opening it on
// first use with the admin credentials, which are loaded once per session.
// The handshake refuses a server that is neither service nor the front
// door, saying which identity it found.
func (s *session) dial(addr, service string) (*grpc.ClientConn, error) {
	key := connKey{addr, service}
	if conn := s.conns[key]; conn != nil {
		return conn, nil
	}
	if s.tls == nil {
		cfg, err := s.loadTLS()
		if err != nil {
			return nil, err
		}
		s.tls = cfg
	}
	// The front door (the api identity) serves every admin API too, and
	// forwards to the service meant. With a token there is no certificate
	// of its own to learn the trust domain from: the CA roots decide.
	cfg := mtls.ExpectServer(s.tls.Clone(), mtls.TrustDomainOf(s.leaf), service, mtls.ServiceAPI)
	var opts []grpc.DialOption
	if s.set.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(s.set.token)))
	}
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: cfg, Options: opts})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	if s.conns == nil {
		s.conns = map[connKey]*grpc.ClientConn{}
	}
	s.conns[key] = conn
	return conn, nil
}

// loadTLS reads the admin certificate, its key and the CA roots; with an
// API token, only the roots: the token is the credential.
func (s *session) loadTLS() (*tls.Config, error) {
	if s.set.token != "" {
		roots, err := mtls.LoadPool(s.set.ca)
		if err != nil {
			return nil, fmt.Errorf("load CA certificates (%s %s): %w", s.set.sources["BERTH_CA"], s.set.ca, err)
		}
		return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}, nil
	}
	cert, err := tls.LoadX509KeyPair(s.set.cert, s.set.key)
	if err != nil {
		return nil, fmt.Errorf("load admin certificate (%s %s, %s %s): %w",
			s.set.sources["BERTH_CERT"], s.set.cert, s.set.sources["BERTH_KEY"], s.set.key, err)
	}
	s.leaf = cert.Leaf
	if s.leaf == nil {
		if s.leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse admin certificate %s: %w", s.set.cert, err)
		}
	}
	roots, err := mtls.LoadPool(s.set.ca)
	if err != nil {
		return nil, fmt.Errorf("load CA certificates (%s %s): %w", s.set.sources["BERTH_CA"], s.set.ca, err)
	}
	return mtls.ClientConfig(cert, roots), nil
}

func (s *session) close() {
	for _, conn := range s.conns {
		_ = conn.Close()
	}
}

// callError describes a failed call to the registration service as
// "<what>: <server message>", adding what an operator needs when the cause
// is on their side of the wire.
func (s *session) callError(what string, err error) error {
	if found, ok := wrongServer(err); ok {
		return fmt.Errorf("%s: %s is not the registration service: %s (%s)", what, s.set.server, found, s.addressHint("BERTH_SERVER", "--server"))
	}
	return s.callErrorAt(s.set.server, what, err)
}

// bundleCallError is callError for a call to the bundles service. A server
// without the bundles admin API is most likely the registration service of
// a deployment that runs its services apart, reached through the default.
func (s *session) bundleCallError(what string, err error) error {
	if found, ok := wrongServer(err); ok {
		return fmt.Errorf("%s: %s is not the bundles service: %s (%s)", what, s.set.bundlesServer, found, s.addressHint("BERTH_BUNDLES_SERVER", "--bundles-server"))
	}
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("%s: %s has no bundles service (%s)", what, s.set.bundlesServer, s.addressHint("BERTH_BUNDLES_SERVER", "--bundles-server"))
	}
	return s.callErrorAt(s.set.bundlesServer, what, err)
}

// heartbeatCallError is callError for a call to the heartbeat service,
// explaining a server that has no heartbeat service as bundleCallError
// does for bundles.
func (s *session) heartbeatCallError(what string, err error) error {
	if found, ok := wrongServer(err); ok {
		return fmt.Errorf("%s: %s is not the heartbeat service: %s (%s)", what, s.set.heartbeatServer, found, s.addressHint("BERTH_HEARTBEAT_SERVER", "--heartbeat-server"))
	}
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("%s: %s has no heartbeat service (%s)", what, s.set.heartbeatServer, s.addressHint("BERTH_HEARTBEAT_SERVER", "--heartbeat-server"))
	}
	return s.callErrorAt(s.set.heartbeatServer, what, err)
}

// caCallError is callError for a call to the CA service, explaining a
// server that has no CA service as bundleCallError does for bundles.
func (s *session) caCallError(what string, err error) error {
	if found, ok := wrongServer(err); ok {
		return fmt.Errorf("%s: %s is not the CA service: %s (%s)", what, s.set.caServer, found, s.addressHint("BERTH_CA_SERVER", "--ca-server"))
	}
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("%s: %s has no CA service (%s)", what, s.set.caServer, s.addressHint("BERTH_CA_SERVER", "--ca-server"))
	}
	return s.callErrorAt(s.set.caServer, what, err)
}

// addressHint tells where a service's address came from: its own flag or
// variable ("check --heartbeat-server") or the --server default.
func (s *session) addressHint(env, flag string) string {
	src := s.set.sources[env]
	if src == flag || src == env {
		return "check " + src
	}
	return fmt.Sprintf("the address comes from %s; set %s or %s", src, flag, env)
}

// callErrorAt is callError for a call to the server at addr.
func (s *session) callErrorAt(addr, what string, err error) error {
	return fmt.Errorf("%s: %s", what, s.statusMessage(addr, err))
}

// statusMessage is the server's message of a failed call to addr, with what
// an operator needs when the cause is on their side of the wire.
func (s *session) statusMessage(addr string, err error) string {
	st := status.Convert(err)
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if transport, ok := transportCause(msg); ok {
			if found, ok := wrongServer(err); ok {
				msg = fmt.Sprintf("the server at %s is not the service meant: %s (check the address)", addr, found)
			} else if strings.Contains(msg, "authentication handshake failed") {
				msg = fmt.Sprintf("TLS handshake with %s failed (check %s): %s", addr, s.set.sources["BERTH_CA"], transport)
			} else {
				msg = fmt.Sprintf("cannot reach server %s: %s", addr, transport)
			}
		}
	case codes.DeadlineExceeded:
		msg = fmt.Sprintf("no answer from %s within %s (raise --timeout)", addr, s.set.timeout)
	case codes.Canceled:
		msg = "interrupted"
	case codes.Unauthenticated:
		if s.set.token != "" {
			msg += fmt.Sprintf(" (check the API token from %s; only the front door takes tokens: berthd dev, or berthd serve --role all or api)", s.tokenSource())
		} else {
			msg += fmt.Sprintf(" (check %s)", s.set.sources["BERTH_CERT"])
		}
	case codes.PermissionDenied:
		if s.set.token != "" {
			msg += fmt.Sprintf(" (the role of the API token from %s does not allow this: viewers read, operators also act on nodes and bundles, admins also manage tokens and settings)", s.tokenSource())
		} else if hint := s.notAdminHint(); hint != "" {
			msg += " (" + hint + ")"
		}
	}
	return msg
}

// tokenSource names where the API token came from.
func (s *session) tokenSource() string {
	if src := s.set.sources["BERTH_API_TOKEN"]; src != "" && s.set.sources["BERTH_API_TOKEN_FILE"] == "" {
		return src
	}
	return s.set.sources["BERTH_API_TOKEN_FILE"]
}

// bearerToken presents an API token on every call, as the front door
// takes it: "authorization: Bearer TOKEN", over TLS only.
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return true }

// notAdminHint explains a refusal caused by presenting a certificate that is
// not an admin identity, such as a node's or a service's.
func (s *session) notAdminHint() string {
	if s.leaf == nil {
		return ""
	}
	src := s.set.sources["BERTH_CERT"]
	if len(s.leaf.URIs) != 1 {
		return fmt.Sprintf("the certificate from %s has no berth identity; it must be an admin certificate", src)
	}
	u := s.leaf.URIs[0]
	if strings.HasPrefix(u.Path, "/admin/") {
		return ""
	}
	return fmt.Sprintf("the certificate from %s is %s, not an admin identity", src, u)
}

// transportCause extracts the cause from gRPC's client-side connection
// errors; ok is false for an Unavailable status sent by the server itself.
func transportCause(msg string) (string, bool) {
	if !strings.HasPrefix(msg, "connection error") && !strings.HasPrefix(msg, "name resolver error") &&
		!strings.Contains(msg, "transport:") {
		return msg, false
	}
	if _, desc, ok := strings.Cut(msg, `desc = "`); ok {
		msg = strings.TrimSuffix(desc, `"`)
	}
	msg = strings.TrimPrefix(msg, "transport: ")
	msg = strings.TrimPrefix(msg, "Error while dialing: ")
	msg = strings.TrimPrefix(msg, "authentication handshake failed: ")
	return msg, true
}

// wrongServer returns "expected …, found …" when err is a connection the
// client refused because the server was another berth service (see
// mtls.ExpectServer); gRPC hands that on only as text.
func wrongServer(err error) (string, bool) {
	st := status.Convert(err)
	if st.Code() != codes.Unavailable {
		return "", false
	}
	msg := st.Message()
	i := strings.Index(msg, "expected spiffe://")
	if i < 0 {
		return "", false
	}
	return strings.TrimSuffix(msg[i:], `"`), true
}
