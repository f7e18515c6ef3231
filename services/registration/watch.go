package registration

import (
	"strconv"

	"google.golang.org/grpc/metadata"

	"github.com/berth-dev/berth/internal/lifecycle"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// WatchNodeEvents replays the node lifecycle log after the filter's cursor
// and then follows it, until the client goes away or Run ends. A client
// that reconnects with the cursor of the last event it received misses
// nothing and sees nothing twice. A cursor older than the events kept is
// OutOfRange; the message names the oldest cursor kept, M: watch again
// after M-1 (or from 0, or from now) once the engine has resynchronised.
//
// The response headers go out once the watch is in place, before any event,
// so that a client (the REST front door's stream, which answers HTTP with
// them) is not left waiting for a quiet log's first event.
func (s *Service) WatchNodeEvents(req *berthv1.WatchNodeEventsRequest, stream berthv1.NodeAdminService_WatchNodeEventsServer) error {
	started := func(after int64) error {
		return stream.SendHeader(metadata.Pairs(lifecycle.StartHeader, strconv.FormatInt(after, 10)))
	}
	err := s.events.WatchStarted(stream.Context(), req.GetFilter(), started, func(e *berthv1.LifecycleEvent) error {
		return stream.Send(&berthv1.WatchNodeEventsResponse{Event: e})
	})
	if out, ok := s.events.GRPCError(err); ok || err == nil {
		return out
	}
	return errorTable.Status(stream.Context(), rpc.Logger(stream.Context(), s.log), err)
}
