package console

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// fakeFleet is the node and health lists of a fleet, paged as the
// services page: the token is the index to go on from.
type fakeFleet struct {
	berthv1.NodeAdminServiceClient
	berthv1.HeartbeatAdminServiceClient
	nodes  map[string]*berthv1.Node
	health []*berthv1.NodeHealth
	reads  int
}

func (f *fakeFleet) ListNodeHealth(_ context.Context, req *berthv1.ListNodeHealthRequest, _ ...grpc.CallOption) (*berthv1.ListNodeHealthResponse, error) {
	f.reads++
	from, _ := strconv.Atoi(req.GetPageToken())
	var matching []*berthv1.NodeHealth
	for _, h := range f.health {
		if h.GetState() == req.GetState() {
			matching = append(matching, h)
		}
	}
	to := min(from+int(req.GetPageSize()), len(matching))
	resp := &berthv1.ListNodeHealthResponse{Nodes: matching[from:to], Cursor: 7}
	if to < len(matching) {
		resp.NextPageToken = strconv.Itoa(to)
	}
	return resp, nil
}

func (f *fakeFleet) GetNode(_ context.Context, req *berthv1.GetNodeRequest, _ ...grpc.CallOption) (*berthv1.GetNodeResponse, error) {
	n, ok := f.nodes[req.GetId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "node not found")
	}
	return &berthv1.GetNodeResponse{Node: n}, nil
}

// TestFleetRowsByHealth: with the health filter set, the status and label
// filters apply before paging: every page is full but the last, and the
// pages together hold every matching node once.
func TestFleetRowsByHealth(t *testing.T) {
	f := &fakeFleet{nodes: map[string]*berthv1.Node{}}
	var want []string
	for i := range 40 {
		id := fmt.Sprintf("n%02d", i)
		st := berthv1.NodeStatus_NODE_STATUS_APPROVED
		if i%3 != 0 {
			st = berthv1.NodeStatus_NODE_STATUS_REVOKED
		}
		labels := map[string]string{"rack": "r" + strconv.Itoa(i%2)}
		if i != 9 { // node 9 was deleted after it last beat
			f.nodes[id] = &berthv1.Node{Id: id, Status: st, Labels: labels}
		}
		state := berthv1.LivenessState_LIVENESS_STATE_HEALTHY
		if i%5 == 0 {
			state = berthv1.LivenessState_LIVENESS_STATE_SUSPECT
		}
		f.health = append(f.health, &berthv1.NodeHealth{NodeId: id, State: state})
		if i%3 == 0 && i%2 == 0 && i%5 != 0 && i != 9 {
			want = append(want, id)
		}
	}
	c := &Console{api: api{nodes: f, health: f}}
	filter := fleetFilter{Health: "healthy", Status: "approved", Label: "rack=r0", Size: 2}
	labels, _ := filter.labels()
	var got []string
	for page := 0; ; page++ {
		rows, next, cursor, err := c.fleetRowsByHealth(t.Context(), filter, labels)
		if err != nil {
			t.Fatal(err)
		}
		if cursor != 7 {
			t.Errorf("page %d: cursor %d, want the first read's", page, cursor)
		}
		for _, r := range rows {
			got = append(got, r.Node.GetId())
		}
		if next == "" {
			break
		}
		if len(rows) != filter.Size {
			t.Errorf("page %d has %d rows, want %d: only the last may be short", page, len(rows), filter.Size)
		}
		filter.Page = next
		if page > 40 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages hold %v, want %v", got, want)
	}
}
