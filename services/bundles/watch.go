package bundles

import (
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// maxWatchNodes bounds the node IDs of a watch filter.
const maxWatchNodes = 100

// WatchBundleEvents replays the bundle event log after the filter's cursor
// and then follows it, until the client goes away or Run ends. A client
// that reconnects with the cursor of the last event it received misses
// nothing and sees nothing twice. A cursor older than the events kept is
// OutOfRange; the message names the oldest cursor kept, M: watch again
// after M-1 (or from 0, or from now) once the engine has resynchronised.
func (a adminServer) WatchBundleEvents(req *berthv1.WatchBundleEventsRequest, stream berthv1.BundleAdminService_WatchBundleEventsServer) error {
	ctx := stream.Context()
	log := rpc.Logger(ctx, a.s.log)
	w, err := validateWatch(req.GetFilter())
	if err != nil {
		return toStatus(ctx, log, err)
	}
	var sendErr error
	err = a.s.follower.Watch(ctx, w, func(e eventlog.Event) error {
		sendErr = stream.Send(&berthv1.WatchBundleEventsResponse{Event: eventToProto(e)})
		return sendErr
	})
	if sendErr != nil {
		return sendErr // the stream is broken; its status says why
	}
	return toStatus(ctx, log, err)
}

// validateWatch checks a lifecycle filter; nil is the empty filter.
func validateWatch(f *berthv1.LifecycleFilter) (eventlog.WatchRequest, error) {
	var w eventlog.WatchRequest
	switch {
	case f.GetAfterCursor() < 0:
		return w, invalid("filter.after_cursor", ruleCursor)
	case f.GetFromNow() && f.GetAfterCursor() != 0:
		return w, invalid("filter.after_cursor", ruleFromNow)
	case len(f.GetNodeIds()) > maxWatchNodes:
		return w, invalid("filter.node_ids", ruleNodes)
	}
	for _, id := range f.GetNodeIds() {
		if err := validateNodeID(id); err != nil {
			return w, invalid("filter.node_ids", ruleNodeID)
		}
	}
	known := bundlestore.EventTypes()
	for _, t := range f.GetTypes() {
		if !slices.Contains(known, t) {
			return w, invalid("filter.types", ruleTypes)
		}
	}
	w.After, w.FromNow = f.GetAfterCursor(), f.GetFromNow()
	w.NodeIDs, w.Types = f.GetNodeIds(), f.GetTypes()
	return w, nil
}

func eventToProto(e eventlog.Event) *berthv1.LifecycleEvent {
	return &berthv1.LifecycleEvent{
		Cursor:  e.Cursor,
		Type:    e.Type,
		NodeId:  e.NodeID,
		Time:    timestamppb.New(e.Time),
		Details: e.Details,
	}
}
