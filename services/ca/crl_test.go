package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/crl"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store/castore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// parseCRL parses a CRL and checks it is signed by the intermediate.
func (e *env) parseCRL(t *testing.T, der []byte) *x509.RevocationList {
	t.Helper()
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("parse CRL: %v", err)
	}
	if err := rl.CheckSignatureFrom(e.layout.Intermediate); err != nil {
		t.Fatalf("CRL is not signed by the intermediate: %v", err)
	}
	return rl
}

func serials(rl *x509.RevocationList) map[string]bool {
	out := map[string]bool{}
	for _, e := range rl.RevokedCertificateEntries {
		out[e.SerialNumber.Text(16)] = true
	}
	return out
}

// TestGetCRL: a revocation is in the CRL as soon as Revoke returns, with
// no time passing; the CRL is signed by the intermediate and numbered
// upwards; an unchanged log gives the same CRL.
func TestGetCRL(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		ids := e.identities(t)
		reg := e.client(t, ids["registration"])
		anyone := e.client(t, ids["bootstrap"])
		ctx := context.Background()

		empty, err := anyone.GetCRL(ctx, &berthv1.GetCRLRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if rl := e.parseCRL(t, empty.GetCrl()); len(rl.RevokedCertificateEntries) != 0 || empty.GetRevoked() != 0 {
			t.Fatalf("fresh CA lists %d revocations", len(rl.RevokedCertificateEntries))
		}
		var issued []string
		for _, id := range []string{"n1", "n2"} {
			resp, err := reg.Sign(ctx, &berthv1.SignRequest{RequestId: rid(), NodeId: id, Hostname: id, Csr: csrFor(t, newKey(t), nil)})
			if err != nil {
				t.Fatal(err)
			}
			issued = append(issued, resp.GetCertificate().GetSerial())
		}
		if _, err := reg.Revoke(ctx, &berthv1.RevokeRequest{Serial: issued[0], Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}
		got, err := anyone.GetCRL(ctx, &berthv1.GetCRLRequest{})
		if err != nil {
			t.Fatal(err)
		}
		rl := e.parseCRL(t, got.GetCrl())
		if s := serials(rl); len(s) != 1 || !s[issued[0]] || got.GetRevoked() != 1 {
			t.Fatalf("CRL lists %v (revoked %d), want only %s", s, got.GetRevoked(), issued[0])
		}
		if rl.Number.String() != got.GetCrlNumber() || !rl.ThisUpdate.Equal(got.GetThisUpdate().AsTime()) || !rl.NextUpdate.Equal(got.GetNextUpdate().AsTime()) {
			t.Errorf("response fields %s %v %v disagree with the CRL %v %v %v", got.GetCrlNumber(), got.GetThisUpdate().AsTime(), got.GetNextUpdate().AsTime(), rl.Number, rl.ThisUpdate, rl.NextUpdate)
		}
		prev, _ := new(big.Int).SetString(empty.GetCrlNumber(), 10)
		if rl.Number.Cmp(prev) <= 0 {
			t.Errorf("CRL number %v after a revocation is not above %v", rl.Number, prev)
		}
		again, err := anyone.GetCRL(ctx, &berthv1.GetCRLRequest{})
		if err != nil || string(again.GetCrl()) != string(got.GetCrl()) {
			t.Fatalf("unchanged log gave a different CRL (%v)", err)
		}
		// Revoking again changes nothing.
		if _, err := reg.Revoke(ctx, &berthv1.RevokeRequest{Serial: issued[0]}); err != nil {
			t.Fatal(err)
		}
		if again, _ := anyone.GetCRL(ctx, &berthv1.GetCRLRequest{}); string(again.GetCrl()) != string(got.GetCrl()) {
			t.Fatal("a repeated revocation re-signed the CRL")
		}
	})
}

// TestCRLFromAnotherReplica: a revocation written by another CA replica
// (straight into the shared store) appears once the check interval passed.
func TestCRLFromAnotherReplica(t *testing.T) {
	e := newEnv(t, pgtest.SQLite, nil)
	ctx := context.Background()
	c := e.client(t, e.identities(t)["admin"])
	reg := e.client(t, e.identities(t)["registration"])
	resp, err := reg.Sign(ctx, &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h1", Csr: csrFor(t, newKey(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCRL(ctx, &berthv1.GetCRLRequest{}); err != nil {
		t.Fatal(err)
	}
	serial := resp.GetCertificate().GetSerial()
	if _, err := e.store.Revoke(ctx, castore.Revocation{Serial: serial, Reason: "elsewhere", RevokedAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(crl.DefaultCheckInterval)
	got, err := c.GetCRL(ctx, &berthv1.GetCRLRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s := serials(e.parseCRL(t, got.GetCrl())); !s[serial] {
		t.Fatalf("CRL lists %v, want the other replica's revocation %s", s, serial)
	}
}

// TestGetCRLWithoutSigner: a CA built without the intermediate's key says
// so.
func TestGetCRLWithoutSigner(t *testing.T) {
	srv := grpctest.New(t, grpctest.Config{})
	svc, err := New(Config{Signer: srv.Signer, Store: newStore(t, pgtest.SQLite), Roots: []*x509.Certificate{srv.Layout.Root}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve(t, pki.ServiceCA, svc.Policy(), svc.Register)
	_, err = berthv1.NewCertificateAuthorityServiceClient(srv.Admin(t)).GetCRL(context.Background(), &berthv1.GetCRLRequest{})
	grpctest.WantStatus(t, err, codes.FailedPrecondition, msgNoCRL)
	rec := httptest.NewRecorder()
	svc.CRLHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, CRLPath, nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("HTTP without a signer: %d, want 404", rec.Code)
	}
	sc, err := srv.Layout.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Signer: srv.Signer, Store: newStore(t, pgtest.SQLite), Roots: []*x509.Certificate{srv.Layout.Root}, CRLIssuer: sc.Intermediate}); err == nil {
		t.Error("New accepted a CRL issuer without its key")
	}
}

// TestCRLOverHTTP: /crl serves DER as application/pkix-crl and /crl.pem
// PEM, both with conditional GET; nothing else is served.
func TestCRLOverHTTP(t *testing.T) {
	e := newEnv(t, pgtest.SQLite, nil)
	srv := httptest.NewServer(e.svc.CRLHandler())
	defer srv.Close()
	get := func(path string, header http.Header) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	resp, der := get(CRLPath, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET /crl: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rl := e.parseCRL(t, der)
	if exp, err := http.ParseTime(resp.Header.Get("Expires")); err != nil || !exp.Equal(rl.NextUpdate) {
		t.Errorf("Expires %q, want the CRL's nextUpdate %v", resp.Header.Get("Expires"), rl.NextUpdate)
	}
	resp, body := get(CRLPEMPath, nil)
	block, _ := pem.Decode(body)
	if resp.StatusCode != http.StatusOK || block == nil || block.Type != "X509 CRL" || string(block.Bytes) != string(der) {
		t.Fatalf("GET /crl.pem: %d, block %v", resp.StatusCode, block)
	}
	resp, _ = get(CRLPath, http.Header{"If-Modified-Since": {rl.ThisUpdate.UTC().Format(http.TimeFormat)}})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET of an unchanged CRL: %d, want 304", resp.StatusCode)
	}
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, CRLPath, http.StatusMethodNotAllowed},
		{http.MethodGet, "/metrics", http.StatusNotFound},
		{http.MethodGet, "/crl/x", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
}

// TestCRLStoreDown: with the store down and no CRL held, HTTP answers 503.
func TestCRLStoreDown(t *testing.T) {
	down := grpctest.DatabaseDown(t)
	e := newEnv(t, pgtest.SQLite, func(s castore.Store) castore.Store { return downStore{Store: s, err: down} })
	rec := httptest.NewRecorder()
	e.svc.CRLHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, CRLPath, nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != msgCRLUnavailable+"\n" {
		t.Errorf("store down: %d %q, want 503 and %q", rec.Code, rec.Body.String(), msgCRLUnavailable)
	}
}

// TestCRLRun: Run signs at start and keeps the CRL fresh.
func TestCRLRun(t *testing.T) {
	e := newEnv(t, pgtest.SQLite, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	e.clock.BlockUntil(1)
	c := e.client(t, e.identities(t)["admin"])
	first, err := c.GetCRL(ctx, &berthv1.GetCRLRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(crl.DefaultRefresh)
	e.clock.BlockUntil(1)
	second, err := c.GetCRL(ctx, &berthv1.GetCRLRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !second.GetThisUpdate().AsTime().After(first.GetThisUpdate().AsTime()) {
		t.Fatalf("CRL not re-signed after the refresh period: %v then %v", first.GetThisUpdate().AsTime(), second.GetThisUpdate().AsTime())
	}
}
