package cli_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/cli"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// fakeCA is a CertificateAuthorityService answering GetCRL with getCRL.
type fakeCA struct {
	berthv1.UnimplementedCertificateAuthorityServiceServer
	getCRL         func(context.Context, *berthv1.GetCRLRequest) (*berthv1.GetCRLResponse, error)
	getRevocations func(context.Context, *berthv1.GetRevocationsRequest) (*berthv1.GetRevocationsResponse, error)
	recorder
}

func (f *fakeCA) GetRevocations(ctx context.Context, r *berthv1.GetRevocationsRequest) (*berthv1.GetRevocationsResponse, error) {
	return handle(ctx, &f.recorder, "GetRevocations", r, f.getRevocations)
}

func (f *fakeCA) GetCRL(ctx context.Context, r *berthv1.GetCRLRequest) (*berthv1.GetCRLResponse, error) {
	return handle(ctx, &f.recorder, "GetCRL", r, f.getCRL)
}

// serveCA serves fake on an address of its own, as berthd serve --role ca.
func serveCA(t *testing.T, pki *testPKI, fake *fakeCA) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(rpc.ServerConfig{Name: "ca", TrustDomain: trustDomain, Cert: pki.serverFor(t, "ca"), Roots: pki.roots,
		Policy: rpc.Policy{berthv1.CertificateAuthorityService_GetCRL_FullMethodName: rpc.Anyone,
			berthv1.CertificateAuthorityService_GetRevocations_FullMethodName: rpc.Anyone}})
	berthv1.RegisterCertificateAuthorityServiceServer(srv.Server, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// testCRL is a real signed CRL listing one serial.
func testCRL(t *testing.T) []byte {
	t.Helper()
	ca := issue(t, caTemplate("crl issuer"), newKey(t), nil)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1796498931000000),
		ThisUpdate: testNow,
		NextUpdate: testNow.Add(7 * 24 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: big.NewInt(0xabcdef), RevocationTime: testNow.Add(-time.Hour)},
		},
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCACRL(t *testing.T) {
	pki := newTestPKI(t)
	der := testCRL(t)
	fake := &fakeCA{getCRL: func(context.Context, *berthv1.GetCRLRequest) (*berthv1.GetCRLResponse, error) {
		return &berthv1.GetCRLResponse{Crl: der, CrlNumber: "1796498931000000", Revoked: 1,
			ThisUpdate: timestamppb.New(testNow), NextUpdate: timestamppb.New(testNow.Add(7 * 24 * time.Hour))}, nil
	}}
	caAddr := serveCA(t, pki, fake)
	h := start(t, pki, &fakeAdmin{})

	t.Run("PEM", func(t *testing.T) {
		r := h.run("ca", "crl", "--ca-server", caAddr)
		checkOK(t, r)
		block, rest := pem.Decode([]byte(r.stdout))
		if block == nil || block.Type != "X509 CRL" || string(block.Bytes) != string(der) || len(rest) != 0 {
			t.Fatalf("stdout is not the CRL as one PEM block:\n%s", r.stdout)
		}
		if _, err := x509.ParseRevocationList(block.Bytes); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("DER from BERTH_CA_SERVER", func(t *testing.T) {
		r := runEnv(t, h.withEnv(map[string]string{"BERTH_CA_SERVER": caAddr}), "ca", "crl", "--der")
		checkOK(t, r)
		if r.stdout != string(der) {
			t.Fatal("--der did not print the CRL's DER bytes")
		}
	})
	t.Run("JSON", func(t *testing.T) {
		r := h.run("ca", "crl", "--ca-server", caAddr, "-o", "json")
		checkOK(t, r)
		var got map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"crl_number": "1796498931000000", "this_update": "2026-11-21T12:00:00Z",
			"next_update": "2026-11-28T12:00:00Z", "revoked": float64(1)}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
		if s, _ := got["crl"].(string); !strings.HasPrefix(s, "-----BEGIN X509 CRL-----") {
			t.Errorf("crl = %q, want PEM", got["crl"])
		}
	})
	if n := len(fake.received()); n != 3 {
		t.Errorf("CA received %d calls, want 3", n)
	}

	for _, tc := range []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		want     string
	}{
		{"DER and JSON", nil, []string{"ca", "crl", "--der", "-o", "json"}, cli.ExitUsage, "ca crl: --der and -o json do not go together"},
		{"stray argument", nil, []string{"ca", "crl", "x"}, cli.ExitUsage, `ca crl: unexpected argument "x"`},
		{"no server", map[string]string{"BERTH_SERVER": ""}, []string{"ca", "crl"}, cli.ExitUsage,
			"missing connection settings: set --ca-server or BERTH_CA_SERVER (or --server or BERTH_SERVER)"},
		{"server without a CA", nil, []string{"ca", "crl"}, cli.ExitError,
			"get revocation list: " + h.addr + " is not the CA service: expected spiffe://berth.local/service/ca or spiffe://berth.local/service/api, " +
				"found spiffe://berth.local/service/registration, spiffe://berth.local/service/heartbeat " +
				"(the address comes from BERTH_SERVER; set --ca-server or BERTH_CA_SERVER)"},
		{"missing command", nil, []string{"ca"}, cli.ExitUsage, "ca: missing command (one of: crl)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runEnv(t, h.withEnv(tc.env), tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Fatalf("exit %d, stderr %q, stdout %q; want %d and %q", r.code, r.stderr, r.stdout, tc.wantCode, tc.want)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
				t.Errorf("error is not one line of reason: %q", r.stderr)
			}
		})
	}

	t.Run("CA cannot sign", func(t *testing.T) {
		down := serveCA(t, pki, &fakeCA{getCRL: func(context.Context, *berthv1.GetCRLRequest) (*berthv1.GetCRLResponse, error) {
			return nil, status.Error(codes.Unavailable, "database is unavailable; retry later")
		}})
		r := h.run("ca", "crl", "--ca-server", down)
		if r.code != cli.ExitError || r.stderr != "berthctl: get revocation list: database is unavailable; retry later\n" || r.stdout != "" {
			t.Fatalf("exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
		}
	})
}

// TestCACRLFromAServerWithoutTheCA: a server that is the CA by its
// certificate but does not serve the CA (another version, say).
func TestCACRLFromAServerWithoutTheCA(t *testing.T) {
	h := startAs(t, newTestPKI(t), []string{"registration", "ca"}, &fakeAdmin{}, nil, nil)
	r := h.run("ca", "crl")
	want := "berthctl: get revocation list: " + h.addr + " has no CA service (the address comes from BERTH_SERVER; set --ca-server or BERTH_CA_SERVER)\n"
	if r.code != cli.ExitError || r.stderr != want {
		t.Fatalf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
}
