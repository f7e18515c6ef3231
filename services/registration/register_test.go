package registration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

const (
	uuidA = "4c4c4544-0042-3510-8051-b2c04f4e4d32"
	uuidB = "4c4c4544-0042-3510-8051-b2c04f4e4d33"
)

func TestRegisterAutoApproveThenResume(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		n := e.newNode(uuidA)
		creds := e.register(t, n, true)
		if creds.GetStatus() != berthv1.NodeStatus_NODE_STATUS_APPROVED || !creds.GetRenewed() {
			t.Fatalf("register: status %v renewed %v", creds.GetStatus(), creds.GetRenewed())
		}
		leaf := leafOf(t, creds)
		want := mtls.NodeURI(e.layout.TrustDomain, creds.GetNodeId()).String()
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
			t.Fatalf("leaf URIs = %v, want %s", leaf.URIs, want)
		}
		if !mtls.SameKey(leaf.PublicKey, n.key.Public()) {
			t.Fatal("certificate is not for the node's key")
		}
		if len(creds.GetTrustBundle()) != 1 || creds.GetEndpoints().GetRegistration() != e.addr {
			t.Fatalf("trust bundle %d certs, endpoints %v", len(creds.GetTrustBundle()), creds.GetEndpoints())
		}
		// Every later boot: the same certificate, no new one.
		for i := range 20 {
			resp, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
			if err != nil {
				t.Fatalf("resume %d: %v", i, err)
			}
			got := resp.GetCredentials()
			if got.GetNodeId() != creds.GetNodeId() || got.GetRenewed() || leafOf(t, got).SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				t.Fatalf("resume %d: node %s renewed %v serial %x", i, got.GetNodeId(), got.GetRenewed(), leafOf(t, got).SerialNumber)
			}
		}
		if got := e.issuedCount(t); got != 1 {
			t.Fatalf("CA issued %d certificates, want 1", got)
		}
		nodeResp, err := e.adminClient().GetNode(ctx, &berthv1.GetNodeRequest{Id: creds.GetNodeId()})
		if err != nil {
			t.Fatal(err)
		}
		if nodeResp.GetNode().GetCertificatesIssued() != 1 {
			t.Fatalf("certificates_issued = %d", nodeResp.GetNode().GetCertificatesIssued())
		}
	})
}

// TestRegisterSameHardwareAtOnce: machines with one hardware UUID (a
// cloned image) register at the same moment with one token. Exactly one
// is registered; every other one is refused as hardware registered with
// another key, consumes no use, and leaves a duplicate_hardware claim on
// the registered node. The registrations queue on the token's row, and
// each looks for the hardware after the one before it committed.
func TestRegisterSameHardwareAtOnce(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		const clones = 8
		ctx := context.Background()
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Uses: 20})
		reqs := make([]*berthv1.RegisterRequest, clones)
		nodes := make([]*node, clones)
		for i := range nodes {
			nodes[i] = e.newNode(uuidA)
			reqs[i] = nodes[i].registerRequest(t, tok)
		}
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results = make([]error, clones)
			ids     = make([]string, clones)
		)
		for i := range nodes {
			wg.Go(func() {
				<-start
				resp, err := nodes[i].client().Register(ctx, reqs[i])
				results[i], ids[i] = err, resp.GetCredentials().GetNodeId()
			})
		}
		close(start)
		wg.Wait()
		winner := ""
		for i, err := range results {
			switch status.Code(err) {
			case codes.OK:
				if winner != "" {
					t.Errorf("clones %s and %s both registered", winner, ids[i])
				}
				winner = ids[i]
			case codes.FailedPrecondition:
			default:
				t.Errorf("clone %d: %v; want OK or FailedPrecondition", i, err)
			}
		}
		if winner == "" {
			t.Fatal("no clone registered")
		}
		if got := e.nodeCount(t); got != 1 {
			t.Errorf("%d nodes registered, want 1", got)
		}
		if uses := e.onlyTokenUses(t); uses != 19 {
			t.Errorf("token after the clones: %d uses left, want 19", uses)
		}
		if dup := e.nodeEvents(t, winner, regstore.EventDuplicateHardware); len(dup) != clones-1 {
			t.Errorf("%d duplicate_hardware claims on %s, want %d", len(dup), winner, clones-1)
		}
	})
}

func TestRegisterPendingUntilApproved(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		n := e.newNode(uuidA)
		tok := e.token(t, &berthv1.CreateTokenRequest{})
		req := n.registerRequest(t, tok)
		resp, err := n.client().Register(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		creds := resp.GetCredentials()
		if creds.GetStatus() != berthv1.NodeStatus_NODE_STATUS_PENDING || len(creds.GetCertificateChain()) != 0 {
			t.Fatalf("pending node got status %v and %d certs", creds.GetStatus(), len(creds.GetCertificateChain()))
		}
		_, err = n.client().Resume(ctx, &berthv1.ResumeRequest{})
		wantCode(t, err, codes.FailedPrecondition)
		// Polling Register again is idempotent: same node, token not needed.
		req.Token = ""
		again, err := n.client().Register(ctx, req)
		if err != nil || again.GetCredentials().GetNodeId() != creds.GetNodeId() {
			t.Fatalf("re-register: %v, node %s", err, again.GetCredentials().GetNodeId())
		}
		if e.issuedCount(t) != 0 {
			t.Fatal("a pending node got a certificate")
		}
		if _, err := e.adminClient().ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: creds.GetNodeId()}); err != nil {
			t.Fatal(err)
		}
		approved, err := n.client().Register(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if approved.GetCredentials().GetStatus() != berthv1.NodeStatus_NODE_STATUS_APPROVED {
			t.Fatalf("status after approval %v", approved.GetCredentials().GetStatus())
		}
		serial := leafOf(t, approved.GetCredentials()).SerialNumber
		res, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
		if err != nil || leafOf(t, res.GetCredentials()).SerialNumber.Cmp(serial) != 0 {
			t.Fatalf("resume after approval: %v", err)
		}
		if e.issuedCount(t) != 1 {
			t.Fatalf("issued %d, want 1", e.issuedCount(t))
		}
	})
}

func TestRenewalWindowAndExpiry(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		n := e.newNode(uuidA)
		first := leafOf(t, e.register(t, n, true))
		// The lifetime counts from issuance, not from the backdated
		// NotBefore.
		issued := first.NotBefore.Add(mtls.NodeBackdate)
		if !issued.Equal(e.clock.Now()) {
			t.Fatalf("NotBefore %v is not issuance %v less the backdate", first.NotBefore, e.clock.Now())
		}
		life := first.NotAfter.Sub(issued)
		steps := []struct {
			name      string
			advanceTo time.Duration // since the issuance of the first certificate
			renewed   bool
		}{
			{"early in life", life / 3, false},
			{"just before two thirds", life*2/3 - time.Minute, false},
			{"inside renewal window", life*2/3 + time.Minute, true},
		}
		for _, s := range steps {
			e.clock.Set(issued.Add(s.advanceTo))
			resp, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if resp.GetCredentials().GetRenewed() != s.renewed {
				t.Fatalf("%s: renewed = %v, want %v", s.name, resp.GetCredentials().GetRenewed(), s.renewed)
			}
		}
		// Powered off far past expiry: it still comes back, same node.
		e.clock.Advance(10 * life)
		resp, err := n.client().Renew(ctx, &berthv1.RenewRequest{})
		if err != nil {
			t.Fatal(err)
		}
		leaf := leafOf(t, resp.GetCredentials())
		if !resp.GetCredentials().GetRenewed() || !leaf.NotAfter.After(e.clock.Now()) {
			t.Fatalf("expired certificate not renewed: not after %v, now %v", leaf.NotAfter, e.clock.Now())
		}
		if e.issuedCount(t) != 3 {
			t.Fatalf("issued %d, want 3", e.issuedCount(t))
		}
	})
}

func TestRegisterIdempotentForSameKey(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		n := e.newNode(uuidA)
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Uses: 5})
		var id, serial string
		for i := range 3 {
			resp, err := n.client().Register(ctx, n.registerRequest(t, tok))
			if err != nil {
				t.Fatal(err)
			}
			c := resp.GetCredentials()
			s := leafOf(t, c).SerialNumber.Text(16)
			if i > 0 && (c.GetNodeId() != id || s != serial) {
				t.Fatalf("register %d gave node %s serial %s, want %s %s", i, c.GetNodeId(), s, id, serial)
			}
			id, serial = c.GetNodeId(), s
		}
		if uses := e.onlyTokenUses(t); uses != 4 {
			t.Fatalf("token after idempotent registers: %d uses left, want 4", uses)
		}
		if e.nodeCount(t) != 1 || e.issuedCount(t) != 1 {
			t.Fatalf("nodes %d issued %d", e.nodeCount(t), e.issuedCount(t))
		}
	})
}

// TestRegisterBadInput sends every kind of bad registration and checks the
// precise code and that nothing changed: no node, no token use, no cert.
func TestRegisterBadInput(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	ctx := context.Background()
	good := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Uses: 3})
	expiring := e.token(t, &berthv1.CreateTokenRequest{TtlSeconds: 60})
	revoked := e.token(t, &berthv1.CreateTokenRequest{})
	if _, err := e.adminClient().RevokeToken(ctx, &berthv1.RevokeTokenRequest{Id: revoked[:8]}); err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n := e.newNode(uuidA)
	spiffe, _ := url.Parse("spiffe://berth.local/node/someoneelse")
	tests := []struct {
		name   string
		mutate func(r *berthv1.RegisterRequest)
		want   codes.Code
	}{
		{"no facts", func(r *berthv1.RegisterRequest) { r.Facts = nil }, codes.InvalidArgument},
		{"bad uuid", func(r *berthv1.RegisterRequest) { r.Facts.HardwareUuid = "not-a-uuid" }, codes.InvalidArgument},
		{"bad hostname", func(r *berthv1.RegisterRequest) { r.Facts.Hostname = "bad host!" }, codes.InvalidArgument},
		{"localhost", func(r *berthv1.RegisterRequest) { r.Facts.Hostname = "localhost" }, codes.InvalidArgument},
		{"bad mac", func(r *berthv1.RegisterRequest) { r.Facts.Macs = []string{"zz:zz"} }, codes.InvalidArgument},
		{"serial with control chars", func(r *berthv1.RegisterRequest) { r.Facts.Serial = "a\x00b" }, codes.InvalidArgument},
		{"no csr", func(r *berthv1.RegisterRequest) { r.Csr = nil }, codes.InvalidArgument},
		{"garbage csr", func(r *berthv1.RegisterRequest) { r.Csr = []byte("not a csr") }, codes.InvalidArgument},
		{"csr with broken signature", func(r *berthv1.RegisterRequest) { r.Csr[len(r.Csr)-3] ^= 0xff }, codes.InvalidArgument},
		{"csr for another key", func(r *berthv1.RegisterRequest) { r.Csr = csrFor(t, other, nil) }, codes.PermissionDenied},
		{"csr for another node's identity", func(r *berthv1.RegisterRequest) {
			r.Csr = csrFor(t, n.key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, URIs: []*url.URL{spiffe}})
		}, codes.PermissionDenied},
		{"csr asking for other DNS names", func(r *berthv1.RegisterRequest) {
			r.Csr = csrFor(t, n.key, &x509.CertificateRequest{DNSNames: []string{"www.example.com"}})
		}, codes.InvalidArgument},
		{"no bundle key", func(r *berthv1.RegisterRequest) { r.BundleKey = nil }, codes.InvalidArgument},
		{"unknown kem", func(r *berthv1.RegisterRequest) { r.BundleKey.KemId = 0x7777 }, codes.InvalidArgument},
		{"bundle key of wrong size", func(r *berthv1.RegisterRequest) { r.BundleKey.PublicKey = []byte{1, 2, 3} }, codes.InvalidArgument},
		{"no token", func(r *berthv1.RegisterRequest) { r.Token = "" }, codes.InvalidArgument},
		{"malformed token", func(r *berthv1.RegisterRequest) { r.Token = "abc" }, codes.InvalidArgument},
		{"unknown token", func(r *berthv1.RegisterRequest) { r.Token = "zzzzzzzz." + good[9:] }, codes.PermissionDenied},
		{"wrong secret", func(r *berthv1.RegisterRequest) { r.Token = good[:9] + "aaaaaaaaaaaaaaaaaaaaaaaaaa" }, codes.PermissionDenied},
		{"revoked token", func(r *berthv1.RegisterRequest) { r.Token = revoked }, codes.PermissionDenied},
		{"no identity source", func(r *berthv1.RegisterRequest) { r.IdentitySource = "" }, codes.InvalidArgument},
		{"unknown identity source", func(r *berthv1.RegisterRequest) { r.IdentitySource = "usb-stick" }, codes.InvalidArgument},
		{"identity source in capitals", func(r *berthv1.RegisterRequest) { r.IdentitySource = "SEED-FILE" }, codes.InvalidArgument},
		{"tpm claimed without evidence", func(r *berthv1.RegisterRequest) { r.IdentitySource = "tpm" }, codes.InvalidArgument},
		{"tpm evidence with another source", func(r *berthv1.RegisterRequest) { r.Tpm = &berthv1.TPMEvidence{EkPublic: []byte{1}} }, codes.InvalidArgument},
		{"tpm evidence that does not parse", func(r *berthv1.RegisterRequest) {
			r.IdentitySource, r.Tpm = "tpm", &berthv1.TPMEvidence{EkPublic: []byte("not a TPMT_PUBLIC"), IdentityKeyPublic: []byte{0, 1}}
		}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := n.registerRequest(t, good)
			tt.mutate(req)
			_, err := n.client().Register(ctx, req)
			wantCode(t, err, tt.want)
			if e.nodeCount(t) != 0 || e.issuedCount(t) != 0 {
				t.Fatalf("bad input changed state: %d nodes, %d certs", e.nodeCount(t), e.issuedCount(t))
			}
		})
	}
	// Inactive tokens too: a token that bad inputs used up or spoiled must
	// not drop out of the list and so out of the check.
	toks, err := e.adminClient().ListTokens(ctx, &berthv1.ListTokensRequest{IncludeInactive: true})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(toks.GetTokens(), func(tok *berthv1.Token) bool { return tok.GetId() == good[:8] })
	if i < 0 {
		t.Fatalf("token %s is not listed", good[:8])
	}
	if tok := toks.GetTokens()[i]; tok.GetUsesLeft() != 3 || tok.GetRevoked() {
		t.Fatalf("bad inputs consumed or spoiled the token: %d uses left, revoked %v", tok.GetUsesLeft(), tok.GetRevoked())
	}
	t.Run("expired token", func(t *testing.T) {
		e.clock.Advance(2 * time.Minute)
		_, err := n.client().Register(ctx, n.registerRequest(t, expiring))
		wantCode(t, err, codes.PermissionDenied)
	})
}

func TestTokenUseLimit(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		tok := e.token(t, &berthv1.CreateTokenRequest{Uses: 2})
		for i := range 2 {
			n := e.newNode("00000000-0000-4000-8000-00000000000" + string(rune('1'+i)))
			if _, err := n.client().Register(ctx, n.registerRequest(t, tok)); err != nil {
				t.Fatal(err)
			}
		}
		third := e.newNode("00000000-0000-4000-8000-000000000009")
		_, err := third.client().Register(ctx, third.registerRequest(t, tok))
		wantCode(t, err, codes.ResourceExhausted)
		if e.nodeCount(t) != 2 {
			t.Fatalf("nodes = %d, want 2", e.nodeCount(t))
		}
	})
}

func TestHardwareConflictAndReplacement(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		old := e.newNode(uuidA)
		oldCreds := e.register(t, old, true)
		oldSerial := leafOf(t, oldCreds).SerialNumber.Text(16)

		board := e.newNode(uuidA) // same machine, new key
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
		_, err := board.client().Register(ctx, board.registerRequest(t, tok))
		wantCode(t, err, codes.FailedPrecondition)
		if e.nodeCount(t) != 1 {
			t.Fatal("conflicting registration created a node")
		}
		if _, err := e.adminClient().AllowReplacement(ctx, &berthv1.AllowReplacementRequest{Id: oldCreds.GetNodeId()}); err != nil {
			t.Fatal(err)
		}
		resp, err := board.client().Register(ctx, board.registerRequest(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCredentials().GetNodeId() != oldCreds.GetNodeId() {
			t.Fatalf("replacement got node %s, want %s", resp.GetCredentials().GetNodeId(), oldCreds.GetNodeId())
		}
		_, err = old.client().Resume(ctx, &berthv1.ResumeRequest{})
		wantCode(t, err, codes.NotFound)
		revs, err := e.cas.ListRevocations(ctx, time.Time{})
		if err != nil || len(revs) != 1 || revs[0].Serial != oldSerial {
			t.Fatalf("old certificate not revoked: %v %v", revs, err)
		}
	})
}

// TestReplacementWhileCADown: a board replacing an allowed node while the
// CA is unreachable gets Unavailable before anything is written, since the
// old board's certificates are revoked first: the old node, its
// certificate and the token's use stay. Once the CA is back the same call
// replaces the node.
func TestReplacementWhileCADown(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		oldCreds := e.register(t, e.newNode(uuidA), true)
		if _, err := e.adminClient().AllowReplacement(ctx, &berthv1.AllowReplacementRequest{Id: oldCreds.GetNodeId()}); err != nil {
			t.Fatal(err)
		}
		board := e.newNode(uuidA)
		req := board.registerRequest(t, e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true}))
		before := e.state(t)
		ca := e.ca.get()
		e.caDown()
		_, err := board.client().Register(ctx, req)
		wantCode(t, err, codes.Unavailable)
		if after := e.state(t); after != before {
			t.Errorf("the refused replacement changed the state:\n%s\nthen\n%s", before, after)
		}
		e.ca.set(ca)
		resp, err := board.client().Register(ctx, req)
		if err != nil || resp.GetCredentials().GetNodeId() != oldCreds.GetNodeId() {
			t.Fatalf("replacement with the CA back = node %s, %v; want %s", resp.GetCredentials().GetNodeId(), err, oldCreds.GetNodeId())
		}
		if before == e.state(t) {
			t.Error("the replacement changed nothing")
		}
	})
}

func TestResumeDenied(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	ctx := context.Background()
	unknown := e.newNode(uuidA)
	_, err := unknown.client().Resume(ctx, &berthv1.ResumeRequest{})
	wantCode(t, err, codes.NotFound)

	revoked := e.newNode("00000000-0000-4000-8000-000000000001")
	creds := e.register(t, revoked, true)
	if _, err := e.adminClient().RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: creds.GetNodeId(), Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	_, err = revoked.client().Resume(ctx, &berthv1.ResumeRequest{})
	wantCode(t, err, codes.PermissionDenied)
	_, err = revoked.client().Register(ctx, revoked.registerRequest(t, ""))
	wantCode(t, err, codes.PermissionDenied)
	revs, err := e.cas.ListRevocations(ctx, time.Time{})
	if err != nil || len(revs) != 1 || revs[0].Serial != leafOf(t, creds).SerialNumber.Text(16) {
		t.Fatalf("revocations = %v, %v", revs, err)
	}

	rejected := e.newNode("00000000-0000-4000-8000-000000000002")
	pending := e.register(t, rejected, false)
	if _, err := e.adminClient().RejectNode(ctx, &berthv1.RejectNodeRequest{Id: pending.GetNodeId()}); err != nil {
		t.Fatal(err)
	}
	_, err = rejected.client().Resume(ctx, &berthv1.ResumeRequest{})
	wantCode(t, err, codes.PermissionDenied)
}

// TestRegisterRetryRacesItself: a node whose registration timed out
// retries, once after its first attempt committed and once while it is
// still committing, so that the retry's registering write finds the key
// taken only at its insert. Each retry is the same node registering
// again: its hardware lookup, in the registering transaction, finds the
// first attempt's node with its own key, which is no claim on the
// hardware. It gets the first attempt's node and certificate, and not
// FailedPrecondition (hardware "registered with a different key", which
// stops an agent) or AlreadyExists; no token use, node, certificate or
// duplicate_hardware event is added.
func TestRegisterRetryRacesItself(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, b string) {
		conflicts := new(atomic.Int32)
		e := newEnvConfig(t, b, func(c *Config) {
			c.Store = commitsLate{Store: c.Store, conflicts: conflicts}
		})
		ctx := context.Background()
		n := e.newNode(uuidA)
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Uses: 5})
		first, err := n.client().Register(ctx, n.registerRequest(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		id := first.GetCredentials().GetNodeId()
		for _, late := range []int32{0, 1} {
			conflicts.Store(late)
			retry, err := n.client().Register(ctx, n.registerRequest(t, tok))
			if err != nil {
				t.Fatalf("retried Register (%d conflicts): %v", late, err)
			}
			if left := conflicts.Load(); left != late-1 {
				t.Fatalf("the retry reached the registering write %d times, want once as the test meant", late-left)
			}
			if got := retry.GetCredentials().GetNodeId(); got != id {
				t.Fatalf("retry got node %s, want %s", got, id)
			}
			if a, b := leafOf(t, first.GetCredentials()).SerialNumber, leafOf(t, retry.GetCredentials()).SerialNumber; a.Cmp(b) != 0 {
				t.Fatalf("retry got certificate %x, want %x", b, a)
			}
		}
		if uses := e.onlyTokenUses(t); uses != 4 {
			t.Fatalf("token after the retry: %d uses left, want 4", uses)
		}
		if e.nodeCount(t) != 1 || e.issuedCount(t) != 1 {
			t.Fatalf("nodes %d issued %d, want 1 and 1", e.nodeCount(t), e.issuedCount(t))
		}
		if dup := e.nodeEvents(t, id, regstore.EventDuplicateHardware); len(dup) != 0 {
			t.Fatalf("the retry raised duplicate_hardware: %+v", dup)
		}
	})
}
