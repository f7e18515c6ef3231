package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/castore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// newStore opens an empty CA store on engine.
func newStore(t testing.TB, engine string) castore.Store {
	t.Helper()
	ctx := context.Background()
	var (
		s   castore.Store
		err error
	)
	switch engine {
	case pgtest.SQLite:
		s, err = castore.Open(ctx, db.SQLite, filepath.Join(t.TempDir(), "ca.db"))
	case pgtest.Postgres:
		s, err = castore.Open(ctx, db.Postgres, pgtest.NewDatabase(t))
	default:
		t.Fatalf("unknown engine %q", engine)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// env is a CA service, with a real store, served by grpctest.
type env struct {
	srv    *grpctest.Server
	layout *pki.Layout
	signer *pki.Signer
	store  castore.Store
	clock  *clock.Fake
	logs   *grpctest.Logs
	svc    *Service
}

// newEnv serves the service on a store of engine; wrap, when set, stands
// between the service and the store.
func newEnv(t *testing.T, engine string, wrap func(castore.Store) castore.Store) *env {
	t.Helper()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	log, logs := grpctest.NewLogger()
	srv := grpctest.New(t, grpctest.Config{Clock: clk, Logger: log})
	e := &env{srv: srv, layout: srv.Layout, signer: srv.Signer, store: newStore(t, engine), clock: clk, logs: logs}
	store := e.store
	if wrap != nil {
		store = wrap(store)
	}
	sc, err := e.layout.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = New(Config{Signer: e.signer, Store: store, Roots: []*x509.Certificate{e.layout.Root}, Logger: log, Clock: clk,
		CRLIssuer: sc.Intermediate, CRLKey: sc.Key})
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve(t, pki.ServiceCA, e.svc.Policy(), e.svc.Register)
	return e
}

// client dials the service presenting cert.
func (e *env) client(t *testing.T, cert tls.Certificate) berthv1.CertificateAuthorityServiceClient {
	t.Helper()
	return berthv1.NewCertificateAuthorityServiceClient(e.srv.Dial(t, cert))
}

// identities are the callers the tests use, by name.
func (e *env) identities(t *testing.T) map[string]tls.Certificate {
	t.Helper()
	foreign := grpctest.NewPKI(t)
	foreignReg, err := foreign.ServiceCertificate(pki.ServiceRegistration)
	if err != nil {
		t.Fatal(err)
	}
	bootstrap, err := mtls.SelfSigned(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]tls.Certificate{
		"registration": e.srv.ServiceCert(t, pki.ServiceRegistration),
		"heartbeat":    e.srv.ServiceCert(t, pki.ServiceHeartbeat),
		"admin":        e.srv.AdminCert(t),
		"node":         e.srv.NodeCert(t, "n-node").TLS,
		"bootstrap":    bootstrap,
		"foreign CA":   foreignReg,
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey { return grpctest.NewKey(t) }

func csrFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	return grpctest.CSR(t, key, tmpl)
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	grpctest.WantCode(t, err, want)
}

func TestAuthorization(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		ids := e.identities(t)
		ctx := context.Background()
		calls := map[string]func(berthv1.CertificateAuthorityServiceClient) error{
			"Sign": func(c berthv1.CertificateAuthorityServiceClient) error {
				_, err := c.Sign(ctx, &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h1", Csr: csrFor(t, newKey(t), nil)})
				return err
			},
			// An unknown serial: NotFound proves the call got past authorisation.
			"Revoke": func(c berthv1.CertificateAuthorityServiceClient) error {
				_, err := c.Revoke(ctx, &berthv1.RevokeRequest{Serial: "abc"})
				return err
			},
			"GetTrustBundle": func(c berthv1.CertificateAuthorityServiceClient) error {
				_, err := c.GetTrustBundle(ctx, &berthv1.GetTrustBundleRequest{})
				return err
			},
			"GetRevocations": func(c berthv1.CertificateAuthorityServiceClient) error {
				_, err := c.GetRevocations(ctx, &berthv1.GetRevocationsRequest{})
				return err
			},
			"ListIssued": func(c berthv1.CertificateAuthorityServiceClient) error {
				_, err := c.ListIssued(ctx, &berthv1.ListIssuedRequest{CountOnly: true})
				return err
			},
			"GetCRL": func(c berthv1.CertificateAuthorityServiceClient) error {
				_, err := c.GetCRL(ctx, &berthv1.GetCRLRequest{})
				return err
			},
		}
		const (
			ok     = codes.OK
			denied = codes.PermissionDenied
			unauth = codes.Unauthenticated
		)
		tests := []struct {
			method string
			want   map[string]codes.Code
		}{
			{"Sign", map[string]codes.Code{"registration": ok, "heartbeat": denied, "admin": denied, "node": denied, "bootstrap": unauth, "foreign CA": unauth}},
			{"Revoke", map[string]codes.Code{"registration": codes.NotFound, "heartbeat": denied, "admin": denied, "node": denied, "bootstrap": unauth, "foreign CA": unauth}},
			{"GetTrustBundle", map[string]codes.Code{"registration": ok, "heartbeat": ok, "admin": ok, "node": ok, "bootstrap": ok, "foreign CA": ok}},
			{"GetRevocations", map[string]codes.Code{"registration": ok, "heartbeat": ok, "admin": ok, "node": denied, "bootstrap": unauth, "foreign CA": unauth}},
			{"ListIssued", map[string]codes.Code{"registration": ok, "heartbeat": denied, "admin": ok, "node": denied, "bootstrap": unauth, "foreign CA": unauth}},
			{"GetCRL", map[string]codes.Code{"registration": ok, "heartbeat": ok, "admin": ok, "node": ok, "bootstrap": ok, "foreign CA": ok}},
		}
		clients := map[string]berthv1.CertificateAuthorityServiceClient{}
		for name, cert := range ids {
			clients[name] = e.client(t, cert)
		}
		for _, tt := range tests {
			for caller, want := range tt.want {
				t.Run(tt.method+"/"+caller, func(t *testing.T) {
					wantCode(t, calls[tt.method](clients[caller]), want)
				})
			}
		}
		// Only the registration service's one Sign went through.
		n, err := e.store.CountIssued(ctx, "", time.Time{})
		if err != nil || n != 1 {
			t.Errorf("issued log holds %d certificates (%v), want 1", n, err)
		}
	})
}

func TestSign(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		c := e.client(t, e.identities(t)["registration"])
		ctx := context.Background()
		key := newKey(t)
		rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		badSig := csrFor(t, key, nil)
		badSig[len(badSig)-1] ^= 0xff
		otherNode, _ := url.Parse("spiffe://" + e.layout.TrustDomain + "/node/other")
		greedy := csrFor(t, key, &x509.CertificateRequest{
			Subject:     pkix.Name{CommonName: "registration"},
			DNSNames:    []string{"registration", "evil.example"},
			IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)},
			URIs:        []*url.URL{otherNode, mtls.AdminURI(e.layout.TrustDomain, "admin")},
		})

		tests := []struct {
			name     string
			req      *berthv1.SignRequest
			wantCode codes.Code
			wantMsg  string
		}{
			{name: "good", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "node-01.example", Csr: csrFor(t, key, nil)}},
			{name: "CSR names are ignored", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "node-01.example", Csr: greedy}},
			{name: "garbage CSR", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h", Csr: []byte("garbage")}, wantCode: codes.InvalidArgument, wantMsg: msgBadCSR},
			{name: "bad signature", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h", Csr: badSig}, wantCode: codes.InvalidArgument, wantMsg: msgBadCSR},
			{name: "RSA-1024", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h", Csr: csrFor(t, rsa1024, nil)}, wantCode: codes.InvalidArgument, wantMsg: msgPolicy},
			{name: "no CSR", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h"}, wantCode: codes.InvalidArgument, wantMsg: "csr " + ruleCSRSize},
			{name: "huge CSR", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h", Csr: make([]byte, maxCSRSize+1)}, wantCode: codes.InvalidArgument, wantMsg: "csr " + ruleCSRSize},
			{name: "bad node ID", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "N1/..", Hostname: "h", Csr: csrFor(t, key, nil)}, wantCode: codes.InvalidArgument, wantMsg: "node_id " + ruleNodeID},
			{name: "no node ID", req: &berthv1.SignRequest{RequestId: rid(), Hostname: "h", Csr: csrFor(t, key, nil)}, wantCode: codes.InvalidArgument, wantMsg: "node_id " + ruleNodeID},
			{name: "bad hostname", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "bad host", Csr: csrFor(t, key, nil)}, wantCode: codes.InvalidArgument, wantMsg: "hostname " + ruleHostname},
			// The one host-name rule (internal/ident) refuses what the name
			// policy would: the request never reaches the signer.
			{name: "localhost", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "localhost", Csr: csrFor(t, key, nil)}, wantCode: codes.InvalidArgument, wantMsg: "hostname " + ruleHostname},
			{name: "under localhost", req: &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "node.localhost", Csr: csrFor(t, key, nil)}, wantCode: codes.InvalidArgument, wantMsg: "hostname " + ruleHostname},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := countIssued(t, e.store)
				e.clock.Advance(time.Minute)
				resp, err := c.Sign(ctx, tt.req)
				wantCode(t, err, tt.wantCode)
				if tt.wantCode != codes.OK {
					if got := status.Convert(err).Message(); got != tt.wantMsg {
						t.Errorf("message = %q, want %q", got, tt.wantMsg)
					}
					if after := countIssued(t, e.store); after != before {
						t.Errorf("a refused Sign changed the issued log: %d -> %d", before, after)
					}
					return
				}
				checkSigned(t, e, resp, tt.req)
				if after := countIssued(t, e.store); after != before+1 {
					t.Errorf("issued log: %d -> %d, want one more", before, after)
				}
			})
		}

		// Nothing of a CSR reaches the logs; its fingerprint may.
		logs := e.logs.String()
		for _, tt := range tests {
			if len(tt.req.Csr) < 16 {
				continue
			}
			for _, enc := range []string{base64.StdEncoding.EncodeToString(tt.req.Csr), hex.EncodeToString(tt.req.Csr), string(tt.req.Csr)} {
				if strings.Contains(logs, enc[:24]) {
					t.Errorf("logs contain the CSR of %q", tt.name)
				}
			}
		}
		if !strings.Contains(logs, attrCSR+"=sha256:") {
			t.Error("logs do not carry CSR fingerprints")
		}
	})
}

func countIssued(t *testing.T, s castore.Store) int64 {
	t.Helper()
	n, err := s.CountIssued(context.Background(), "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkSigned checks a Sign response against the request and the log.
func checkSigned(t *testing.T, e *env, resp *berthv1.SignResponse, req *berthv1.SignRequest) {
	t.Helper()
	chain := resp.GetCertificateChain()
	if len(chain) != 2 || !bytes.Equal(chain[1], e.layout.Intermediate.Raw) {
		t.Fatalf("chain has %d certificates, want leaf and intermediate", len(chain))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	inter.AddCert(e.layout.Intermediate)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.layout.RootPool(), Intermediates: inter, CurrentTime: e.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify: %v", err)
	}
	id, err := mtls.IdentityOf(e.layout.TrustDomain, leaf)
	if err != nil || id.Kind != mtls.KindNode || id.Name != req.GetNodeId() {
		t.Errorf("identity = %v (%v), want node %s", id, err, req.GetNodeId())
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != req.GetHostname() || leaf.Subject.CommonName != req.GetHostname() || len(leaf.IPAddresses) != 0 {
		t.Errorf("names = CN %q, DNS %v, IP %v; want only %q", leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses, req.GetHostname())
	}
	ic := resp.GetCertificate()
	if ic.GetSerial() != leaf.SerialNumber.Text(16) || ic.GetNodeId() != req.GetNodeId() ||
		!ic.GetNotBefore().AsTime().Equal(leaf.NotBefore) || !ic.GetNotAfter().AsTime().Equal(leaf.NotAfter) ||
		!ic.GetIssuedAt().AsTime().Equal(e.clock.Now()) {
		t.Errorf("certificate = %v, leaf serial %x, not before %v, not after %v", ic, leaf.SerialNumber, leaf.NotBefore, leaf.NotAfter)
	}
	got, err := e.store.GetIssuedByRequest(context.Background(), req.GetRequestId())
	if err != nil || got.Serial != ic.GetSerial() {
		t.Fatalf("issued log has no %s for request %q: %+v, %v", ic.GetSerial(), req.GetRequestId(), got, err)
	}
	if got.NodeID != req.GetNodeId() || !bytes.Equal(got.DER, chain[0]) || !got.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("issued log entry = %+v", got)
	}
}

func TestSignNotRecorded(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		storeDown := errors.New("disk full")
		e := newEnv(t, engine, func(s castore.Store) castore.Store { return failingStore{Store: s, recordErr: storeDown} })
		c := e.client(t, e.identities(t)["registration"])
		_, err := c.Sign(context.Background(), &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h", Csr: csrFor(t, newKey(t), nil)})
		wantCode(t, err, codes.Internal)
		if msg := status.Convert(err).Message(); msg != msgNotRecorded || strings.Contains(msg, "disk") {
			t.Errorf("message = %q", msg)
		}
		logs := e.logs.String()
		if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "disk full") || !strings.Contains(logs, attrSerial+"=") {
			t.Errorf("the store failure is not logged with the serial:\n%s", logs)
		}
	})
}

// TestStoreUnavailable: when the database cannot serve, every call that
// needs it says Unavailable, to be retried, never Internal, and nothing of
// the cause reaches the client. A signed certificate is not handed out.
func TestStoreUnavailable(t *testing.T) {
	down := grpctest.DatabaseDown(t)
	e := newEnv(t, pgtest.SQLite, func(s castore.Store) castore.Store { return downStore{Store: s, err: down} })
	ids := e.identities(t)
	reg, admin := e.client(t, ids["registration"]), e.client(t, ids["admin"])
	ctx := context.Background()
	calls := map[string]func() error{
		"Sign": func() error {
			_, err := reg.Sign(ctx, &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h1", Csr: csrFor(t, newKey(t), nil)})
			return err
		},
		"Revoke": func() error {
			_, err := reg.Revoke(ctx, &berthv1.RevokeRequest{Serial: "abc"})
			return err
		},
		"GetRevocations": func() error {
			_, err := admin.GetRevocations(ctx, &berthv1.GetRevocationsRequest{})
			return err
		},
		"ListIssued": func() error {
			_, err := admin.ListIssued(ctx, &berthv1.ListIssuedRequest{})
			return err
		},
		"ListIssued count": func() error {
			_, err := admin.ListIssued(ctx, &berthv1.ListIssuedRequest{CountOnly: true})
			return err
		},
		"GetCRL": func() error {
			_, err := admin.GetCRL(ctx, &berthv1.GetCRLRequest{})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			grpctest.WantStatus(t, call(), codes.Unavailable, rpcerr.MsgDatabaseUnavailable)
		})
	}
	if n := countIssued(t, e.store); n != 0 {
		t.Errorf("issued log holds %d certificates", n)
	}
	if !strings.Contains(e.logs.String(), "level=ERROR") || !strings.Contains(e.logs.String(), "127.0.0.1") {
		t.Errorf("the cause is not logged:\n%s", e.logs)
	}
}

func TestRevoke(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		ids := e.identities(t)
		c := e.client(t, ids["registration"])
		ctx := context.Background()
		resp, err := c.Sign(ctx, &berthv1.SignRequest{RequestId: rid(), NodeId: "n1", Hostname: "h1", Csr: csrFor(t, newKey(t), nil)})
		if err != nil {
			t.Fatal(err)
		}
		serial := resp.GetCertificate().GetSerial()
		start := e.clock.Now()

		tests := []struct {
			name     string
			serial   string
			reason   string
			wantCode codes.Code
		}{
			{name: "unknown serial", serial: "1234abcd", wantCode: codes.NotFound},
			{name: "not hex", serial: "xyz", wantCode: codes.InvalidArgument},
			{name: "empty serial", wantCode: codes.InvalidArgument},
			{name: "zero serial", serial: "00", wantCode: codes.InvalidArgument},
			{name: "serial over 20 octets", serial: strings.Repeat("1", 41), wantCode: codes.InvalidArgument},
			{name: "reason with control characters", serial: serial, reason: "a\x00b", wantCode: codes.InvalidArgument},
			{name: "revoke", serial: serial, reason: "key compromise"},
			{name: "again, in another spelling", serial: "0x00" + strings.ToUpper(serial), reason: "second reason"},
			{name: "again, openssl style", serial: colons(serial)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.clock.Advance(time.Minute)
				got, err := c.Revoke(ctx, &berthv1.RevokeRequest{Serial: tt.serial, Reason: tt.reason})
				wantCode(t, err, tt.wantCode)
				if err != nil {
					return
				}
				// Idempotent: every call returns the first revocation.
				r := got.GetRevocation()
				if r.GetSerial() != serial || r.GetNodeId() != "n1" || r.GetReason() != "key compromise" || !r.GetRevokedAt().AsTime().Equal(start.Add(7*time.Minute)) {
					t.Errorf("revocation = %v", r)
				}
			})
		}

		hb := e.client(t, ids["heartbeat"])
		for _, tt := range []struct {
			name  string
			since *timestamppb.Timestamp
			want  int
		}{
			{"all", nil, 1},
			{"since before", timestamppb.New(start), 1},
			{"since after", timestamppb.New(e.clock.Now().Add(time.Second)), 0},
		} {
			t.Run("GetRevocations/"+tt.name, func(t *testing.T) {
				got, err := hb.GetRevocations(ctx, &berthv1.GetRevocationsRequest{Since: tt.since})
				if err != nil {
					t.Fatal(err)
				}
				if len(got.GetRevocations()) != tt.want {
					t.Errorf("%d revocations, want %d", len(got.GetRevocations()), tt.want)
				}
			})
		}
		_, err = hb.GetRevocations(ctx, &berthv1.GetRevocationsRequest{Since: &timestamppb.Timestamp{Nanos: -1}})
		wantCode(t, err, codes.InvalidArgument)
	})
}

func colons(hexSerial string) string {
	if len(hexSerial)%2 == 1 {
		hexSerial = "0" + hexSerial
	}
	var parts []string
	for i := 0; i < len(hexSerial); i += 2 {
		parts = append(parts, hexSerial[i:i+2])
	}
	return strings.Join(parts, ":")
}

func TestListIssued(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		ids := e.identities(t)
		reg := e.client(t, ids["registration"])
		admin := e.client(t, ids["admin"])
		ctx := context.Background()
		start := e.clock.Now()
		for i, node := range []string{"n1", "n1", "n2", "n1"} {
			e.clock.Advance(time.Hour)
			if _, err := reg.Sign(ctx, &berthv1.SignRequest{RequestId: rid(), NodeId: node, Hostname: "h", Csr: csrFor(t, newKey(t), nil)}); err != nil {
				t.Fatalf("sign %d: %v", i, err)
			}
		}
		tests := []struct {
			name     string
			req      *berthv1.ListIssuedRequest
			want     int64
			wantCode codes.Code
		}{
			{name: "all", req: &berthv1.ListIssuedRequest{}, want: 4},
			{name: "one node", req: &berthv1.ListIssuedRequest{NodeId: "n1"}, want: 3},
			{name: "one node, count only", req: &berthv1.ListIssuedRequest{NodeId: "n1", CountOnly: true}, want: 3},
			{name: "since", req: &berthv1.ListIssuedRequest{NodeId: "n1", Since: timestamppb.New(start.Add(2 * time.Hour))}, want: 2},
			{name: "since, count only", req: &berthv1.ListIssuedRequest{Since: timestamppb.New(start.Add(3 * time.Hour)), CountOnly: true}, want: 2},
			{name: "unknown node", req: &berthv1.ListIssuedRequest{NodeId: "n9", CountOnly: true}, want: 0},
			{name: "bad node ID", req: &berthv1.ListIssuedRequest{NodeId: "N 1"}, wantCode: codes.InvalidArgument},
		}
		for _, tt := range tests {
			for caller, c := range map[string]berthv1.CertificateAuthorityServiceClient{"registration": reg, "admin": admin} {
				t.Run(tt.name+"/"+caller, func(t *testing.T) {
					got, err := c.ListIssued(ctx, tt.req)
					wantCode(t, err, tt.wantCode)
					if err != nil {
						return
					}
					if got.GetCount() != tt.want {
						t.Errorf("count = %d, want %d", got.GetCount(), tt.want)
					}
					wantEntries := tt.want
					if tt.req.GetCountOnly() {
						wantEntries = 0
					}
					if int64(len(got.GetCertificates())) != wantEntries {
						t.Errorf("%d entries, want %d", len(got.GetCertificates()), wantEntries)
					}
					for _, ic := range got.GetCertificates() {
						if tt.req.GetNodeId() != "" && ic.GetNodeId() != tt.req.GetNodeId() || ic.GetSerial() == "" || ic.GetIssuedAt() == nil {
							t.Errorf("entry %v", ic)
						}
					}
				})
			}
		}
	})
}

func TestGetTrustBundle(t *testing.T) {
	e := newEnv(t, pgtest.SQLite, nil)
	got, err := e.client(t, e.identities(t)["bootstrap"]).GetTrustBundle(context.Background(), &berthv1.GetTrustBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetRoots()) != 1 {
		t.Fatalf("%d roots, want 1", len(got.GetRoots()))
	}
	root, err := x509.ParseCertificate(got.GetRoots()[0])
	if err != nil {
		t.Fatal(err)
	}
	if mtls.CAHash(root) != e.layout.CAHash() {
		t.Error("trust bundle root does not match the PKI's CA hash")
	}
}

func TestNew(t *testing.T) {
	l := grpctest.NewPKI(t)
	sc, err := l.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := pki.NewSigner(sc)
	if err != nil {
		t.Fatal(err)
	}
	good := Config{Signer: signer, Store: newStore(t, pgtest.SQLite), Roots: []*x509.Certificate{l.Root}}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr bool
	}{
		{name: "good", edit: func(*Config) {}},
		{name: "no signer", edit: func(c *Config) { c.Signer = nil }, wantErr: true},
		{name: "no store", edit: func(c *Config) { c.Store = nil }, wantErr: true},
		{name: "no roots", edit: func(c *Config) { c.Roots = nil }, wantErr: true},
		{name: "leaf as root", edit: func(c *Config) { c.Roots = []*x509.Certificate{signerLeaf(t, signer)} }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			_, err := New(c)
			if (err != nil) != tt.wantErr {
				t.Errorf("New error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func signerLeaf(t *testing.T, s *pki.Signer) *x509.Certificate {
	t.Helper()
	got, err := s.Sign(context.Background(), pki.SignRequest{NodeID: "n1", Hostname: "h", CSR: csrFor(t, newKey(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	return got.Leaf
}
