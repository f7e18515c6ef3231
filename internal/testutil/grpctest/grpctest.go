// Package grpctest starts berth services for tests the way berthd does:
// a real gRPC server with berth's interceptors (recovery, logging,
// authorisation) and mutual TLS with certificates made at run time by
// internal/pki, over bufconn or loopback TCP. It hands out client
// connections for every kind of caller: admins, each service with its own
// role's credentials, nodes holding an issued certificate, bare node keys
// (as an agent before its first certificate), callers without a
// certificate and callers from another deployment. Every connection checks,
// as berth's clients do, that the server is the service it serves.
//
//	srv := grpctest.New(t, grpctest.Config{Clock: clk})
//	svc, _ := ca.New(ca.Config{Signer: srv.Signer, ...})
//	srv.Serve(t, pki.ServiceCA, svc.Policy(), svc.Register)
//	client := berthv1.NewCertificateAuthorityServiceClient(srv.Service(t, pki.ServiceRegistration))
package grpctest

import (
	"context"
	"crypto"
	"crypto/tls"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
)

// Config describes a test server.
type Config struct {
	// Clock dates the node certificates Signer issues; the system clock
	// when nil. Give the services under test the same one.
	Clock clock.Clock
	// TCP listens on loopback TCP instead of bufconn, for clients that
	// dial an address themselves (an agent, another service).
	TCP bool
	// Logger is the server's logger; it discards everything when nil.
	Logger *slog.Logger
	// Limits are the server's connection limits; zero fields take
	// berthd's defaults.
	Limits rpc.Limits
}

// Server is a deployment's PKI and a listener; Serve starts the gRPC
// server on it. Connections may be made before Serve: they connect lazily.
type Server struct {
	// Layout is the deployment's PKI, made by pki.Init in a temporary
	// directory.
	Layout *pki.Layout
	// Signer is the deployment's CA core, on Config.Clock.
	Signer *pki.Signer
	// Addr is the loopback address with Config.TCP, else empty.
	Addr string

	log    *slog.Logger
	limits rpc.Limits
	lis    net.Listener
	buf    *bufconn.Listener

	mu sync.Mutex
	// expect are the services clients check the server is.
	expect []string
}

// New makes a PKI and a listener; both go away when the test ends.
func New(t testing.TB, c Config) *Server {
	t.Helper()
	layout := NewPKI(t)
	sc, err := layout.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	sc.Clock = c.Clock
	signer, err := pki.NewSigner(sc)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Layout: layout, Signer: signer, log: c.Logger, limits: c.Limits}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if c.TCP {
		if s.lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		s.Addr = s.lis.Addr().String()
	} else {
		s.buf = bufconn.Listen(1 << 20)
		s.lis = s.buf
	}
	t.Cleanup(func() { s.lis.Close() })
	return s
}

// NewPKI makes a deployment's PKI in a temporary directory.
func NewPKI(t testing.TB) *pki.Layout { return NewPKIOf(t, "") }

// NewPKIOf makes a deployment's PKI in a temporary directory, in trust
// domain td ("" for the default).
func NewPKIOf(t testing.TB, td string) *pki.Layout {
	t.Helper()
	l, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(t.TempDir(), "pki"), TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Serve starts the server, presenting the certificate of the named
// service (a pki.Service… name) from its own role directory, with berth's
// interceptors applying policy; clients expect that service. register puts
// the services under test on it. The server stops when the test ends;
// Serve returns it for tests that stop it sooner.
func (s *Server) Serve(t testing.TB, name string, policy rpc.Policy, register func(grpc.ServiceRegistrar)) *rpc.Server {
	t.Helper()
	s.Expect(name)
	return s.ServeWith(t, s.ServiceCert(t, name), policy, register)
}

// ServeWith starts the server presenting cert, which may be another
// service's: clients keep expecting what Expect (or Serve) told them, so
// a test can check that they refuse an impostor.
func (s *Server) ServeWith(t testing.TB, cert tls.Certificate, policy rpc.Policy, register func(grpc.ServiceRegistrar)) *rpc.Server {
	t.Helper()
	srv := rpc.NewServer(rpc.ServerConfig{
		Name: "test", Logger: s.log, TrustDomain: s.Layout.TrustDomain,
		Cert: cert, Roots: s.Layout.RootPool(), Policy: policy, Limits: s.limits,
	})
	register(srv)
	go func() { _ = srv.Serve(s.lis) }()
	t.Cleanup(srv.Stop)
	return srv
}

// Expect sets the services clients check the server is, any of them; none
// turns the check off.
func (s *Server) Expect(services ...string) {
	s.mu.Lock()
	s.expect = services
	s.mu.Unlock()
}

// checkServer is the check of mtls.ExpectServer against what the server
// is expected to be at handshake time: connections may be made before
// Serve says which service it is.
func (s *Server) checkServer(cfg *tls.Config) *tls.Config {
	before := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if before != nil {
			if err := before(cs); err != nil {
				return err
			}
		}
		s.mu.Lock()
		expect := s.expect
		s.mu.Unlock()
		if len(expect) == 0 {
			return nil
		}
		return mtls.CheckServer(cs.PeerCertificates[0], s.Layout.TrustDomain, expect...)
	}
	return cfg
}

// Dial connects presenting cert and verifying the server against the
// deployment's root.
func (s *Server) Dial(t testing.TB, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := mtls.ClientConfig(cert, s.Layout.RootPool())
	cfg.ServerName = serverName
	return s.dial(t, cfg)
}

func (s *Server) dial(t testing.TB, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	return s.dialFrom(t, cfg, "")
}

// dialFrom dials from the loopback address src ("" for any).
func (s *Server) dialFrom(t testing.TB, cfg *tls.Config, src string) *grpc.ClientConn {
	t.Helper()
	c := rpc.ClientConfig{Addr: s.Addr, TLS: s.checkServer(cfg)}
	if src != "" {
		if s.buf != nil {
			t.Fatal("grpctest: a source address needs Config.TCP")
		}
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c.Options = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		})}
	}
	if s.buf != nil {
		c.Addr = "passthrough:///bufconn"
		c.Options = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.buf.DialContext(ctx)
		})}
	}
	conn, err := rpc.Dial(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// serverName is the name clients check the server's certificate for:
// every service certificate holds it, so a connection made before Serve
// chose the certificate verifies too.
const serverName = "127.0.0.1"

// AdminCert is the deployment's admin certificate.
func (s *Server) AdminCert(t testing.TB) tls.Certificate {
	t.Helper()
	return must(t)(s.Layout.AdminCertificate())
}

// ServiceCert is the certificate of the named service (a pki.Service…
// name), read from that role's own directory.
func (s *Server) ServiceCert(t testing.TB, name string) tls.Certificate {
	t.Helper()
	r, err := pki.OpenRole(s.Layout.RoleDir(name), name)
	if err != nil {
		t.Fatal(err)
	}
	return r.Cert
}

// Admin connects with the deployment's admin certificate.
func (s *Server) Admin(t testing.TB) *grpc.ClientConn {
	t.Helper()
	return s.Dial(t, s.AdminCert(t))
}

// Service connects as the named service.
func (s *Server) Service(t testing.TB, name string) *grpc.ClientConn {
	t.Helper()
	return s.Dial(t, s.ServiceCert(t, name))
}

// Node connects as node id, with a certificate issued for it by Signer.
func (s *Server) Node(t testing.TB, id string) *grpc.ClientConn {
	t.Helper()
	return s.Dial(t, s.NodeCert(t, id).TLS)
}

// Bootstrap connects as an agent does before it holds a certificate: with
// a self-signed certificate for key, checking the server's root against
// the deployment's CA hash.
func (s *Server) Bootstrap(t testing.TB, key crypto.Signer) *grpc.ClientConn {
	t.Helper()
	pin, err := mtls.ParseCAHash(s.Layout.CAHash())
	if err != nil {
		t.Fatal(err)
	}
	return s.dial(t, mtls.PinnedClientConfig(must(t)(mtls.SelfSigned(key)), pin, serverName))
}

// BootstrapFrom is Bootstrap from the loopback address src, such as
// "127.0.0.2", for tests of per-source limits. It needs Config.TCP.
func (s *Server) BootstrapFrom(t testing.TB, key crypto.Signer, src string) *grpc.ClientConn {
	t.Helper()
	pin, err := mtls.ParseCAHash(s.Layout.CAHash())
	if err != nil {
		t.Fatal(err)
	}
	return s.dialFrom(t, mtls.PinnedClientConfig(must(t)(mtls.SelfSigned(key)), pin, serverName), src)
}

// Anonymous connects without a client certificate.
func (s *Server) Anonymous(t testing.TB) *grpc.ClientConn {
	t.Helper()
	cfg := mtls.ClientConfig(tls.Certificate{}, s.Layout.RootPool())
	cfg.Certificates = nil
	cfg.ServerName = serverName
	return s.dial(t, cfg)
}

// Foreign connects with the admin certificate of another deployment, whose
// CA this server does not trust; it trusts the server's.
func (s *Server) Foreign(t testing.TB) *grpc.ClientConn {
	t.Helper()
	other := NewPKI(t)
	return s.Dial(t, must(t)(other.AdminCertificate()))
}

// ForeignService connects with the named service's certificate of another
// deployment in another trust domain ("other.example").
func (s *Server) ForeignService(t testing.TB, name string) *grpc.ClientConn {
	t.Helper()
	other := NewPKIOf(t, "other.example")
	return s.Dial(t, must(t)(other.ServiceCertificate(name)))
}

// must fails t when loading a certificate failed.
func must(t testing.TB) func(tls.Certificate, error) tls.Certificate {
	return func(c tls.Certificate, err error) tls.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}
