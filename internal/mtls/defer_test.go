package mtls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
)

// TestDeferStreams: while the server defers, a client offering
// ProtoDeferrable is refused in its handshake, and the server's side ends
// with ErrDeferred; a client that does not offer it is served, and the
// server is not even asked. Once the server stops deferring, the
// deferrable client is served and negotiates "h2".
func TestDeferStreams(t *testing.T) {
	l := grpctest.NewPKI(t)
	srv, err := l.ServiceCertificate(pki.ServiceHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		deferNow   bool
		deferrable bool
		asked      int64
		wantErr    string // the client's; "" for served
	}{
		{name: "deferrable, while deferring", deferNow: true, deferrable: true, asked: 1, wantErr: "tls: internal error"},
		{name: "not deferrable, while deferring", deferNow: true, deferrable: false, asked: 0},
		{name: "deferrable, not deferring", deferNow: false, deferrable: true, asked: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var asked atomic.Int64
			scfg := mtls.DeferStreams(mtls.ServerConfig(srv), func() bool {
				asked.Add(1)
				return tt.deferNow
			})
			scfg.NextProtos = []string{"h2"}
			ccfg := client(admin, l)
			if tt.deferrable {
				mtls.Deferrable(ccfg)
			} else {
				ccfg.NextProtos = []string{"h2"}
			}
			proto, serverErr, err := handshakeWith(t, scfg, ccfg)
			if got := asked.Load(); got != tt.asked {
				t.Errorf("server asked %d times whether to defer, want %d", got, tt.asked)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("client's handshake: %v, want an error with %q", err, tt.wantErr)
				}
				if !errors.Is(serverErr, mtls.ErrDeferred) {
					t.Errorf("server's handshake: %v, want ErrDeferred", serverErr)
				}
				return
			}
			if err != nil || serverErr != nil {
				t.Fatalf("handshake: client %v, server %v", err, serverErr)
			}
			if proto != "h2" {
				t.Errorf("negotiated %q, want h2", proto)
			}
		})
	}
}

// handshakeWith runs a real TLS handshake between a server configured by
// scfg and a client configured by ccfg. It returns the protocol the client
// negotiated and both sides' errors.
func handshakeWith(t *testing.T, scfg, ccfg *tls.Config) (proto string, serverErr, clientErr error) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- c.(*tls.Conn).HandshakeContext(context.Background())
	}()
	c, err := tls.Dial("tcp", lis.Addr().String(), ccfg)
	if err == nil {
		proto = c.ConnectionState().NegotiatedProtocol
		c.Close()
	}
	return proto, <-done, err
}
