package bundles

import (
	"context"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// A page of ListSealedBundles ends at its size or once it holds pageBytes
// of bundles, so that a page of large bundles stays well within what a
// client accepts in one message (4 MiB by default).
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	pageBytes       = 1 << 20
)

// ListSealedBundles returns the current bundles in node ID order.
func (a adminServer) ListSealedBundles(ctx context.Context, req *berthv1.ListSealedBundlesRequest) (*berthv1.ListSealedBundlesResponse, error) {
	log := rpc.Logger(ctx, a.s.log)
	size, after, err := validateListSealed(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	// One more than the page, to know whether another follows.
	bs, err := a.s.store.ListCurrent(ctx, after, size+1, req.GetNodeIds()...)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	resp := &berthv1.ListSealedBundlesResponse{}
	n := 0
	for i, b := range bs {
		if i == size || (i > 0 && n+len(b.Sealed) > pageBytes) {
			resp.NextPageToken = ident.PageToken(bs[i-1].NodeID)
			break
		}
		n += len(b.Sealed)
		resp.Bundles = append(resp.Bundles, &berthv1.NodeSealedBundle{NodeId: b.NodeID, Bundle: sealedToProto(b)})
	}
	return resp, nil
}

func validateListSealed(req *berthv1.ListSealedBundlesRequest) (size int, after string, err error) {
	size = int(req.GetPageSize())
	if size < 0 || size > maxPageSize {
		return 0, "", rpcerr.Invalid("page_size", rulePageSize)
	}
	if size == 0 {
		size = defaultPageSize
	}
	after, ok := ident.AfterPageToken(req.GetPageToken())
	if !ok {
		return 0, "", rpcerr.Invalid("page_token", rulePageToken)
	}
	if len(req.GetNodeIds()) > maxPageSize {
		return 0, "", rpcerr.Invalid("node_ids", ruleNodeIDs)
	}
	for _, id := range req.GetNodeIds() {
		if ident.NodeID(id) != nil {
			return 0, "", rpcerr.Invalid("node_ids", ruleNodeIDs)
		}
	}
	return size, after, nil
}
