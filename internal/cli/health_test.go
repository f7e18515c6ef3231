package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/cli"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestNodesWithoutHeartbeat checks that node admin does not depend on the
// heartbeat service: nodes are printed with health unknown, a one-line
// warning says why, and the command succeeds.
func TestNodesWithoutHeartbeat(t *testing.T) {
	pki := newTestPKI(t)
	dead := deadAddr(t)
	failing := func(code codes.Code, msg string) *fakeHeartbeat {
		return &fakeHeartbeat{
			getNodeHealth: func(context.Context, *berthv1.GetNodeHealthRequest) (*berthv1.GetNodeHealthResponse, error) {
				return nil, status.Error(code, msg)
			},
			listNodeHealth: func(context.Context, *berthv1.ListNodeHealthRequest) (*berthv1.ListNodeHealthResponse, error) {
				return nil, status.Error(code, msg)
			},
		}
	}
	for _, tc := range []struct {
		name string
		hb   *fakeHeartbeat
		env  map[string]string
		want string // the warning, with ADDR for the server's address
	}{
		{"unreachable", healthOf(healthApproved()), map[string]string{"BERTH_HEARTBEAT_SERVER": dead},
			"cannot reach server " + dead + ": dial tcp " + dead + ": connect: connection refused"},
		{"not at the default address", nil, nil,
			"ADDR is not the heartbeat service: expected spiffe://berth.local/service/heartbeat or spiffe://berth.local/service/api, found spiffe://berth.local/service/registration " +
				"(the address comes from BERTH_SERVER; set --heartbeat-server or BERTH_HEARTBEAT_SERVER)"},
		{"failing", failing(codes.Internal, "internal error"), nil, "internal error"},
		{"invalid node IDs", failing(codes.InvalidArgument, "node_ids must match ^[a-z0-9][a-z0-9-]{0,62}$"), nil,
			"node_ids must match ^[a-z0-9][a-z0-9-]{0,62}$"},
	} {
		for _, cmd := range []string{"list", "get"} {
			t.Run(tc.name+" "+cmd, func(t *testing.T) {
				fake := &fakeAdmin{
					listNodes: pagedNodes(allNodes()),
					getNode: func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
						return &berthv1.GetNodeResponse{Node: nodeApproved()}, nil
					},
				}
				h := startServers(t, pki, fake, nil, tc.hb)
				args := []string{"nodes", cmd, "-o", "json"}
				if cmd == "get" {
					args = append(args, "n-7f3a9c")
				}
				r := runEnv(t, h.withEnv(tc.env), args...)
				want := "berthctl: warning: health shown as unknown: node health: " + strings.ReplaceAll(tc.want, "ADDR", h.addr) + "\n"
				if r.code != cli.ExitOK || r.stderr != want {
					t.Errorf("exit %d, stderr:\n%s\nwant exit 0, stderr:\n%s", r.code, r.stderr, want)
				}
				// A revoked node's health is "revoked", known without the
				// heartbeat service.
				if strings.Count(r.stdout, `"health": "unknown"`) != map[string]int{"list": 2, "get": 1}[cmd] ||
					strings.Count(r.stdout, `"health": "revoked"`) != map[string]int{"list": 1, "get": 0}[cmd] {
					t.Errorf("stdout:\n%s", r.stdout)
				}
			})
		}
	}
}

// TestNodesHealthBatches checks that nodes list asks for health once per
// 500 nodes, and follows the heartbeat service's own pages.
func TestNodesHealthBatches(t *testing.T) {
	var nodes []*berthv1.Node
	for i := range 501 {
		nodes = append(nodes, &berthv1.Node{Id: fmt.Sprintf("n-%04d", i), Status: berthv1.NodeStatus_NODE_STATUS_APPROVED})
	}
	fake := &fakeAdmin{listNodes: func(_ context.Context, r *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
		if r.GetPageToken() == "" {
			return &berthv1.ListNodesResponse{Nodes: nodes[:500], NextPageToken: "next"}, nil
		}
		return &berthv1.ListNodesResponse{Nodes: nodes[500:]}, nil
	}}
	hb := &fakeHeartbeat{listNodeHealth: func(_ context.Context, r *berthv1.ListNodeHealthRequest) (*berthv1.ListNodeHealthResponse, error) {
		// The first page of the first batch answers for its first node
		// only, and sends the rest on a second page.
		ids := r.GetNodeIds()
		var page []string
		resp := &berthv1.ListNodeHealthResponse{}
		switch {
		case len(ids) == 500 && r.GetPageToken() == "":
			page, resp.NextPageToken = ids[:1], "more"
		case len(ids) == 500:
			page = ids[1:]
		default:
			page = ids
		}
		for _, id := range page {
			resp.Nodes = append(resp.Nodes, &berthv1.NodeHealth{NodeId: id, State: berthv1.LivenessState_LIVENESS_STATE_SUSPECT})
		}
		return resp, nil
	}}
	r := startServers(t, newTestPKI(t), fake, nil, hb).run("nodes", "list", "-o", "json")
	checkOK(t, r)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	for _, n := range got {
		if n["health"] != "suspect" {
			t.Fatalf("node %v has health %v", n["id"], n["health"])
		}
	}
	ids := func(ns []*berthv1.Node) []string {
		out := make([]string, len(ns))
		for i, n := range ns {
			out[i] = n.GetId()
		}
		return out
	}
	checkRequests(t, hb,
		&berthv1.ListNodeHealthRequest{NodeIds: ids(nodes[:500]), PageSize: 500},
		&berthv1.ListNodeHealthRequest{NodeIds: ids(nodes[:500]), PageSize: 500, PageToken: "more"},
		&berthv1.ListNodeHealthRequest{NodeIds: ids(nodes[500:]), PageSize: 1},
	)
}

// TestHeartbeatServerSetting checks where nodes get asks for health.
func TestHeartbeatServerSetting(t *testing.T) {
	pki := newTestPKI(t)
	getNode := func() *fakeAdmin {
		return &fakeAdmin{getNode: func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
			return &berthv1.GetNodeResponse{Node: nodeApproved()}, nil
		}}
	}
	reg := startServers(t, pki, getNode(), nil, nil) // no heartbeat service
	beats := startServers(t, pki, nil, nil, healthOf(healthApproved()))
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"env", map[string]string{"BERTH_HEARTBEAT_SERVER": beats.addr}, nil},
		{"flag", nil, []string{"--heartbeat-server", beats.addr}},
		{"flag beats env", map[string]string{"BERTH_HEARTBEAT_SERVER": deadAddr(t)}, []string{"--heartbeat-server", beats.addr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runEnv(t, reg.withEnv(tc.env), append([]string{"nodes", "get", "n-7f3a9c", "-o", "json"}, tc.args...)...)
			checkOK(t, r)
			if !strings.Contains(r.stdout, `"health": "healthy"`) {
				t.Errorf("stdout:\n%s", r.stdout)
			}
		})
	}
}
