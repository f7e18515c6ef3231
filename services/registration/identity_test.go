package registration

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// uuidN is a distinct hardware UUID per i.
func uuidN(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", 0x1d0000+i) }

// TestIdentitySourceApproval: the token's policy decides auto-approval from
// the identity source the node reports, and the source is recorded and shown.
func TestIdentitySourceApproval(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		tests := []struct {
			name   string
			tok    *berthv1.CreateTokenRequest
			source string
			want   berthv1.NodeStatus
		}{
			{"no auto-approve", &berthv1.CreateTokenRequest{}, "seed-file", berthv1.NodeStatus_NODE_STATUS_PENDING},
			{"auto, any source", &berthv1.CreateTokenRequest{AutoApprove: true}, "file", berthv1.NodeStatus_NODE_STATUS_APPROVED},
			{"auto, at the minimum", &berthv1.CreateTokenRequest{AutoApprove: true, MinIdentity: "seed-file"}, "seed-file", berthv1.NodeStatus_NODE_STATUS_APPROVED},
			{"auto, below the minimum", &berthv1.CreateTokenRequest{AutoApprove: true, MinIdentity: "seed-file"}, "file", berthv1.NodeStatus_NODE_STATUS_PENDING},
			{"site secret never by default", &berthv1.CreateTokenRequest{AutoApprove: true}, "site-secret", berthv1.NodeStatus_NODE_STATUS_PENDING},
			{"site secret held even at a site-secret minimum", &berthv1.CreateTokenRequest{AutoApprove: true, MinIdentity: "site-secret"}, "site-secret", berthv1.NodeStatus_NODE_STATUS_PENDING},
			{"site secret allowed explicitly", &berthv1.CreateTokenRequest{AutoApprove: true, AllowSiteSecret: true}, "site-secret", berthv1.NodeStatus_NODE_STATUS_APPROVED},
			{"allowing site secrets approves the rest too", &berthv1.CreateTokenRequest{AutoApprove: true, AllowSiteSecret: true}, "file", berthv1.NodeStatus_NODE_STATUS_APPROVED},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				n := e.newNode(uuidN(i))
				n.source = tt.source
				resp, err := n.client().Register(ctx, n.registerRequest(t, e.token(t, tt.tok)))
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				if got := resp.GetCredentials().GetStatus(); got != tt.want {
					t.Errorf("status = %v, want %v", got, tt.want)
				}
				id := resp.GetCredentials().GetNodeId()
				got, err := e.adminClient().GetNode(ctx, &berthv1.GetNodeRequest{Id: id})
				if err != nil {
					t.Fatal(err)
				}
				if got.GetNode().GetIdentitySource() != tt.source || got.GetNode().GetStatus() != tt.want {
					t.Errorf("GetNode: identity_source %q status %v, want %q %v",
						got.GetNode().GetIdentitySource(), got.GetNode().GetStatus(), tt.source, tt.want)
				}
				reg := eventsOf(t, e, id, regstore.EventRegistered)
				if len(reg) != 1 || reg[0].Details[regstore.DetailIdentitySource] != tt.source {
					t.Errorf("registered events = %v, want one with identity_source %s", reg, tt.source)
				}
			})
		}
		list, err := e.adminClient().ListNodes(ctx, &berthv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range list.GetNodes() {
			if n.GetIdentitySource() == "" {
				t.Errorf("ListNodes: node %s has no identity_source", n.GetId())
			}
		}
	})
}

// TestCreateTokenIdentityBadInput: a bad identity policy is refused with
// InvalidArgument and creates no token.
func TestCreateTokenIdentityBadInput(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, tt := range []struct {
			name string
			req  *berthv1.CreateTokenRequest
		}{
			{"unknown minimum", &berthv1.CreateTokenRequest{AutoApprove: true, MinIdentity: "usb-stick"}},
			{"minimum in capitals", &berthv1.CreateTokenRequest{AutoApprove: true, MinIdentity: "TPM"}},
			{"site secrets allowed without auto-approve", &berthv1.CreateTokenRequest{AllowSiteSecret: true}},
			{"site secrets allowed under a higher minimum", &berthv1.CreateTokenRequest{AutoApprove: true, AllowSiteSecret: true, MinIdentity: "seed-file"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := e.adminClient().CreateToken(ctx, tt.req)
				wantCode(t, err, codes.InvalidArgument)
			})
		}
		toks, err := e.adminClient().ListTokens(ctx, &berthv1.ListTokensRequest{IncludeInactive: true})
		if err != nil || len(toks.GetTokens()) != 0 {
			t.Fatalf("bad token requests left tokens %v (%v)", toks.GetTokens(), err)
		}
		resp, err := e.adminClient().CreateToken(ctx, &berthv1.CreateTokenRequest{AutoApprove: true, MinIdentity: "site-secret", AllowSiteSecret: true})
		if err != nil {
			t.Fatal(err)
		}
		if tok := resp.GetToken(); tok.GetMinIdentity() != "site-secret" || !tok.GetAllowSiteSecret() {
			t.Errorf("token = %v, want min_identity site-secret and allow_site_secret", tok)
		}
	})
}

// TestDuplicateHardware: nodes sharing a MAC both register, each shows the
// other as a duplicate, and the second raises duplicate_hardware; a second
// key claiming a registered UUID is refused, and raises the event on the
// node it claimed.
func TestDuplicateHardware(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a, b, c := e.newNode(uuidN(1)), e.newNode(uuidN(2)), e.newNode(uuidN(3))
		shared := "52:54:00:ff:ff:01"
		a.facts.Macs = append(a.facts.Macs, shared)
		b.facts.Macs = []string{shared}
		idA := e.register(t, a, true).GetNodeId()
		idB := e.register(t, b, true).GetNodeId()
		idC := e.register(t, c, true).GetNodeId()

		for _, tt := range []struct{ id, dup string }{{idA, idB}, {idB, idA}, {idC, ""}} {
			got, err := e.adminClient().GetNode(ctx, &berthv1.GetNodeRequest{Id: tt.id})
			if err != nil {
				t.Fatal(err)
			}
			if want := nonEmptyList(tt.dup); !slices.Equal(got.GetNode().GetDuplicateOf(), want) {
				t.Errorf("GetNode(%s).duplicate_of = %v, want %v", tt.id, got.GetNode().GetDuplicateOf(), want)
			}
		}
		list, err := e.adminClient().ListNodes(ctx, &berthv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range list.GetNodes() {
			want := map[string][]string{idA: {idB}, idB: {idA}}[n.GetId()]
			if !slices.Equal(n.GetDuplicateOf(), want) {
				t.Errorf("ListNodes: %s duplicate_of = %v, want %v", n.GetId(), n.GetDuplicateOf(), want)
			}
		}
		dup := eventsOf(t, e, idB, regstore.EventDuplicateHardware)
		if len(dup) != 1 || dup[0].Details[regstore.DetailDuplicateOf] != idA || dup[0].Details[regstore.DetailMACs] != shared {
			t.Errorf("duplicate events of %s = %v, want one naming %s and %s", idB, dup, idA, shared)
		}
		if evs := eventsOf(t, e, idA, regstore.EventDuplicateHardware); len(evs) != 0 {
			t.Errorf("the first node got duplicate events %v", evs)
		}

		// Same UUID, another key: refused, nothing registered, the
		// claimed node hears of it.
		thief := e.newNode(uuidN(3))
		thief.source = "site-secret"
		_, err = thief.client().Register(ctx, thief.registerRequest(t, e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})))
		wantCode(t, err, codes.FailedPrecondition)
		if e.nodeCount(t) != 3 {
			t.Fatalf("a refused claim left %d nodes, want 3", e.nodeCount(t))
		}
		claims := eventsOf(t, e, idC, regstore.EventDuplicateHardware)
		key := thief.identity(t).KeySHA256
		if len(claims) != 1 || claims[0].Details[regstore.DetailClaimantKey] != hex.EncodeToString(key[:]) ||
			claims[0].Details[regstore.DetailHardwareUUID] != uuidN(3) || claims[0].Details[regstore.DetailIdentitySource] != "site-secret" {
			t.Errorf("claim events of %s = %v, want one naming the claimant's key, the UUID and its source", idC, claims)
		}
	})
}

func nonEmptyList(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// eventsOf returns node id's events of type typ.
func eventsOf(t *testing.T, e *env, id, typ string) []eventlog.Event {
	t.Helper()
	p, err := e.reg.Events().Read(context.Background(), eventlog.Query{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var out []eventlog.Event
	for _, ev := range p.Events {
		if ev.NodeID == id && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}
