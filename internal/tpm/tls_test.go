package tpm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/tpm"
	"github.com/berth-dev/berth/internal/tpm/tpmtest"
)

// selfSigned makes a certificate for key, signed by signer (the key itself,
// for a self-signed one, as a node's first registration uses).
func selfSigned(t *testing.T, key any, signer any, isCA bool) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "node"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key, signer)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLSHandshake runs real TLS handshakes in which the TPM's identity
// key authenticates the client, as a node's agent does, in both TLS 1.3
// and TLS 1.2.
func TestTLSHandshake(t *testing.T) {
	tp := open(t, tpmtest.Start(t), tpm.Config{})
	nodeCert := selfSigned(t, tp.Identity().Public(), tp.Identity(), false)

	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serverCert := selfSigned(t, &serverKey.PublicKey, serverKey, true)
	roots := x509.NewCertPool()
	roots.AddCert(serverCert)

	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			peer := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					peer <- err
					return
				}
				defer c.Close()
				srv := tls.Server(c, &tls.Config{
					Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey}},
					ClientAuth:   tls.RequireAnyClientCert,
					MinVersion:   version,
					MaxVersion:   version,
				})
				if err := srv.HandshakeContext(testCtx(t)); err != nil {
					peer <- err
					return
				}
				got := srv.ConnectionState().PeerCertificates[0].PublicKey.(*ecdsa.PublicKey)
				if !got.Equal(tp.Identity().Public()) {
					peer <- errors.New("the client authenticated with another key")
					return
				}
				peer <- nil
			}()

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cli := tls.Client(c, &tls.Config{
				Certificates: []tls.Certificate{{Certificate: [][]byte{nodeCert.Raw}, PrivateKey: tp.Identity()}},
				RootCAs:      roots,
				ServerName:   "localhost",
				MinVersion:   version,
				MaxVersion:   version,
			})
			ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
			defer cancel()
			if err := cli.HandshakeContext(ctx); err != nil {
				t.Fatalf("client handshake: %v", err)
			}
			if err := <-peer; err != nil {
				t.Fatalf("server side: %v", err)
			}
		})
	}
}
