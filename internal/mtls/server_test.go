package mtls_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
)

// handshake runs a real TLS handshake between a server presenting srv and
// a client configured by cfg, and returns the client's error.
func handshake(t *testing.T, srv tls.Certificate, cfg *tls.Config) error {
	t.Helper()
	_, _, err := handshakeWith(t, mtls.ServerConfig(srv), cfg)
	return err
}

func TestExpectServer(t *testing.T) {
	l, other := grpctest.NewPKIOf(t, ""), grpctest.NewPKIOf(t, "other.example")
	cert := func(l *pki.Layout, name string) tls.Certificate {
		c, err := l.ServiceCertificate(name)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	admin, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pin, err := mtls.ParseCAHash(l.CAHash())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		server  tls.Certificate
		cfg     func() *tls.Config
		wantErr string // "" for success
	}{
		{
			name: "the service meant", server: cert(l, pki.ServiceRegistration),
			cfg: func() *tls.Config {
				return mtls.ExpectServer(client(admin, l), "berth.local", pki.ServiceRegistration)
			},
		},
		{
			name: "another service", server: cert(l, pki.ServiceHeartbeat),
			cfg: func() *tls.Config {
				return mtls.ExpectServer(client(admin, l), "berth.local", pki.ServiceRegistration)
			},
			wantErr: "expected spiffe://berth.local/service/registration, found spiffe://berth.local/service/heartbeat",
		},
		{
			name: "one of several accepted", server: cert(l, pki.ServiceBundles),
			cfg: func() *tls.Config {
				return mtls.ExpectServer(client(admin, l), "berth.local", pki.ServiceRegistration, pki.ServiceBundles)
			},
		},
		{
			name: "pinned, trust domain not known yet", server: cert(l, pki.ServiceRegistration),
			cfg: func() *tls.Config {
				return mtls.ExpectServer(mtls.PinnedClientConfig(admin, pin, "127.0.0.1"), "", pki.ServiceRegistration)
			},
		},
		{
			name: "pinned, another service", server: cert(l, pki.ServiceCA),
			cfg: func() *tls.Config {
				return mtls.ExpectServer(mtls.PinnedClientConfig(admin, pin, "127.0.0.1"), "", pki.ServiceRegistration)
			},
			wantErr: "expected spiffe://berth.local/service/registration, found spiffe://berth.local/service/ca",
		},
		{
			name: "pinned, another CA: the pin fails first", server: cert(other, pki.ServiceRegistration),
			cfg: func() *tls.Config {
				return mtls.ExpectServer(mtls.PinnedClientConfig(admin, pin, "127.0.0.1"), "", pki.ServiceRegistration)
			},
			wantErr: mtls.ErrCAPinMismatch.Error(),
		},
		{
			// The pin is on the root's key, not on the certificate a
			// server sends: another CA's chain that ends in the pinned
			// root's certificate must still verify under that key.
			name: "pinned, another CA's chain ending in the pinned root", server: withRoot(cert(other, pki.ServiceRegistration), l),
			cfg: func() *tls.Config {
				return mtls.ExpectServer(mtls.PinnedClientConfig(admin, pin, "127.0.0.1"), "", pki.ServiceRegistration)
			},
			wantErr: "verify server certificate",
		},
		{
			name: "pinned, the root left out", server: withoutRoot(cert(l, pki.ServiceRegistration)),
			cfg: func() *tls.Config {
				return mtls.ExpectServer(mtls.PinnedClientConfig(admin, pin, "127.0.0.1"), "", pki.ServiceRegistration)
			},
			wantErr: mtls.ErrCAPinMismatch.Error(),
		},
		{
			name: "the right service in another trust domain", server: cert(other, pki.ServiceRegistration),
			cfg: func() *tls.Config {
				cfg := client(admin, l)
				cfg.RootCAs.AddCert(other.Root)
				return mtls.ExpectServer(cfg, "berth.local", pki.ServiceRegistration)
			},
			wantErr: "expected spiffe://berth.local/service/registration, found spiffe://other.example/service/registration",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := handshake(t, tt.server, tt.cfg())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("handshake = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(tt.wantErr, "expected") && !errors.Is(err, mtls.ErrWrongServer) {
				t.Errorf("%v is not ErrWrongServer", err)
			}
		})
	}
}

// withRoot is c with the last certificate of its chain replaced by l's root.
func withRoot(c tls.Certificate, l *pki.Layout) tls.Certificate {
	chain := append([][]byte(nil), c.Certificate...)
	chain[len(chain)-1] = l.Root.Raw
	c.Certificate = chain
	return c
}

// withoutRoot is c without the root at the end of its chain.
func withoutRoot(c tls.Certificate) tls.Certificate {
	c.Certificate = c.Certificate[: len(c.Certificate)-1 : len(c.Certificate)-1]
	return c
}

func client(cert tls.Certificate, l *pki.Layout) *tls.Config {
	cfg := mtls.ClientConfig(cert, l.RootPool())
	cfg.ServerName = "127.0.0.1"
	return cfg
}
