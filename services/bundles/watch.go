package bundles

import (
	"strconv"

	"google.golang.org/grpc/metadata"

	"github.com/berth-dev/berth/internal/lifecycle"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// WatchBundleEvents replays the bundle event log after the filter's cursor
// and then follows it, until the client goes away or Run ends. A client
// that reconnects with the cursor of the last event it received misses
// nothing and sees nothing twice. A cursor older than the events kept is
// OutOfRange; the message names the oldest cursor kept, M: watch again
// after M-1 (or from 0, or from now) once the engine has resynchronised.
func (a adminServer) WatchBundleEvents(req *berthv1.WatchBundleEventsRequest, stream berthv1.BundleAdminService_WatchBundleEventsServer) error {
	// The start header tells a client that must miss no change (the
	// registration service's bundle cache) that the watch is in place.
	started := func(after int64) error {
		return stream.SendHeader(metadata.Pairs(lifecycle.StartHeader, strconv.FormatInt(after, 10)))
	}
	err := a.s.events.WatchStarted(stream.Context(), req.GetFilter(), started, func(e *berthv1.LifecycleEvent) error {
		return stream.Send(&berthv1.WatchBundleEventsResponse{Event: e})
	})
	if out, ok := a.s.events.GRPCError(err); ok || err == nil {
		return out
	}
	return errorTable.Status(stream.Context(), rpc.Logger(stream.Context(), a.s.log), err)
}
