package registration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// lostAnswers is a CA whose answers to Sign are lost on the way back: the
// CA signs and records the certificate, and the registration service sees
// an outage, as when it crashes, or its connection drops, between the
// CA's Sign and the write of the node's certificate.
type lostAnswers struct {
	CA
	mu     sync.Mutex
	signed int
}

func (l *lostAnswers) Sign(ctx context.Context, requestID, nodeID, hostname string, csr []byte) (regstore.Cert, error) {
	if _, err := l.CA.Sign(ctx, requestID, nodeID, hostname, csr); err != nil {
		return regstore.Cert{}, err
	}
	l.mu.Lock()
	l.signed++
	l.mu.Unlock()
	return regstore.Cert{}, fmt.Errorf("CA sign: %w: connection lost after the CA signed", errCAUnavailable)
}

// checkInvariant fails unless every node's certificates_issued equals the
// number of certificates the CA's log holds for it, and every certificate
// of a node that no longer exists is revoked: no orphan.
func (e *env) checkInvariant(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	nodes, err := e.reg.ListNodes(ctx, regstore.NodeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, n := range nodes {
		known[n.ID] = true
		logged, err := e.cas.CountIssued(ctx, n.ID, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if logged != n.CertificatesIssued {
			t.Errorf("node %s: %d certificates in the CA log, certificates_issued %d", n.ID, logged, n.CertificatesIssued)
		}
	}
	all, err := e.cas.ListIssued(ctx, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		if !known[c.NodeID] && c.Revocation == nil {
			t.Errorf("orphan: certificate %s of node %s, which does not exist, is not revoked", c.Serial, c.NodeID)
		}
	}
}

func (e *env) openIntents(t *testing.T) []regstore.Intent {
	t.Helper()
	in, err := e.reg.ListIntents(context.Background(), e.clock.Now().Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestCrashBetweenSignAndStore: the CA signed but the node's certificate
// was never written. The node's next call completes the same issuance and
// gets that very certificate: one certificate, counted once.
func TestCrashBetweenSignAndStore(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		real := e.ca.get()
		lost := &lostAnswers{CA: real}
		e.ca.set(lost)
		n := e.newNode(uuidA)
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
		_, err := n.client().Register(context.Background(), n.registerRequest(t, tok))
		wantCode(t, err, codes.Unavailable)
		if lost.signed != 1 || e.issuedCount(t) != 1 {
			t.Fatalf("CA signed %d, log holds %d; want 1", lost.signed, e.issuedCount(t))
		}
		open := e.openIntents(t)
		if len(open) != 1 {
			t.Fatalf("%d open issuances, want 1", len(open))
		}
		orphan, err := e.cas.GetIssuedByRequest(context.Background(), open[0].RequestID)
		if err != nil {
			t.Fatalf("the CA's certificate is not under the open request: %v", err)
		}

		e.ca.set(real)
		resp, err := n.client().Register(context.Background(), n.registerRequest(t, tok))
		if err != nil {
			t.Fatalf("Register again: %v", err)
		}
		if got := leafOf(t, resp.GetCredentials()).SerialNumber.Text(16); got != orphan.Serial {
			t.Errorf("node got serial %s, the CA issued %s", got, orphan.Serial)
		}
		if e.issuedCount(t) != 1 || len(e.openIntents(t)) != 0 {
			t.Errorf("issued %d, open %d; want 1 and 0", e.issuedCount(t), len(e.openIntents(t)))
		}
		e.checkInvariant(t)
	})
}

// TestReconcilerCompletesAbandoned: a registration service abandoned
// mid-call, before or after the CA signed, leaves an issuance open; the
// reconciler completes it without the node calling again, once it is old
// enough, and retries while the CA is down.
func TestReconcilerCompletesAbandoned(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		real := e.ca.get()
		e.ca.set(&lostAnswers{CA: real})
		signed := e.newNode(uuidA)
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Uses: 2})
		_, err := signed.client().Register(ctx, signed.registerRequest(t, tok))
		wantCode(t, err, codes.Unavailable)
		e.caDown()
		unsigned := e.newNode(uuidB)
		_, err = unsigned.client().Register(ctx, unsigned.registerRequest(t, tok))
		wantCode(t, err, codes.Unavailable)
		if got := len(e.openIntents(t)); got != 2 {
			t.Fatalf("%d open issuances, want 2", got)
		}

		// Too young for a periodic pass.
		if closed, err := e.svc.Reconcile(ctx, time.Minute); err != nil || closed != 0 {
			t.Fatalf("Reconcile(young) = %d, %v; want 0, nil", closed, err)
		}
		e.clock.Advance(2 * time.Minute)
		// The CA is still down: nothing closes, nothing is lost.
		if closed, err := e.svc.Reconcile(ctx, time.Minute); err == nil || closed != 0 {
			t.Fatalf("Reconcile(CA down) = %d, %v; want 0 and an error", closed, err)
		}
		e.ca.set(real)
		if closed, err := e.svc.Reconcile(ctx, time.Minute); err != nil || closed != 2 {
			t.Fatalf("Reconcile = %d, %v; want 2", closed, err)
		}
		for _, n := range []*node{signed, unsigned} {
			got, err := e.reg.GetNodeByKey(ctx, keyOf(t, n))
			if err != nil {
				t.Fatal(err)
			}
			if got.Cert == nil || got.CertificatesIssued != 1 {
				t.Errorf("node %s: cert %v, issued %d; want one certificate", got.ID, got.Cert, got.CertificatesIssued)
			}
			resp, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
			if err != nil {
				t.Fatalf("Resume: %v", err)
			}
			if s := leafOf(t, resp.GetCredentials()).SerialNumber.Text(16); got.Cert != nil && s != got.Cert.Serial {
				t.Errorf("Resume returned %s, the reconciler stored %s", s, got.Cert.Serial)
			}
		}
		if e.issuedCount(t) != 2 || len(e.openIntents(t)) != 0 {
			t.Errorf("issued %d, open %d; want 2 and 0", e.issuedCount(t), len(e.openIntents(t)))
		}
		e.checkInvariant(t)
	})
}

// TestAbandonedIssuanceOfRevokedNode: the node was revoked while its
// issuance was open; completing it counts the certificate the CA issued
// and revokes it, never hands it out.
func TestAbandonedIssuanceOfRevokedNode(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		real := e.ca.get()
		e.ca.set(&lostAnswers{CA: real})
		n := e.newNode(uuidA)
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
		n.client().Register(ctx, n.registerRequest(t, tok))
		got, err := e.reg.GetNodeByKey(ctx, keyOf(t, n))
		if err != nil {
			t.Fatal(err)
		}
		e.ca.set(real)
		if _, err := e.adminClient().RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: got.ID, Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}
		if closed, err := e.svc.Reconcile(ctx, 0); err != nil || closed != 1 {
			t.Fatalf("Reconcile = %d, %v; want 1", closed, err)
		}
		certs, err := e.cas.ListIssued(ctx, got.ID, time.Time{})
		if err != nil || len(certs) != 1 {
			t.Fatalf("CA log of the node: %v, %v", certs, err)
		}
		if r := certs[0].Revocation; r == nil || !r.Node {
			t.Errorf("the certificate issued after the revocation is not revoked as the node's: %+v", r)
		}
		after, _ := e.reg.GetNode(ctx, got.ID)
		if after.Cert != nil {
			t.Errorf("a revoked node got a certificate: %+v", after.Cert)
		}
		e.checkInvariant(t)
	})
}

// TestRenewalClaimAcrossReplicas: two registration services, each with its
// own store on one database, renew one node from many boots at once: one
// renewal, the same certificate for everyone.
func TestRenewalClaimAcrossReplicas(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		e, second := replicas(t, engine)
		replicas := []*Service{e.svc, second}
		n := e.newNode(uuidA)
		first := leafOf(t, e.register(t, n, true))
		e.clock.Set(mtls.RenewalTime(first.NotBefore, first.NotAfter).Add(time.Minute))

		const boots = 12
		serials := make([]string, boots)
		errs := make([]error, boots)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range boots {
			wg.Go(func() {
				<-start
				creds, err := replicas[i%2].resume(ctx, n.identity(t), withoutBundle)
				errs[i] = err
				if err == nil {
					serials[i] = leafOf(t, creds).SerialNumber.Text(16)
				}
			})
		}
		close(start)
		wg.Wait()
		for i := range boots {
			if errs[i] != nil {
				t.Fatalf("boot %d: %v", i, errs[i])
			}
			if serials[i] != serials[0] || serials[i] == first.SerialNumber.Text(16) {
				t.Errorf("boot %d got %s; boot 0 %s, the first certificate %s", i, serials[i], serials[0], first.SerialNumber.Text(16))
			}
		}
		if got := e.issuedCount(t); got != 2 {
			t.Errorf("%d certificates issued, want 2: the first and one renewal", got)
		}
		e.checkInvariant(t)
	})
}

func keyOf(t *testing.T, n *node) []byte {
	sum := n.identity(t).KeySHA256
	return sum[:]
}
