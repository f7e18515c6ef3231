package console

import (
	"net/http"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// maxPendingShown bounds the Pending page: past it the page says so;
// maxRejectedShown bounds its list of rejected nodes.
const (
	maxPendingShown  = 500
	maxRejectedShown = 50
)

type pendingData struct {
	Nodes     []*berthv1.Node
	Truncated bool
	// Rejected are rejected nodes with their reasons (at most
	// maxRejectedShown), which an operator may approve after all.
	Rejected     []*berthv1.Node
	MoreRejected bool
	RejectedErr  string
	// After is the node log's cursor just before the list was read,
	// where the page's live updates follow on.
	After string
}

func (s *Console) pendingPage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := callContext(r)
	defer cancel()
	after := map[string]int64{}
	if c, err := s.api.newest(as(ctx, ss.principal), logNode); err == nil {
		after[logNode] = c
	}
	resp, err := s.api.nodes.ListNodes(as(ctx, ss.principal), &berthv1.ListNodesRequest{
		Status: berthv1.NodeStatus_NODE_STATUS_PENDING, PageSize: maxPendingShown,
	})
	if err != nil {
		s.fail(w, r, ss, httpStatus(err), errorText(err))
		return
	}
	d := pendingData{Nodes: resp.GetNodes(), Truncated: resp.GetNextPageToken() != "", After: cursorsParam(after)}
	rej, err := s.api.nodes.ListNodes(as(ctx, ss.principal), &berthv1.ListNodesRequest{
		Status: berthv1.NodeStatus_NODE_STATUS_REJECTED, PageSize: maxRejectedShown,
	})
	d.Rejected, d.MoreRejected, d.RejectedErr = rej.GetNodes(), rej.GetNextPageToken() != "", errText(err)
	s.render(w, r, http.StatusOK, "pending", ss, d)
}
