package registration

import (
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// maxWatchNodes bounds the node IDs of a watch filter.
const maxWatchNodes = 100

// WatchNodeEvents replays the node lifecycle log after the filter's cursor
// and then follows it, until the client goes away or Run ends. A client
// that reconnects with the cursor of the last event it received misses
// nothing and sees nothing twice. A cursor older than the events kept is
// OutOfRange; the message names the oldest cursor kept, M: watch again
// after M-1 (or from 0, or from now) once the engine has resynchronised.
func (s *Service) WatchNodeEvents(req *berthv1.WatchNodeEventsRequest, stream berthv1.NodeAdminService_WatchNodeEventsServer) error {
	ctx := stream.Context()
	w, err := validateWatch(req.GetFilter())
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	var sendErr error
	err = s.follower.Watch(ctx, w, func(e eventlog.Event) error {
		sendErr = stream.Send(&berthv1.WatchNodeEventsResponse{Event: eventToProto(e)})
		return sendErr
	})
	if sendErr != nil {
		return sendErr // the stream is broken; its status says why
	}
	return toStatus(ctx, s.log, err)
}

// validateWatch checks a lifecycle filter; nil is the empty filter.
func validateWatch(f *berthv1.LifecycleFilter) (eventlog.WatchRequest, error) {
	var w eventlog.WatchRequest
	switch {
	case f.GetAfterCursor() < 0:
		return w, invalid("filter.after_cursor", "must not be negative")
	case f.GetFromNow() && f.GetAfterCursor() != 0:
		return w, invalid("filter.after_cursor", "must be 0 with from_now")
	case len(f.GetNodeIds()) > maxWatchNodes:
		return w, invalid("filter.node_ids", "at most 100 node IDs")
	}
	for _, id := range f.GetNodeIds() {
		if pki.ValidateNodeID(id) != nil {
			return w, invalid("filter.node_ids", "each must be a valid node ID")
		}
	}
	known := regstore.EventTypes()
	for _, t := range f.GetTypes() {
		if !slices.Contains(known, t) {
			return w, invalid("filter.types", "each must be one of registered, replaced, approved, rejected, revoked, pending, deleted, certificate_renewed")
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
