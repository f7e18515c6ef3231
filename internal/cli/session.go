package cli

import (
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
// writes, and the connection it opens on first use.
type session struct {
	cfg  Config
	set  settings
	path []string

	conn  *grpc.ClientConn
	admin berthv1.NodeAdminServiceClient
	leaf  *x509.Certificate
}

func (s *session) json() bool { return s.set.output == formatJSON }

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
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: s.set.server, TLS: mtls.ClientConfig(cert, roots)})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.set.server, err)
	}
	s.conn = conn
	s.admin = berthv1.NewNodeAdminServiceClient(conn)
	return s.admin, nil
}

func (s *session) close() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// callError describes a failed call as "<what>: <server message>", adding
// what an operator needs when the cause is on their side of the wire.
func (s *session) callError(what string, err error) error {
	st := status.Convert(err)
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if transport, ok := transportCause(msg); ok {
			if strings.Contains(msg, "authentication handshake failed") {
				msg = fmt.Sprintf("TLS handshake with %s failed (check %s): %s", s.set.server, s.set.sources["BERTH_CA"], transport)
			} else {
				msg = fmt.Sprintf("cannot reach server %s: %s", s.set.server, transport)
			}
		}
	case codes.DeadlineExceeded:
		msg = fmt.Sprintf("no answer from %s within %s (raise --timeout)", s.set.server, s.set.timeout)
	case codes.Canceled:
		msg = "interrupted"
	case codes.Unauthenticated:
		msg += fmt.Sprintf(" (check %s)", s.set.sources["BERTH_CERT"])
	case codes.PermissionDenied:
		if hint := s.notAdminHint(); hint != "" {
			msg += " (" + hint + ")"
		}
	}
	return fmt.Errorf("%s: %s", what, msg)
}

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
