package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store/castore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func keyHashOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return sum[:]
}

func (e *env) count(t *testing.T, nodeID string) int64 {
	t.Helper()
	n, err := e.store.CountIssued(context.Background(), nodeID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSignIdempotent: the same request ID gets the same certificate, from
// a fresh CSR of the same key too; another node or key under it is refused;
// a bad request ID is refused; none of it issues a second certificate.
func TestSignIdempotent(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		reg := e.client(t, e.srv.ServiceCert(t, pki.ServiceRegistration))
		ctx := context.Background()
		key, other := newKey(t), newKey(t)
		first, err := reg.Sign(ctx, &berthv1.SignRequest{RequestId: "req-1", NodeId: "n1", Hostname: "h1", Csr: csrFor(t, key, nil)})
		if err != nil {
			t.Fatal(err)
		}
		if got := first.GetCertificate().GetRequestId(); got != "req-1" {
			t.Errorf("request_id = %q, want req-1", got)
		}
		again, err := reg.Sign(ctx, &berthv1.SignRequest{RequestId: "req-1", NodeId: "n1", Hostname: "h1", Csr: csrFor(t, key, nil)})
		if err != nil {
			t.Fatalf("Sign again: %v", err)
		}
		if a, b := first.GetCertificate().GetSerial(), again.GetCertificate().GetSerial(); a != b {
			t.Errorf("serial %s, then %s for the same request", a, b)
		}
		for i := range first.GetCertificateChain() {
			if string(first.GetCertificateChain()[i]) != string(again.GetCertificateChain()[i]) {
				t.Errorf("chain link %d differs on the repeat", i)
			}
		}
		leaf, err := x509.ParseCertificate(again.GetCertificateChain()[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := leaf.CheckSignatureFrom(e.layout.Intermediate); err != nil {
			t.Errorf("repeated chain does not verify: %v", err)
		}

		tests := []struct {
			name     string
			req      *berthv1.SignRequest
			wantCode codes.Code
			wantMsg  string
		}{
			{"same ID, other key", &berthv1.SignRequest{RequestId: "req-1", NodeId: "n1", Hostname: "h1", Csr: csrFor(t, other, nil)}, codes.AlreadyExists, msgRequestReused},
			{"same ID, other node", &berthv1.SignRequest{RequestId: "req-1", NodeId: "n2", Hostname: "h1", Csr: csrFor(t, key, nil)}, codes.AlreadyExists, msgRequestReused},
			{"no request ID", &berthv1.SignRequest{NodeId: "n1", Hostname: "h1", Csr: csrFor(t, key, nil)}, codes.InvalidArgument, "request_id " + ruleRequestID},
			{"upper case", &berthv1.SignRequest{RequestId: "REQ", NodeId: "n1", Hostname: "h1", Csr: csrFor(t, key, nil)}, codes.InvalidArgument, "request_id " + ruleRequestID},
			{"space", &berthv1.SignRequest{RequestId: "a b", NodeId: "n1", Hostname: "h1", Csr: csrFor(t, key, nil)}, codes.InvalidArgument, "request_id " + ruleRequestID},
			{"too long", &berthv1.SignRequest{RequestId: strings.Repeat("a", 65), NodeId: "n1", Hostname: "h1", Csr: csrFor(t, key, nil)}, codes.InvalidArgument, "request_id " + ruleRequestID},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := reg.Sign(ctx, tt.req)
				wantCode(t, err, tt.wantCode)
				if msg := status.Convert(err).Message(); msg != tt.wantMsg {
					t.Errorf("message %q, want %q", msg, tt.wantMsg)
				}
			})
		}
		if n := e.count(t, ""); n != 1 {
			t.Errorf("%d certificates issued, want 1", n)
		}
	})
}

// TestSignRaceAcrossReplicas: two CA replicas on one database, each with
// its own store, asked for one request many times at once, issue one
// certificate, and every caller gets it.
func TestSignRaceAcrossReplicas(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		var open func() castore.Store
		switch engine {
		case pgtest.SQLite:
			path := filepath.Join(t.TempDir(), "ca.db")
			open = func() castore.Store {
				s, err := castore.Open(ctx, db.SQLite, path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(s.Close)
				return s
			}
		default:
			dsn := pgtest.NewDatabase(t)
			open = func() castore.Store {
				s, err := castore.Open(ctx, db.Postgres, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(s.Close)
				return s
			}
		}
		srv := grpctest.New(t, grpctest.Config{})
		var replicas [2]*Service
		stores := [2]castore.Store{open(), open()}
		for i := range replicas {
			svc, err := New(Config{Signer: srv.Signer, Store: stores[i], Roots: []*x509.Certificate{srv.Layout.Root}})
			if err != nil {
				t.Fatal(err)
			}
			replicas[i] = svc
		}
		csr := csrFor(t, newKey(t), nil)
		const calls = 16
		serials := make([]string, calls)
		errs := make([]error, calls)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				<-start
				resp, err := replicas[i%2].Sign(ctx, &berthv1.SignRequest{RequestId: "req-race", NodeId: "n1", Hostname: "h1", Csr: csr})
				serials[i], errs[i] = resp.GetCertificate().GetSerial(), err
			})
		}
		close(start)
		wg.Wait()
		for i := range calls {
			if errs[i] != nil {
				t.Fatalf("call %d: %v", i, errs[i])
			}
			if serials[i] != serials[0] {
				t.Errorf("call %d got serial %s, call 0 %s", i, serials[i], serials[0])
			}
		}
		if n, err := stores[0].CountIssued(ctx, "n1", time.Time{}); err != nil || n != 1 {
			t.Errorf("issued %d, %v; want 1", n, err)
		}
	})
}

// TestRevokeNodeCertificates: every certificate of the node goes, but the
// kept key's; then the node's own revocation takes all, and tells the
// services it is the node's. Bad requests change nothing.
func TestRevokeNodeCertificates(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		reg := e.client(t, e.srv.ServiceCert(t, pki.ServiceRegistration))
		ctx := context.Background()
		oldKey, newBoard := newKey(t), newKey(t)
		issue := func(id, node string, k *ecdsa.PrivateKey) string {
			t.Helper()
			resp, err := reg.Sign(ctx, &berthv1.SignRequest{RequestId: id, NodeId: node, Hostname: "h", Csr: csrFor(t, k, nil)})
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetCertificate().GetSerial()
		}
		a1, a2 := issue("a1", "n1", oldKey), issue("a2", "n1", oldKey)
		b1 := issue("b1", "n1", newBoard)
		other := issue("c1", "n2", oldKey)

		bad := []struct {
			name string
			req  *berthv1.RevokeNodeCertificatesRequest
			msg  string
		}{
			{"bad node ID", &berthv1.RevokeNodeCertificatesRequest{NodeId: "N1/.."}, "node_id " + ruleNodeID},
			{"no node ID", &berthv1.RevokeNodeCertificatesRequest{}, "node_id " + ruleNodeID},
			{"short key hash", &berthv1.RevokeNodeCertificatesRequest{NodeId: "n1", KeepKeySha256: []byte{1, 2}}, "keep_key_sha256 " + ruleKeyHash},
			{"kept key on a revoked node", &berthv1.RevokeNodeCertificatesRequest{NodeId: "n1", KeepKeySha256: keyHashOf(t, newBoard.Public()), NodeRevoked: true}, "keep_key_sha256 " + ruleKeepRevoked},
			{"control character", &berthv1.RevokeNodeCertificatesRequest{NodeId: "n1", Reason: "a\nb"}, "reason " + ruleReason},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				_, err := reg.RevokeNodeCertificates(ctx, tt.req)
				wantCode(t, err, codes.InvalidArgument)
				if msg := status.Convert(err).Message(); msg != tt.msg {
					t.Errorf("message %q, want %q", msg, tt.msg)
				}
			})
		}
		_, err := e.client(t, e.srv.AdminCert(t)).RevokeNodeCertificates(ctx, &berthv1.RevokeNodeCertificatesRequest{NodeId: "n1"})
		wantCode(t, err, codes.PermissionDenied)
		if revs, err := reg.GetRevocations(ctx, &berthv1.GetRevocationsRequest{}); err != nil || len(revs.GetRevocations()) != 0 {
			t.Fatalf("revocations after refused requests: %v, %v", revs, err)
		}

		// The board is replaced: the old key's certificates go.
		resp, err := reg.RevokeNodeCertificates(ctx, &berthv1.RevokeNodeCertificatesRequest{
			NodeId: "n1", Reason: "superseded", KeepKeySha256: keyHashOf(t, newBoard.Public()),
		})
		if err != nil || resp.GetRevoked() != 2 {
			t.Fatalf("RevokeNodeCertificates(replaced) = %v, %v; want 2", resp, err)
		}
		state := func() map[string]*berthv1.IssuedCertificate {
			t.Helper()
			list, err := reg.ListIssued(ctx, &berthv1.ListIssuedRequest{})
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]*berthv1.IssuedCertificate{}
			for _, c := range list.GetCertificates() {
				out[c.GetSerial()] = c
			}
			return out
		}
		got := state()
		for serial, want := range map[string]bool{a1: true, a2: true, b1: false, other: false} {
			if got[serial].GetRevoked() != want {
				t.Errorf("serial %s revoked = %v, want %v", serial, got[serial].GetRevoked(), want)
			}
		}
		if r := got[a1]; r.GetRevocationReason() != "superseded" || r.GetRevokedAt() == nil || r.GetRequestId() != "a1" {
			t.Errorf("a1 in the log: %v", r)
		}
		revs, err := reg.GetRevocations(ctx, &berthv1.GetRevocationsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range revs.GetRevocations() {
			if r.GetNodeRevoked() {
				t.Errorf("a replacement revoked the node: %v", r)
			}
		}

		// The node is revoked: all of its certificates, as the node's.
		e.clock.Advance(time.Minute)
		resp, err = reg.RevokeNodeCertificates(ctx, &berthv1.RevokeNodeCertificatesRequest{NodeId: "n1", Reason: "stolen", NodeRevoked: true})
		if err != nil || resp.GetRevoked() != 3 {
			t.Fatalf("RevokeNodeCertificates(node) = %v, %v; want 3", resp, err)
		}
		revs, err = reg.GetRevocations(ctx, &berthv1.GetRevocationsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range revs.GetRevocations() {
			seen[r.GetSerial()] = r.GetNodeRevoked()
		}
		if fmt.Sprint(seen) != fmt.Sprint(map[string]bool{a1: true, a2: true, b1: true}) {
			t.Errorf("revocations %v, want a1, a2, b1 as the node's", seen)
		}
		if got := state(); got[other].GetRevoked() {
			t.Error("another node's certificate was revoked")
		}
	})
}
