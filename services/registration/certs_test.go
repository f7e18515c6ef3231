package registration

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/revocation"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// renewOnce moves the clock into n's renewal window and resumes it; it
// returns the renewed serial.
func (e *env) renewOnce(t *testing.T, n *node, current *berthv1.NodeCredentials) *berthv1.NodeCredentials {
	t.Helper()
	leaf := leafOf(t, current)
	e.clock.Set(mtls.RenewalTime(leaf.NotBefore, leaf.NotAfter).Add(time.Minute))
	resp, err := n.client().Resume(context.Background(), &berthv1.ResumeRequest{})
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if leafOf(t, resp.GetCredentials()).SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("not renewed")
	}
	return resp.GetCredentials()
}

// certsOf lists a node's certificates through the admin API.
func (e *env) certsOf(t *testing.T, nodeID string) []*berthv1.IssuedCertificate {
	t.Helper()
	resp, err := e.adminClient().ListCertificates(context.Background(), &berthv1.ListCertificatesRequest{NodeId: nodeID})
	if err != nil {
		t.Fatalf("ListCertificates: %v", err)
	}
	return resp.GetCertificates()
}

// TestRevokeNodeRevokesEveryCertificate: a node renewed once holds two
// certificates in the CA's log; revoking it revokes both, as the node's,
// and deleting another does the same.
func TestRevokeNodeRevokesEveryCertificate(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		n := e.newNode(uuidA)
		creds := e.register(t, n, true)
		e.renewOnce(t, n, creds)
		id := creds.GetNodeId()
		if _, err := e.adminClient().RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: id, Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}
		certs := e.certsOf(t, id)
		if len(certs) != 2 {
			t.Fatalf("%d certificates, want 2", len(certs))
		}
		for _, c := range certs {
			if !c.GetRevoked() || c.GetRevocationReason() != "stolen" {
				t.Errorf("certificate %s: revoked %v (%q)", c.GetSerial(), c.GetRevoked(), c.GetRevocationReason())
			}
		}
		revs, err := e.cas.ListRevocations(ctx, time.Time{})
		if err != nil || len(revs) != 2 || !revs[0].Node || !revs[1].Node {
			t.Errorf("revocations %+v, %v; want both as the node's", revs, err)
		}

		other := e.newNode(uuidB)
		oc := e.register(t, other, true)
		e.renewOnce(t, other, oc)
		if _, err := e.adminClient().DeleteNode(ctx, &berthv1.DeleteNodeRequest{Id: oc.GetNodeId()}); err != nil {
			t.Fatal(err)
		}
		for _, c := range e.certsOf(t, oc.GetNodeId()) {
			if !c.GetRevoked() {
				t.Errorf("certificate %s of a deleted node is not revoked", c.GetSerial())
			}
		}
		e.checkInvariant(t)
	})
}

// TestReplacementRevokesTheOldBoard: every certificate of the old key goes
// (not as the node's), the new board's stays, and the count goes on.
func TestReplacementRevokesTheOldBoard(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		old := e.newNode(uuidA)
		creds := e.register(t, old, true)
		e.renewOnce(t, old, creds)
		id := creds.GetNodeId()
		if _, err := e.adminClient().AllowReplacement(ctx, &berthv1.AllowReplacementRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		board := e.newNode(uuidA)
		resp, err := board.client().Register(ctx, board.registerRequest(t, e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})))
		if err != nil {
			t.Fatal(err)
		}
		fresh := leafOf(t, resp.GetCredentials()).SerialNumber.Text(16)
		certs := e.certsOf(t, id)
		if len(certs) != 3 {
			t.Fatalf("%d certificates, want 3", len(certs))
		}
		for _, c := range certs {
			want := c.GetSerial() != fresh
			if c.GetRevoked() != want {
				t.Errorf("certificate %s revoked = %v, want %v", c.GetSerial(), c.GetRevoked(), want)
			}
			if want && c.GetRevocationReason() != revocation.ReasonSuperseded {
				t.Errorf("certificate %s reason %q", c.GetSerial(), c.GetRevocationReason())
			}
		}
		revs, err := e.cas.ListRevocations(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range revs {
			if r.Node {
				t.Errorf("the replacement revoked the node: %+v", r)
			}
		}
		got, err := e.adminClient().GetNode(ctx, &berthv1.GetNodeRequest{Id: id})
		if err != nil || got.GetNode().GetCertificatesIssued() != 3 {
			t.Errorf("certificates_issued %d, %v; want 3", got.GetNode().GetCertificatesIssued(), err)
		}
		e.checkInvariant(t)
	})
}

// TestListCertificates: the CA's log through the admin API, with its
// request IDs; bad input is refused and changes nothing; a node the CA
// never issued to has an empty list; only admins may read it; a CA that is
// down is Unavailable.
func TestListCertificates(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.register(t, e.newNode(uuidA), true)
		e.register(t, e.newNode(uuidB), true)
		all := e.certsOf(t, "")
		if len(all) != 2 {
			t.Fatalf("%d certificates, want 2", len(all))
		}
		for _, c := range all {
			if c.GetRequestId() == "" || c.GetNotBefore() == nil || c.GetNotAfter() == nil || c.GetRevoked() {
				t.Errorf("certificate %v", c)
			}
		}
		one := e.certsOf(t, a.GetNodeId())
		if len(one) != 1 || one[0].GetSerial() != leafOf(t, a).SerialNumber.Text(16) {
			t.Errorf("certificates of %s: %v", a.GetNodeId(), one)
		}
		if got := e.certsOf(t, "nosuchnode"); len(got) != 0 {
			t.Errorf("unknown node: %v, want none", got)
		}

		before := e.state(t)
		for _, bad := range []string{"N1/..", "has space", string(make([]byte, 300))} {
			_, err := e.adminClient().ListCertificates(ctx, &berthv1.ListCertificatesRequest{NodeId: bad})
			wantCode(t, err, codes.InvalidArgument)
		}
		nodeConn := e.dial(e.srv.NodeCert(t, a.GetNodeId()).TLS)
		_, err := berthv1.NewNodeAdminServiceClient(nodeConn).ListCertificates(ctx, &berthv1.ListCertificatesRequest{})
		wantCode(t, err, codes.PermissionDenied)
		e.caDown()
		_, err = e.adminClient().ListCertificates(ctx, &berthv1.ListCertificatesRequest{})
		wantCode(t, err, codes.Unavailable)
		if after := e.state(t); after != before {
			t.Errorf("refused calls changed the state:\n%s\nthen\n%s", before, after)
		}
	})
}
