package registration

import (
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// WatchNodeEvents replays the node lifecycle log after the filter's cursor
// and then follows it, until the client goes away or Run ends. A client
// that reconnects with the cursor of the last event it received misses
// nothing and sees nothing twice. A cursor older than the events kept is
// OutOfRange; the message names the oldest cursor kept, M: watch again
// after M-1 (or from 0, or from now) once the engine has resynchronised.
func (s *Service) WatchNodeEvents(req *berthv1.WatchNodeEventsRequest, stream berthv1.NodeAdminService_WatchNodeEventsServer) error {
	err := s.events.Watch(stream.Context(), req.GetFilter(), func(e *berthv1.LifecycleEvent) error {
		return stream.Send(&berthv1.WatchNodeEventsResponse{Event: e})
	})
	if out, ok := s.events.GRPCError(err); ok || err == nil {
		return out
	}
	return errorTable.Status(stream.Context(), rpc.Logger(stream.Context(), s.log), err)
}
