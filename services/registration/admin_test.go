package registration

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestAuthorization checks who may call what, with real certificates:
// admins, nodes holding issued certificates, bare keys, other services and
// a certificate from another deployment's CA.
func TestAuthorization(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	ctx := context.Background()
	n := e.newNode(uuidA)
	creds := e.register(t, n, true)
	nodeCert := tls.Certificate{Certificate: creds.GetCertificateChain(), PrivateKey: n.key}
	nodeConn := e.dial(nodeCert)
	regCert, _ := e.layout.ServiceCertificate(pki.ServiceRegistration)
	bundlesCert, _ := e.layout.ServiceCertificate(pki.ServiceBundles)

	foreign, err := pki.Init(ctx, pki.InitConfig{Dir: filepath.Join(t.TempDir(), "other")})
	if err != nil {
		t.Fatal(err)
	}
	foreignAdmin, _ := foreign.AdminCertificate()
	foreignCfg := mtls.ClientConfig(foreignAdmin, e.layout.RootPool())
	foreignCfg.ServerName = "127.0.0.1"
	foreignConn, err := rpc.Dial(rpc.ClientConfig{Addr: e.addr, TLS: foreignCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer foreignConn.Close()

	csr := csrFor(t, n.key, nil)
	callers := map[string]func() error{
		"node cert lists nodes": func() error {
			_, err := berthv1.NewNodeAdminServiceClient(nodeConn).ListNodes(ctx, &berthv1.ListNodesRequest{})
			return err
		},
		"bare key lists nodes": func() error {
			_, err := berthv1.NewNodeAdminServiceClient(n.conn).ListNodes(ctx, &berthv1.ListNodesRequest{})
			return err
		},
		"bundles service creates a token": func() error {
			_, err := berthv1.NewNodeAdminServiceClient(e.dial(bundlesCert)).CreateToken(ctx, &berthv1.CreateTokenRequest{})
			return err
		},
		"foreign admin approves": func() error {
			_, err := berthv1.NewNodeAdminServiceClient(foreignConn).ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: creds.GetNodeId()})
			return err
		},
		"node cert calls CA Sign": func() error {
			_, err := berthv1.NewCertificateAuthorityServiceClient(nodeConn).Sign(ctx, &berthv1.SignRequest{RequestId: "authz-test", NodeId: creds.GetNodeId(), Hostname: "node-a", Csr: csr})
			return err
		},
		"bare key calls CA Sign": func() error {
			_, err := berthv1.NewCertificateAuthorityServiceClient(n.conn).Sign(ctx, &berthv1.SignRequest{RequestId: "authz-test", NodeId: "x", Hostname: "node-a", Csr: csr})
			return err
		},
		"admin calls CA Sign": func() error {
			_, err := berthv1.NewCertificateAuthorityServiceClient(e.admin).Sign(ctx, &berthv1.SignRequest{RequestId: "authz-test", NodeId: "x", Hostname: "node-a", Csr: csr})
			return err
		},
		"registration service calls CA Sign": func() error {
			_, err := berthv1.NewCertificateAuthorityServiceClient(e.dial(regCert)).Sign(ctx, &berthv1.SignRequest{RequestId: "authz-test", NodeId: "x", Hostname: "node-a", Csr: csr})
			return err
		},
		"admin resumes as a node": func() error {
			_, err := berthv1.NewRegistrationServiceClient(e.admin).Resume(ctx, &berthv1.ResumeRequest{})
			return err
		},
		"node cert resumes": func() error {
			_, err := berthv1.NewRegistrationServiceClient(nodeConn).Resume(ctx, &berthv1.ResumeRequest{})
			return err
		},
	}
	want := map[string]codes.Code{
		"node cert lists nodes":              codes.PermissionDenied,
		"bare key lists nodes":               codes.Unauthenticated,
		"bundles service creates a token":    codes.PermissionDenied,
		"foreign admin approves":             codes.Unauthenticated,
		"node cert calls CA Sign":            codes.PermissionDenied,
		"bare key calls CA Sign":             codes.Unauthenticated,
		"admin calls CA Sign":                codes.PermissionDenied,
		"registration service calls CA Sign": codes.OK,
		"admin resumes as a node":            codes.PermissionDenied,
		"node cert resumes":                  codes.OK,
	}
	for name, call := range callers {
		t.Run(name, func(t *testing.T) { wantCode(t, call(), want[name]) })
	}
	// Only the registration service's own Sign call issued a certificate.
	if got := e.issuedCount(t); got != 2 {
		t.Fatalf("issued = %d, want 2 (registration + the registration service's direct Sign)", got)
	}
}

func TestAdminNodes(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		admin := e.adminClient()
		var ids []string
		for i := range 5 {
			n := e.newNode(fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
			tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: i%2 == 0, Labels: map[string]string{"rack": fmt.Sprint(i % 2)}})
			resp, err := n.client().Register(ctx, n.registerRequest(t, tok))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, resp.GetCredentials().GetNodeId())
		}
		// Paging returns every node exactly once.
		seen := map[string]bool{}
		var pageToken string
		for pages := 0; ; pages++ {
			resp, err := admin.ListNodes(ctx, &berthv1.ListNodesRequest{PageSize: 2, PageToken: pageToken})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range resp.GetNodes() {
				if seen[n.GetId()] {
					t.Fatalf("node %s listed twice", n.GetId())
				}
				seen[n.GetId()] = true
			}
			if pageToken = resp.GetNextPageToken(); pageToken == "" {
				break
			}
			if pages > 5 {
				t.Fatal("paging does not end")
			}
		}
		if len(seen) != 5 {
			t.Fatalf("listed %d nodes, want 5", len(seen))
		}
		filters := []struct {
			name string
			req  *berthv1.ListNodesRequest
			want int
		}{
			{"pending", &berthv1.ListNodesRequest{Status: berthv1.NodeStatus_NODE_STATUS_PENDING}, 2},
			{"approved", &berthv1.ListNodesRequest{Status: berthv1.NodeStatus_NODE_STATUS_APPROVED}, 3},
			{"label rack=1", &berthv1.ListNodesRequest{Labels: map[string]string{"rack": "1"}}, 2},
			{"approved and rack=1", &berthv1.ListNodesRequest{Status: berthv1.NodeStatus_NODE_STATUS_APPROVED, Labels: map[string]string{"rack": "1"}}, 0},
		}
		for _, f := range filters {
			resp, err := admin.ListNodes(ctx, f.req)
			if err != nil || len(resp.GetNodes()) != f.want {
				t.Fatalf("%s: %d nodes (%v), want %d", f.name, len(resp.GetNodes()), err, f.want)
			}
		}
		// Status transitions that are not allowed change nothing.
		if _, err := admin.RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: ids[0]}); err != nil {
			t.Fatal(err)
		}
		_, err := admin.ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: ids[0]})
		wantCode(t, err, codes.FailedPrecondition)
		_, err = admin.RejectNode(ctx, &berthv1.RejectNodeRequest{Id: ids[2]})
		wantCode(t, err, codes.FailedPrecondition)
		got, err := admin.GetNode(ctx, &berthv1.GetNodeRequest{Id: ids[0]})
		if err != nil || got.GetNode().GetStatus() != berthv1.NodeStatus_NODE_STATUS_REVOKED {
			t.Fatalf("revoked node: %v %v", got.GetNode().GetStatus(), err)
		}
		// Delete forgets the node and revokes its certificate.
		if _, err := admin.DeleteNode(ctx, &berthv1.DeleteNodeRequest{Id: ids[2]}); err != nil {
			t.Fatal(err)
		}
		_, err = admin.GetNode(ctx, &berthv1.GetNodeRequest{Id: ids[2]})
		wantCode(t, err, codes.NotFound)
	})
}

func TestAdminBadInput(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	ctx := context.Background()
	admin := e.adminClient()
	long := strings.Repeat("x", 300)
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"get malformed id", func() error { _, err := admin.GetNode(ctx, &berthv1.GetNodeRequest{Id: "../etc"}); return err }, codes.InvalidArgument},
		{"get unknown node", func() error { _, err := admin.GetNode(ctx, &berthv1.GetNodeRequest{Id: "unknown"}); return err }, codes.NotFound},
		{"approve unknown", func() error { _, err := admin.ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: "unknown"}); return err }, codes.NotFound},
		{"reject empty id", func() error { _, err := admin.RejectNode(ctx, &berthv1.RejectNodeRequest{}); return err }, codes.InvalidArgument},
		{"revoke with long reason", func() error {
			_, err := admin.RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: "a", Reason: long})
			return err
		}, codes.InvalidArgument},
		{"revoke with the reserved reason", func() error {
			_, err := admin.RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: "a", Reason: " Superseded "})
			return err
		}, codes.InvalidArgument},
		{"delete unknown", func() error { _, err := admin.DeleteNode(ctx, &berthv1.DeleteNodeRequest{Id: "unknown"}); return err }, codes.NotFound},
		{"allow replacement unknown", func() error {
			_, err := admin.AllowReplacement(ctx, &berthv1.AllowReplacementRequest{Id: "unknown"})
			return err
		}, codes.NotFound},
		{"negative page size", func() error { _, err := admin.ListNodes(ctx, &berthv1.ListNodesRequest{PageSize: -1}); return err }, codes.InvalidArgument},
		{"huge page size", func() error { _, err := admin.ListNodes(ctx, &berthv1.ListNodesRequest{PageSize: 5000}); return err }, codes.InvalidArgument},
		{"forged page token", func() error { _, err := admin.ListNodes(ctx, &berthv1.ListNodesRequest{PageToken: "!!"}); return err }, codes.InvalidArgument},
		{"bad label filter", func() error {
			_, err := admin.ListNodes(ctx, &berthv1.ListNodesRequest{Labels: map[string]string{"bad key": "v"}})
			return err
		}, codes.InvalidArgument},
		{"unknown status filter", func() error { _, err := admin.ListNodes(ctx, &berthv1.ListNodesRequest{Status: 42}); return err }, codes.InvalidArgument},
		{"negative ttl", func() error {
			_, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{TtlSeconds: -1})
			return err
		}, codes.InvalidArgument},
		{"ttl over a year", func() error {
			_, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{TtlSeconds: 400 * 24 * 3600})
			return err
		}, codes.InvalidArgument},
		{"negative uses", func() error { _, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{Uses: -3}); return err }, codes.InvalidArgument},
		{"bad token label", func() error {
			_, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{Labels: map[string]string{"k": "v v"}})
			return err
		}, codes.InvalidArgument},
		{"long description", func() error {
			_, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{Description: long})
			return err
		}, codes.InvalidArgument},
		{"revoke unknown token", func() error {
			_, err := admin.RevokeToken(ctx, &berthv1.RevokeTokenRequest{Id: "abcdefgh"})
			return err
		}, codes.NotFound},
		{"revoke malformed token id", func() error { _, err := admin.RevokeToken(ctx, &berthv1.RevokeTokenRequest{Id: "ab"}); return err }, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), tt.want) })
	}
	toks, err := admin.ListTokens(ctx, &berthv1.ListTokensRequest{IncludeInactive: true})
	if err != nil || len(toks.GetTokens()) != 0 {
		t.Fatalf("bad token requests created tokens: %v %v", toks.GetTokens(), err)
	}
}

func TestOversizedRequest(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	n := e.newNode(uuidA)
	req := n.registerRequest(t, "")
	req.Facts.Serial = strings.Repeat("s", rpc.DefaultMaxRecvMsgSize+1)
	_, err := n.client().Register(context.Background(), req)
	wantCode(t, err, codes.ResourceExhausted)
	if e.nodeCount(t) != 0 {
		t.Fatal("oversized request created a node")
	}
}

func TestTokenLifecycle(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	ctx := context.Background()
	admin := e.adminClient()
	resp, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{Uses: 2, AutoApprove: true, Labels: map[string]string{"site": "ams"}})
	if err != nil {
		t.Fatal(err)
	}
	tok := resp.GetToken()
	if !strings.HasPrefix(resp.GetSecretToken(), tok.GetId()+".") || tok.GetUsesLeft() != 2 || !tok.GetAutoApprove() {
		t.Fatalf("created token %v secret %q", tok, resp.GetSecretToken())
	}
	// The secret itself is never stored.
	stored, err := e.reg.GetToken(ctx, tok.GetId())
	if err != nil || strings.Contains(string(stored.SecretHash), resp.GetSecretToken()[9:]) || len(stored.SecretHash) != 32 {
		t.Fatalf("stored token: %v %v", stored, err)
	}
	n := e.newNode(uuidA)
	creds, err := n.client().Register(ctx, n.registerRequest(t, resp.GetSecretToken()))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := admin.GetNode(ctx, &berthv1.GetNodeRequest{Id: creds.GetCredentials().GetNodeId()})
	if got.GetNode().GetLabels()["site"] != "ams" || got.GetNode().GetTokenId() != tok.GetId() {
		t.Fatalf("node did not get the token's labels: %v", got.GetNode())
	}
	if _, err := admin.RevokeToken(ctx, &berthv1.RevokeTokenRequest{Id: tok.GetId()}); err != nil {
		t.Fatal(err)
	}
	active, _ := admin.ListTokens(ctx, &berthv1.ListTokensRequest{})
	all, _ := admin.ListTokens(ctx, &berthv1.ListTokensRequest{IncludeInactive: true})
	if len(active.GetTokens()) != 0 || len(all.GetTokens()) != 1 || !all.GetTokens()[0].GetRevoked() {
		t.Fatalf("after revoke: active %v all %v", active.GetTokens(), all.GetTokens())
	}
}

// TestOneNodeIDRule: the registration service, the CA and the bundle
// store answer a node ID alike, by internal/ident's one rule; hyphenated
// IDs, which the registration service once refused, pass everywhere.
func TestOneNodeIDRule(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	ctx := context.Background()
	reg := e.adminClient()
	cas := berthv1.NewCertificateAuthorityServiceClient(e.admin)
	bundles := berthv1.NewBundleAdminServiceClient(e.admin)
	tests := []struct {
		id    string
		valid bool
	}{
		{strings.ToLower(rand.Text()), true},
		{"node-a", true},
		{"n1", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"-node", false},
		{"Node-a", false},
		{"n_1", false},
		{"../etc", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			_, err := reg.GetNode(ctx, &berthv1.GetNodeRequest{Id: tt.id})
			if tt.valid {
				wantCode(t, err, codes.NotFound)
			} else {
				grpctest.WantStatus(t, err, codes.InvalidArgument, "id "+ruleNodeID)
			}
			_, err = cas.ListIssued(ctx, &berthv1.ListIssuedRequest{NodeId: tt.id, CountOnly: true})
			switch {
			case tt.id == "":
				wantCode(t, err, codes.OK) // an empty filter lists every node
			case tt.valid:
				wantCode(t, err, codes.OK)
			default:
				grpctest.WantStatus(t, err, codes.InvalidArgument, "node_id "+ruleNodeID)
			}
			_, err = bundles.GetBundleInfo(ctx, &berthv1.GetBundleInfoRequest{NodeId: tt.id})
			if tt.valid {
				wantCode(t, err, codes.NotFound)
			} else {
				grpctest.WantStatus(t, err, codes.InvalidArgument, "node_id "+ruleNodeID)
			}
		})
	}
}

// TestRejectReason: a rejection records its reason with the node and in
// its rejected event; rejecting again with another reason changes it,
// approval clears it; a reason over the limit or with control characters
// is refused and changes nothing. An empty reason records none.
func TestRejectReason(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	ctx := context.Background()
	admin := e.adminClient()
	id := e.register(t, e.newNode(uuidA), false).GetNodeId()
	quiet := e.register(t, e.newNode(uuidB), false).GetNodeId()
	w := watchEvents(t, e.admin, &berthv1.LifecycleFilter{FromNow: true, Types: []string{"rejected", "approved"}})
	reasonOf := func(id string) string {
		t.Helper()
		got, err := admin.GetNode(ctx, &berthv1.GetNodeRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		return got.GetNode().GetStatusReason()
	}

	for _, bad := range []struct{ name, reason string }{
		{"257 bytes", strings.Repeat("r", 257)},
		{"a control character", "bad\x00reason"},
		{"a newline", "two\nlines"},
	} {
		_, err := admin.RejectNode(ctx, &berthv1.RejectNodeRequest{Id: id, Reason: bad.reason})
		grpctest.WantStatus(t, err, codes.InvalidArgument, "reason "+ruleText)
		got, _ := admin.GetNode(ctx, &berthv1.GetNodeRequest{Id: id})
		if got.GetNode().GetStatus() != berthv1.NodeStatus_NODE_STATUS_PENDING {
			t.Errorf("reason with %s: node is %v after the refusal, want pending", bad.name, got.GetNode().GetStatus())
		}
	}

	resp, err := admin.RejectNode(ctx, &berthv1.RejectNodeRequest{Id: id, Reason: "  unknown rack  "})
	if err != nil || resp.GetNode().GetStatusReason() != "unknown rack" {
		t.Fatalf("reject with a reason: %v %v, want it recorded trimmed", resp.GetNode().GetStatusReason(), err)
	}
	longest := strings.Repeat("é", 128) // 256 bytes: at the limit
	if _, err := admin.RejectNode(ctx, &berthv1.RejectNodeRequest{Id: id, Reason: longest}); err != nil {
		t.Fatalf("reject again with a 256-byte reason: %v", err)
	}
	if got := reasonOf(id); got != longest {
		t.Errorf("reason after rejecting again %q, want the new one", got)
	}
	if _, err := admin.RejectNode(ctx, &berthv1.RejectNodeRequest{Id: quiet}); err != nil {
		t.Fatalf("reject without a reason: %v", err)
	}
	if got := reasonOf(quiet); got != "" {
		t.Errorf("reason of a node rejected without one: %q", got)
	}
	if _, err := admin.ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	if got := reasonOf(id); got != "" {
		t.Errorf("reason after approval %q, want none", got)
	}

	evs := w.next(t, 4)
	want := []struct{ typ, node, reason string }{
		{"rejected", id, "unknown rack"}, {"rejected", id, longest}, {"rejected", quiet, ""}, {"approved", id, ""},
	}
	for i, ev := range evs {
		if ev.GetType() != want[i].typ || ev.GetNodeId() != want[i].node || ev.GetDetails()["reason"] != want[i].reason {
			t.Errorf("event %d: %s %s reason %q, want %s %s reason %q", i, ev.GetType(), ev.GetNodeId(), ev.GetDetails()["reason"],
				want[i].typ, want[i].node, want[i].reason)
		}
	}
}
