package cli_test

import (
	"context"
	"encoding/json"
	"google.golang.org/protobuf/types/known/durationpb"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	"github.com/berth-dev/berth/internal/cli"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// Sample nodes, at fixed offsets from testNow.
func nodeApproved() *berthv1.Node {
	return &berthv1.Node{
		Id:     "n-7f3a9c",
		Status: berthv1.NodeStatus_NODE_STATUS_APPROVED,
		Facts: &berthv1.MachineFacts{
			HardwareUuid: "4c4c4544-0042-3510-8051-b4c04f4d3132",
			Macs:         []string{"52:54:00:12:34:56", "52:54:00:12:34:57"},
			Hostname:     "hv01.rack1",
			Serial:       "CZ1234ABC",
		},
		Labels:             map[string]string{"rack": "r1", "role": "hypervisor"},
		KeySha256:          "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		CertSerial:         "5f3a2c1b0e9d8c7b",
		CertNotBefore:      ts(testNow.Add(-72 * time.Hour)),
		CertNotAfter:       ts(testNow.Add(27 * 24 * time.Hour)),
		CertificatesIssued: 1,
		CreatedAt:          ts(testNow.Add(-72 * time.Hour)),
		UpdatedAt:          ts(testNow.Add(-71 * time.Hour)),
		TokenId:            "tok-a1",
		IdentitySource:     "seed-file",
	}
}

// nodeTPM is a TPM node whose last boot broke a flagging PCR policy.
func nodeTPM() *berthv1.Node {
	n := nodeApproved()
	n.IdentitySource = "tpm"
	n.EkHash = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	n.EkCertificate = "trusted"
	n.EkLabel = "rack1 slot 4"
	n.BootPcrDigest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	n.BootPcrDigestAt = ts(testNow.Add(-5 * time.Minute))
	n.BootPolicyViolation = "policy image=node-4.5: boot digest sha256:2222222222222222222222222222222222222222222222222222222222222222 is not allowed"
	return n
}

func nodePending() *berthv1.Node {
	return &berthv1.Node{
		Id:     "n-2b4d6f",
		Status: berthv1.NodeStatus_NODE_STATUS_PENDING,
		Facts: &berthv1.MachineFacts{
			HardwareUuid: "4c4c4544-0042-3510-8051-b4c04f4d3133",
			Macs:         []string{"52:54:00:ab:cd:ef"},
			Hostname:     "hv02.rack1",
		},
		Labels:         map[string]string{"rack": "r1"},
		KeySha256:      "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		CreatedAt:      ts(testNow.Add(-2 * time.Hour)),
		UpdatedAt:      ts(testNow.Add(-2 * time.Hour)),
		IdentitySource: "site-secret",
		DuplicateOf:    []string{"n-0c1e3a"},
	}
}

func nodeRevoked() *berthv1.Node {
	return &berthv1.Node{
		Id:                 "n-0c1e3a",
		Status:             berthv1.NodeStatus_NODE_STATUS_REVOKED,
		Facts:              &berthv1.MachineFacts{HardwareUuid: "4c4c4544-0042-3510-8051-b4c04f4d3134"},
		KeySha256:          "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9",
		CertSerial:         "01ab",
		CertNotBefore:      ts(testNow.Add(-40 * 24 * time.Hour)),
		CertNotAfter:       ts(testNow.Add(-10 * 24 * time.Hour)),
		CertificatesIssued: 2,
		CreatedAt:          ts(testNow.Add(-90 * 24 * time.Hour)),
		UpdatedAt:          ts(testNow.Add(-5 * time.Minute)),
		ReplacementAllowed: true,
	}
}

func allNodes() []*berthv1.Node {
	return []*berthv1.Node{nodeApproved(), nodePending(), nodeRevoked()}
}

// pagedNodes serves nodes two to a page (or fewer when asked), with page
// tokens "p1", "p2", ... naming the offset.
func pagedNodes(nodes []*berthv1.Node) func(context.Context, *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
	return func(_ context.Context, r *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
		start := 0
		if r.GetPageToken() != "" {
			start = int(r.GetPageToken()[1] - '0')
		}
		size := min(2, int(r.GetPageSize()))
		end := min(start+size, len(nodes))
		resp := &berthv1.ListNodesResponse{Nodes: nodes[start:end]}
		if end < len(nodes) {
			resp.NextPageToken = "p" + string(rune('0'+end))
		}
		return resp, nil
	}
}

// Sample health, at fixed offsets from testNow.
func healthApproved() *berthv1.NodeHealth {
	return &berthv1.NodeHealth{
		NodeId: "n-7f3a9c", State: berthv1.LivenessState_LIVENESS_STATE_HEALTHY,
		StateSince: ts(testNow.Add(-3 * time.Hour)), LastSeen: ts(testNow.Add(-4 * time.Second)),
		BootId: "b7e1c3d2", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP, Sequence: 1080,
		Reported:   map[string]string{"maintenance": "false", "vms_running": "12"},
		ReportedAt: ts(testNow.Add(-time.Minute)),
		BundleApplied: &berthv1.BundleApplied{Version: 3, AppliedAt: ts(testNow.Add(-2 * time.Minute)), Hooks: []*berthv1.HookResult{
			{Command: "/usr/bin/systemctl reload-or-restart vdsmd", Duration: durationpb.New(1500 * time.Millisecond)},
			{Command: "/usr/local/bin/check-net", ExitCode: 1, Error: "hook failed with exit status 1", Duration: durationpb.New(20 * time.Millisecond)},
		}},
	}
}

func healthRevoked() *berthv1.NodeHealth {
	return &berthv1.NodeHealth{
		NodeId: "n-0c1e3a", State: berthv1.LivenessState_LIVENESS_STATE_UNREACHABLE,
		StateSince: ts(testNow.Add(-5 * time.Minute)), LastSeen: ts(testNow.Add(-6 * time.Minute)),
		BootId: "0a9f", Status: berthv1.ReportedStatus_REPORTED_STATUS_DEGRADED, Sequence: 7,
	}
}

// healthOf serves the health of the sample nodes that ever beat.
func healthOf(hs ...*berthv1.NodeHealth) *fakeHeartbeat {
	byID := map[string]*berthv1.NodeHealth{}
	for _, h := range hs {
		byID[h.GetNodeId()] = h
	}
	return &fakeHeartbeat{
		getNodeHealth: func(_ context.Context, r *berthv1.GetNodeHealthRequest) (*berthv1.GetNodeHealthResponse, error) {
			if h := byID[r.GetNodeId()]; h != nil {
				return &berthv1.GetNodeHealthResponse{Health: h}, nil
			}
			return nil, status.Error(codes.NotFound, "no beat was ever received from this node")
		},
		listNodeHealth: func(_ context.Context, r *berthv1.ListNodeHealthRequest) (*berthv1.ListNodeHealthResponse, error) {
			resp := &berthv1.ListNodeHealthResponse{Cursor: 42}
			for _, id := range r.GetNodeIds() {
				if h := byID[id]; h != nil {
					resp.Nodes = append(resp.Nodes, h)
				}
			}
			return resp, nil
		},
	}
}

func TestNodesList(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name   string
		args   []string
		golden string
	}{
		{"table", []string{"nodes", "list", "--status", "approved", "--label", "rack=r1", "--label", "role=hypervisor"}, "nodes_list_table"},
		{"json flag first", []string{"-o", "json", "nodes", "list", "--status", "approved", "--label", "rack=r1", "--label", "role=hypervisor"}, "nodes_list_json"},
		{"json flag between", []string{"nodes", "-o", "json", "list", "--status=approved", "--label=rack=r1", "--label", "role=hypervisor"}, "nodes_list_json"},
		{"json flag last", []string{"nodes", "list", "--label", "rack=r1", "--status", "approved", "--label", "role=hypervisor", "--output=json"}, "nodes_list_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAdmin{listNodes: pagedNodes(allNodes())}
			hb := healthOf(healthApproved(), healthRevoked())
			h := startServers(t, pki, fake, nil, hb)
			r := h.run(tc.args...)
			checkOK(t, r)
			checkGolden(t, tc.golden, r.stdout)
			// One batched health call for the nodes listed.
			checkRequests(t, hb, &berthv1.ListNodeHealthRequest{
				NodeIds: []string{"n-7f3a9c", "n-2b4d6f", "n-0c1e3a"}, PageSize: 3,
			})
			filter := func(token string) *berthv1.ListNodesRequest {
				return &berthv1.ListNodesRequest{
					Status:    berthv1.NodeStatus_NODE_STATUS_APPROVED,
					Labels:    map[string]string{"rack": "r1", "role": "hypervisor"},
					PageSize:  500,
					PageToken: token,
				}
			}
			checkRequests(t, fake, filter(""), filter("p2"))
		})
	}
}

func TestNodesListLimit(t *testing.T) {
	fake := &fakeAdmin{listNodes: pagedNodes(allNodes())}
	h := start(t, newTestPKI(t), fake)
	r := h.run("nodes", "list", "--limit", "2", "-o", "json")
	checkOK(t, r)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0]["id"] != "n-7f3a9c" || got[1]["id"] != "n-2b4d6f" {
		t.Errorf("got %v, want the first two nodes", got)
	}
	checkRequests(t, fake, &berthv1.ListNodesRequest{PageSize: 2})

	fake = &fakeAdmin{listNodes: pagedNodes(allNodes())}
	h = start(t, h.pki, fake)
	checkOK(t, h.run("nodes", "list", "--limit", "3"))
	checkRequests(t, fake, &berthv1.ListNodesRequest{PageSize: 3}, &berthv1.ListNodesRequest{PageSize: 1, PageToken: "p2"})
}

func TestNodesListEmpty(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct{ format, want string }{
		{"json", "[]\n"},
		{"table", "No nodes found.\n"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			fake := &fakeAdmin{listNodes: func(context.Context, *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
				return &berthv1.ListNodesResponse{}, nil
			}}
			r := start(t, pki, fake).run("nodes", "list", "-o", tc.format)
			checkOK(t, r)
			if r.stdout != tc.want {
				t.Errorf("stdout %q, want %q", r.stdout, tc.want)
			}
		})
	}
}

func TestNodesListPageLoop(t *testing.T) {
	fake := &fakeAdmin{listNodes: func(context.Context, *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
		return &berthv1.ListNodesResponse{Nodes: []*berthv1.Node{nodePending()}, NextPageToken: "again"}, nil
	}}
	r := start(t, newTestPKI(t), fake).run("nodes", "list")
	if r.code != cli.ExitError || !strings.HasPrefix(r.stderr, "berthctl: list nodes: server returned a page token it had already returned") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestNodesGet(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name   string
		node   *berthv1.Node
		health *fakeHeartbeat
		args   []string
		golden string
	}{
		{"table", nodeApproved(), healthOf(healthApproved()), []string{"nodes", "get", "n-7f3a9c"}, "nodes_get_table"},
		{"json", nodeApproved(), healthOf(healthApproved()), []string{"nodes", "get", "n-7f3a9c", "-o", "json"}, "nodes_get_json"},
		// A node that never beat is NotFound: its health is unknown, with
		// no warning.
		{"pending table", nodePending(), healthOf(), []string{"nodes", "get", "n-7f3a9c"}, "nodes_get_pending_table"},
		{"pending json", nodePending(), healthOf(), []string{"-o", "json", "nodes", "get", "n-7f3a9c"}, "nodes_get_pending_json"},
		{"tpm table", nodeTPM(), healthOf(healthApproved()), []string{"nodes", "get", "n-7f3a9c"}, "nodes_get_tpm_table"},
		{"tpm json", nodeTPM(), healthOf(healthApproved()), []string{"nodes", "get", "n-7f3a9c", "-o", "json"}, "nodes_get_tpm_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAdmin{getNode: func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
				return &berthv1.GetNodeResponse{Node: tc.node}, nil
			}}
			r := startServers(t, pki, fake, nil, tc.health).run(tc.args...)
			checkOK(t, r)
			checkGolden(t, tc.golden, r.stdout)
			checkRequests(t, fake, &berthv1.GetNodeRequest{Id: "n-7f3a9c"})
			checkRequests(t, tc.health, &berthv1.GetNodeHealthRequest{NodeId: "n-7f3a9c"})
		})
	}
}

// TestNodeJSONContract pins the field names and types of the JSON contract
// independently of the golden files, which -update rewrites.
func TestNodeJSONContract(t *testing.T) {
	fake := &fakeAdmin{getNode: func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
		return &berthv1.GetNodeResponse{Node: nodeApproved()}, nil
	}}
	r := startServers(t, newTestPKI(t), fake, nil, healthOf(healthApproved())).run("nodes", "get", "n-7f3a9c", "-o", "json")
	checkOK(t, r)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id":                  "n-7f3a9c",
		"status":              "approved",
		"hostname":            "hv01.rack1",
		"hardware_uuid":       "4c4c4544-0042-3510-8051-b4c04f4d3132",
		"cert_serial":         "5f3a2c1b0e9d8c7b",
		"cert_not_after":      "2026-12-18T12:00:00Z",
		"certificates_issued": float64(1),
		"health":              "healthy",
		"last_seen":           "2026-11-21T11:59:56Z",
		"boot_id":             "b7e1c3d2",
		"labels":              map[string]any{"rack": "r1", "role": "hypervisor"},
		"macs":                []any{"52:54:00:12:34:56", "52:54:00:12:34:57"},
		"serial":              "CZ1234ABC",
		"key_sha256":          "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"created_at":          "2026-11-18T12:00:00Z",
		"replacement_allowed": false,
		"identity_source":     "seed-file",
		"duplicate_of":        []any{},
	}
	for k, v := range want {
		if diff := cmp.Diff(v, got[k]); diff != "" {
			t.Errorf("field %q (-want +got):\n%s", k, diff)
		}
	}
}

func TestNodeActions(t *testing.T) {
	pki := newTestPKI(t)
	approved := nodePending()
	approved.Status = berthv1.NodeStatus_NODE_STATUS_APPROVED
	rejected := nodePending()
	rejected.Status = berthv1.NodeStatus_NODE_STATUS_REJECTED
	rejected.StatusReason = "unknown rack"
	revoked := nodeApproved()
	revoked.Status = berthv1.NodeStatus_NODE_STATUS_REVOKED
	replaceable := nodeApproved()
	replaceable.ReplacementAllowed = true

	fake := func() *fakeAdmin {
		return &fakeAdmin{
			approveNode: func(context.Context, *berthv1.ApproveNodeRequest) (*berthv1.ApproveNodeResponse, error) {
				return &berthv1.ApproveNodeResponse{Node: approved}, nil
			},
			rejectNode: func(context.Context, *berthv1.RejectNodeRequest) (*berthv1.RejectNodeResponse, error) {
				return &berthv1.RejectNodeResponse{Node: rejected}, nil
			},
			revokeNode: func(context.Context, *berthv1.RevokeNodeRequest) (*berthv1.RevokeNodeResponse, error) {
				return &berthv1.RevokeNodeResponse{Node: revoked}, nil
			},
			deleteNode: func(context.Context, *berthv1.DeleteNodeRequest) (*berthv1.DeleteNodeResponse, error) {
				return &berthv1.DeleteNodeResponse{}, nil
			},
			allowReplacement: func(context.Context, *berthv1.AllowReplacementRequest) (*berthv1.AllowReplacementResponse, error) {
				return &berthv1.AllowReplacementResponse{Node: replaceable}, nil
			},
		}
	}
	for _, tc := range []struct {
		name       string
		args       []string
		wantReq    proto.Message
		wantStdout string
		// wantJSON, when set, are fields of the JSON output.
		wantJSON map[string]any
	}{
		{"approve", []string{"nodes", "approve", "n-2b4d6f"}, &berthv1.ApproveNodeRequest{Id: "n-2b4d6f"},
			"Approved node n-2b4d6f (hv02.rack1); status approved.\n", nil},
		{"approve json", []string{"nodes", "approve", "n-2b4d6f", "-o", "json"}, &berthv1.ApproveNodeRequest{Id: "n-2b4d6f"},
			"", map[string]any{"id": "n-2b4d6f", "status": "approved", "health": "unknown"}},
		{"reject", []string{"nodes", "reject", "n-2b4d6f"}, &berthv1.RejectNodeRequest{Id: "n-2b4d6f"},
			"Rejected node n-2b4d6f (hv02.rack1); status rejected.\n", nil},
		{"reject json", []string{"-o", "json", "nodes", "reject", "n-2b4d6f"}, &berthv1.RejectNodeRequest{Id: "n-2b4d6f"},
			"", map[string]any{"id": "n-2b4d6f", "status": "rejected", "rejection_reason": "unknown rack"}},
		{"reject with reason", []string{"nodes", "reject", "n-2b4d6f", "--reason", "unknown rack"},
			&berthv1.RejectNodeRequest{Id: "n-2b4d6f", Reason: "unknown rack"},
			"Rejected node n-2b4d6f (hv02.rack1); status rejected.\n", nil},
		{"revoke", []string{"nodes", "revoke", "n-7f3a9c"}, &berthv1.RevokeNodeRequest{Id: "n-7f3a9c"},
			"Revoked node n-7f3a9c (hv01.rack1); status revoked.\n", nil},
		{"revoke with reason after ID", []string{"nodes", "revoke", "n-7f3a9c", "--reason", "disk stolen"},
			&berthv1.RevokeNodeRequest{Id: "n-7f3a9c", Reason: "disk stolen"},
			"Revoked node n-7f3a9c (hv01.rack1); status revoked.\n", nil},
		{"revoke with reason before ID", []string{"nodes", "revoke", "--reason=decommissioned", "n-7f3a9c", "-o", "json"},
			&berthv1.RevokeNodeRequest{Id: "n-7f3a9c", Reason: "decommissioned"},
			"", map[string]any{"id": "n-7f3a9c", "status": "revoked", "cert_serial": "5f3a2c1b0e9d8c7b"}},
		{"delete", []string{"nodes", "delete", "n-0c1e3a"}, &berthv1.DeleteNodeRequest{Id: "n-0c1e3a"},
			"Deleted node n-0c1e3a.\n", nil},
		{"delete json", []string{"nodes", "delete", "n-0c1e3a", "-o", "json"}, &berthv1.DeleteNodeRequest{Id: "n-0c1e3a"},
			"", map[string]any{"id": "n-0c1e3a", "deleted": true}},
		{"allow-replacement", []string{"nodes", "allow-replacement", "n-7f3a9c"}, &berthv1.AllowReplacementRequest{Id: "n-7f3a9c"},
			"Allowed a replacement key for node n-7f3a9c (hv01.rack1); status approved.\n", nil},
		{"allow-replacement json", []string{"nodes", "allow-replacement", "-o", "json", "n-7f3a9c"}, &berthv1.AllowReplacementRequest{Id: "n-7f3a9c"},
			"", map[string]any{"id": "n-7f3a9c", "replacement_allowed": true}},
		{"ID after --", []string{"nodes", "approve", "--", "-odd-id"}, &berthv1.ApproveNodeRequest{Id: "-odd-id"},
			"Approved node -odd-id (hv02.rack1); status approved.\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fake()
			r := start(t, pki, f).run(tc.args...)
			checkOK(t, r)
			checkRequests(t, f, tc.wantReq)
			if tc.wantJSON == nil {
				if r.stdout != tc.wantStdout {
					t.Errorf("stdout %q, want %q", r.stdout, tc.wantStdout)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("stdout is not a JSON object: %v\n%s", err, r.stdout)
			}
			for k, v := range tc.wantJSON {
				if !cmp.Equal(v, got[k]) {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

// TestNodesGetRevoked: a revoked node shows when and why it was revoked,
// from the CA's revocations (the node's own, not an earlier certificate's),
// and health "revoked"; in a table, JSON and YAML. Without the CA it says
// so on stderr and still shows the node.
func TestNodesGetRevoked(t *testing.T) {
	pki := newTestPKI(t)
	revoked := nodeApproved()
	revoked.Status = berthv1.NodeStatus_NODE_STATUS_REVOKED
	fake := &fakeAdmin{getNode: func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
		return &berthv1.GetNodeResponse{Node: revoked}, nil
	}}
	at := testNow.Add(-2 * time.Hour)
	ca := serveCA(t, pki, &fakeCA{getRevocations: func(context.Context, *berthv1.GetRevocationsRequest) (*berthv1.GetRevocationsResponse, error) {
		return &berthv1.GetRevocationsResponse{Revocations: []*berthv1.Revocation{
			{Serial: "01", NodeId: revoked.GetId(), Reason: "superseded", RevokedAt: timestamppb.New(testNow.Add(-48 * time.Hour))},
			{Serial: "02", NodeId: revoked.GetId(), Reason: "decommissioned", RevokedAt: timestamppb.New(at), NodeRevoked: true},
			{Serial: "03", NodeId: "n-other", Reason: "stolen", RevokedAt: timestamppb.New(testNow), NodeRevoked: true},
		}}, nil
	}})
	h := startServers(t, pki, fake, nil, nil)
	env := h.withEnv(map[string]string{"BERTH_CA_SERVER": ca})

	r := runEnv(t, env, "nodes", "get", revoked.GetId())
	for _, want := range []string{"Status:                  revoked", "Revoked:                 2026-11-21 10:00:00 UTC (2h ago)",
		"Revocation reason:       decommissioned", "Health:                  revoked"} {
		if r.code != cli.ExitOK || !strings.Contains(r.stdout, want) {
			t.Errorf("nodes get: exit %d, stdout:\n%s\nwant a line %q (stderr %q)", r.code, r.stdout, want, r.stderr)
		}
	}
	r = runEnv(t, env, "nodes", "get", revoked.GetId(), "-o", "json")
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["revocation_reason"] != "decommissioned" ||
		v["revoked_at"] != "2026-11-21T10:00:00Z" || v["health"] != "revoked" {
		t.Errorf("nodes get -o json: %v %v", v, err)
	}
	r = runEnv(t, env, "nodes", "get", revoked.GetId(), "-o", "yaml")
	var y map[string]any
	if err := yaml.Unmarshal([]byte(r.stdout), &y); err != nil || y["revocation_reason"] != "decommissioned" || y["id"] != revoked.GetId() ||
		y["certificates_issued"] != 1 || !strings.HasPrefix(r.stdout, "id: "+revoked.GetId()+"\n") {
		t.Errorf("nodes get -o yaml:\n%s\n%v %v", r.stdout, y, err)
	}

	r = runEnv(t, h.withEnv(map[string]string{"BERTH_CA_SERVER": "127.0.0.1:1"}), "nodes", "get", revoked.GetId(), "-o", "json")
	if r.code != cli.ExitOK || !strings.HasPrefix(r.stderr, "berthctl: warning: revocation reason and time unknown: revocation of node "+revoked.GetId()+": cannot reach server 127.0.0.1:1") ||
		!strings.Contains(r.stdout, `"health": "revoked"`) || strings.Contains(r.stdout, "revocation_reason") {
		t.Errorf("nodes get without the CA: exit %d, stdout:\n%s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

// TestNodesListWide: -o wide adds columns to the table.
func TestNodesListWide(t *testing.T) {
	pki := newTestPKI(t)
	h := startServers(t, pki, &fakeAdmin{listNodes: pagedNodes(allNodes())}, nil, nil)
	table, wide := h.run("nodes", "list"), h.run("nodes", "list", "-o", "wide")
	head := strings.SplitN(wide.stdout, "\n", 2)[0]
	if wide.code != cli.ExitOK || !strings.HasPrefix(wide.stdout, strings.SplitN(table.stdout, "\n", 2)[0][:20]) ||
		!strings.Contains(head, "CERT SERIAL") || !strings.Contains(head, "KEY SHA-256") || strings.Contains(table.stdout, "CERT SERIAL") ||
		!strings.Contains(wide.stdout, "9f86d081884c7d65") {
		t.Errorf("nodes list -o wide:\n%s\ntable:\n%s", wide.stdout, table.stdout)
	}
}

// TestNodesLabel: KEY=VALUE sets and KEY- removes, in one call; bad
// arguments are usage errors that reach no server; the server's refusal
// is shown as it is.
func TestNodesLabel(t *testing.T) {
	pki := newTestPKI(t)
	labelled := nodeApproved()
	labelled.Labels = map[string]string{"role": "hypervisor", "zone": "a"}
	fake := &fakeAdmin{labelNode: func(_ context.Context, r *berthv1.LabelNodeRequest) (*berthv1.LabelNodeResponse, error) {
		if r.GetId() == "n-bad" {
			return nil, status.Error(codes.InvalidArgument, "set keys must match ^[a-z]$")
		}
		return &berthv1.LabelNodeResponse{Node: labelled}, nil
	}}
	h := startServers(t, pki, fake, nil, nil)
	r := h.run("nodes", "label", "n-7f3a9c", "zone=a", "rack-")
	if r.code != cli.ExitOK || r.stdout != "Labelled node n-7f3a9c (hv01.rack1): role=hypervisor,zone=a\n" {
		t.Errorf("nodes label: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	got := fake.received()
	if len(got) != 1 || !proto.Equal(got[0].req, &berthv1.LabelNodeRequest{Id: "n-7f3a9c", Set: map[string]string{"zone": "a"}, Remove: []string{"rack"}}) {
		t.Errorf("the server received %v", got)
	}
	for _, bad := range [][]string{{"nodes", "label", "n-7f3a9c"}, {"nodes", "label", "n-7f3a9c", "zone"}, {"nodes", "label", "n-7f3a9c", "=a"}, {"nodes", "label", "n-7f3a9c", "-"}} {
		if r := h.run(bad...); r.code != cli.ExitUsage {
			t.Errorf("%v: exit %d, stderr %q; want a usage error", bad, r.code, r.stderr)
		}
	}
	if len(fake.received()) != 1 {
		t.Errorf("usage errors reached the server")
	}
	r = h.run("nodes", "label", "n-bad", "A=b")
	if r.code != cli.ExitError || r.stderr != "berthctl: label node n-bad: set keys must match ^[a-z]$\n" {
		t.Errorf("refused label: exit %d, stderr %q", r.code, r.stderr)
	}
}
