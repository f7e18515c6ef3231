package registration

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// state is what a refused call must leave alone: every node with its
// status, certificate and counters, the CA's issued log and revocations,
// and the tokens' uses.
func (e *env) state(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	nodes, err := e.adminClient().ListNodes(ctx, &berthv1.ListNodesRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.GetNodes() {
		fmt.Fprintf(&b, "node %s %v serial=%s issued=%d updated=%v\n", n.GetId(), n.GetStatus(), n.GetCertSerial(),
			n.GetCertificatesIssued(), n.GetUpdatedAt().AsTime())
	}
	revs, err := e.cas.ListRevocations(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "issued %d, revoked %d\n", e.issuedCount(t), len(revs))
	toks, err := e.adminClient().ListTokens(ctx, &berthv1.ListTokensRequest{IncludeInactive: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks.GetTokens() {
		fmt.Fprintf(&b, "token %s uses=%d\n", tok.GetId(), tok.GetUsesLeft())
	}
	return b.String()
}

// renew calls Renew over conn.
func renew(conn *grpc.ClientConn) (*berthv1.NodeCredentials, error) {
	resp, err := berthv1.NewRegistrationServiceClient(conn).Renew(context.Background(), &berthv1.RenewRequest{})
	return resp.GetCredentials(), err
}

// TestRenewWithBundleStoreDown: a running node renews without its bundle,
// so renewal goes on while the bundle store is down (commit fba2288); a
// booting node's Resume, which hands out the bundle, says Unavailable.
func TestRenewWithBundleStoreDown(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		n := e.newNode(uuidA)
		creds := e.register(t, n, true)
		e.putBundle(t, creds.GetNodeId(), []bundle.File{{Path: "etc/motd", Mode: 0o644, Content: []byte("hi")}})
		first := leafOf(t, creds)
		e.bundlesDown()

		before := e.state(t)
		_, err := n.client().Resume(context.Background(), &berthv1.ResumeRequest{})
		grpctest.WantStatus(t, err, codes.Unavailable, msgBundlesDown)
		if after := e.state(t); after != before {
			t.Fatalf("a failed Resume changed state:\n%s\nwant\n%s", after, before)
		}

		// Not due: the same certificate, and no word about bundles.
		got, err := renew(n.conn)
		if err != nil {
			t.Fatalf("Renew with the bundle store down: %v", err)
		}
		if got.GetNodeId() != creds.GetNodeId() || got.GetRenewed() || leafOf(t, got).SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Fatalf("Renew: node %s renewed %v, want the first certificate again", got.GetNodeId(), got.GetRenewed())
		}
		if got.GetBundleChecked() || got.GetBundle() != nil {
			t.Fatalf("Renew reported bundles: checked %v, bundle %v", got.GetBundleChecked(), got.GetBundle())
		}

		// Due: a new certificate, recorded, still without the bundle store.
		e.clock.Set(mtls.RenewalTime(first.NotBefore, first.NotAfter).Add(time.Minute))
		got, err = renew(n.conn)
		if err != nil {
			t.Fatalf("Renew when due with the bundle store down: %v", err)
		}
		leaf := leafOf(t, got)
		if !got.GetRenewed() || leaf.SerialNumber.Cmp(first.SerialNumber) == 0 || got.GetBundleChecked() {
			t.Fatalf("Renew when due: renewed %v, checked %v, serial %x (first %x)", got.GetRenewed(), got.GetBundleChecked(), leaf.SerialNumber, first.SerialNumber)
		}
		node, err := e.adminClient().GetNode(context.Background(), &berthv1.GetNodeRequest{Id: creds.GetNodeId()})
		if err != nil {
			t.Fatal(err)
		}
		if node.GetNode().GetCertSerial() != leaf.SerialNumber.Text(16) || e.issuedCount(t) != 2 {
			t.Fatalf("after renewal: node serial %s, issued %d; want %x and 2", node.GetNode().GetCertSerial(), e.issuedCount(t), leaf.SerialNumber)
		}
	})
}

// TestRenewOverIssuedCertificate: a running agent renews over a connection
// presenting the certificate it was issued, not a bare key.
func TestRenewOverIssuedCertificate(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		n := e.newNode(uuidA)
		creds := e.register(t, n, true)
		conn := e.dial(tls.Certificate{Certificate: creds.GetCertificateChain(), PrivateKey: n.key})
		got, err := renew(conn)
		if err != nil {
			t.Fatal(err)
		}
		if got.GetNodeId() != creds.GetNodeId() || got.GetRenewed() {
			t.Fatalf("Renew: node %s renewed %v", got.GetNodeId(), got.GetRenewed())
		}
	})
}

// TestRenewRefused sends Renew from every kind of caller it must refuse,
// and checks the precise status and that nothing changed.
func TestRenewRefused(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		admin := e.adminClient()

		pending := e.newNode("00000000-0000-4000-8000-000000000001")
		e.register(t, pending, false)

		rejected := e.newNode("00000000-0000-4000-8000-000000000002")
		id := e.register(t, rejected, false).GetNodeId()
		if _, err := admin.RejectNode(ctx, &berthv1.RejectNodeRequest{Id: id}); err != nil {
			t.Fatal(err)
		}

		revoked := e.newNode("00000000-0000-4000-8000-000000000003")
		revokedCreds := e.register(t, revoked, true)
		if _, err := admin.RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: revokedCreds.GetNodeId(), Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}

		deleted := e.newNode("00000000-0000-4000-8000-000000000004")
		deletedCreds := e.register(t, deleted, true)
		if _, err := admin.DeleteNode(ctx, &berthv1.DeleteNodeRequest{Id: deletedCreds.GetNodeId()}); err != nil {
			t.Fatal(err)
		}

		// The old board of a replaced machine: its key is no node's any more.
		old := e.newNode("00000000-0000-4000-8000-000000000005")
		oldCreds := e.register(t, old, true)
		if _, err := admin.AllowReplacement(ctx, &berthv1.AllowReplacementRequest{Id: oldCreds.GetNodeId()}); err != nil {
			t.Fatal(err)
		}
		e.register(t, e.newNode("00000000-0000-4000-8000-000000000005"), true)

		// A node whose certificate is due while the CA is down.
		due := e.newNode("00000000-0000-4000-8000-000000000006")
		dueLeaf := leafOf(t, e.register(t, due, true))

		tests := []struct {
			name     string
			conn     func() *grpc.ClientConn
			prepare  func()
			wantCode codes.Code
			wantMsg  string // empty: the transport's own
		}{
			{"unknown key", func() *grpc.ClientConn { return e.newNode(uuidA).conn }, nil, codes.NotFound, msgUnknownKey},
			{"pending", func() *grpc.ClientConn { return pending.conn }, nil, codes.FailedPrecondition, msgPending},
			{"rejected", func() *grpc.ClientConn { return rejected.conn }, nil, codes.PermissionDenied, msgRejected},
			{"revoked", func() *grpc.ClientConn { return revoked.conn }, nil, codes.PermissionDenied, msgRevoked},
			{"revoked, over its issued certificate", func() *grpc.ClientConn {
				return e.dial(tls.Certificate{Certificate: revokedCreds.GetCertificateChain(), PrivateKey: revoked.key})
			}, nil, codes.PermissionDenied, msgRevoked},
			{"deleted", func() *grpc.ClientConn { return deleted.conn }, nil, codes.NotFound, msgUnknownKey},
			{"deleted, over its issued certificate", func() *grpc.ClientConn {
				return e.dial(tls.Certificate{Certificate: deletedCreds.GetCertificateChain(), PrivateKey: deleted.key})
			}, nil, codes.NotFound, msgUnknownKey},
			{"replaced board", func() *grpc.ClientConn { return old.conn }, nil, codes.NotFound, msgUnknownKey},
			{"admin", func() *grpc.ClientConn { return e.admin }, nil, codes.PermissionDenied, "caller is not permitted to call this method"},
			{"a service", func() *grpc.ClientConn { return e.srv.Service(t, pki.ServiceBundles) }, nil, codes.PermissionDenied, "caller is not permitted to call this method"},
			// Another deployment's certificate proves only a key, and no
			// node has it.
			{"another deployment's admin", func() *grpc.ClientConn { return e.srv.Foreign(t) }, nil, codes.NotFound, msgUnknownKey},
			// The server requires a certificate in the TLS handshake.
			{"no client certificate", func() *grpc.ClientConn { return e.srv.Anonymous(t) }, nil, codes.Unavailable, ""},
			{"due while the CA is down", func() *grpc.ClientConn { return due.conn }, func() {
				e.clock.Set(mtls.RenewalTime(dueLeaf.NotBefore, dueLeaf.NotAfter).Add(time.Minute))
				e.caDown()
			}, codes.Unavailable, msgCAUnavailable},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				conn := tt.conn()
				if tt.prepare != nil {
					tt.prepare()
				}
				before := e.state(t)
				_, err := renew(conn)
				if tt.wantMsg == "" {
					grpctest.WantCode(t, err, tt.wantCode)
				} else {
					grpctest.WantStatus(t, err, tt.wantCode, tt.wantMsg)
				}
				if after := e.state(t); after != before {
					t.Fatalf("a refused Renew changed state:\n%s\nwant\n%s", after, before)
				}
			})
		}
	})
}

// TestStoreUnavailable: when the database cannot serve, nodes and admins
// are told Unavailable, to retry, never Internal.
func TestStoreUnavailable(t *testing.T) {
	down := grpctest.DatabaseDown(t)
	e := newEnvConfig(t, sqliteBackend, func(c *Config) { c.Store = lookupsDown{Store: c.Store, err: down} })
	ctx := context.Background()
	n := e.newNode(uuidA)
	admin := e.adminClient()
	calls := map[string]func() error{
		"Register": func() error {
			_, err := n.client().Register(ctx, n.registerRequest(t, "abcdefgh.abcdefghijklmnopqrstuvwxyz"))
			return err
		},
		"Resume": func() error { _, err := n.client().Resume(ctx, &berthv1.ResumeRequest{}); return err },
		"Renew":  func() error { _, err := renew(n.conn); return err },
		"GetNode": func() error {
			_, err := admin.GetNode(ctx, &berthv1.GetNodeRequest{Id: "node-a"})
			return err
		},
		"ListNodes":   func() error { _, err := admin.ListNodes(ctx, &berthv1.ListNodesRequest{}); return err },
		"CreateToken": func() error { _, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{}); return err },
		"ListTokens":  func() error { _, err := admin.ListTokens(ctx, &berthv1.ListTokensRequest{}); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			grpctest.WantStatus(t, call(), codes.Unavailable, rpcerr.MsgDatabaseUnavailable)
		})
	}
	if e.issuedCount(t) != 0 {
		t.Error("a certificate was issued")
	}
}
