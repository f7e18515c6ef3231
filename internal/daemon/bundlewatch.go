package daemon

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// bundleChanges is told of each node's new current bundle version
// (heartbeat.Service.BundleChanged); 0 is a reset.
type bundleChanges interface {
	BundleChanged(nodeID string, version int64)
}

// watchBundles follows the bundle store's events and tells the heartbeat
// service which node's current bundle changed, so that it tells the node
// on its stream. It starts from now: versions put before are what nodes
// fetch at boot or ask for when they reconnect. A broken watch resumes
// after the last event seen, or from now when that fell out of the log.
func watchBundles(ctx context.Context, client berthv1.BundleAdminServiceClient, to bundleChanges, log *slog.Logger) {
	var after int64
	for n := 0; ctx.Err() == nil; n++ {
		filter := &berthv1.LifecycleFilter{AfterCursor: after, FromNow: after == 0,
			Types: []string{bundlestore.EventUpdated, bundlestore.EventApproved, bundlestore.EventReset}}
		s, err := client.WatchBundleEvents(ctx, &berthv1.WatchBundleEventsRequest{Filter: filter})
		for err == nil {
			var m *berthv1.WatchBundleEventsResponse
			if m, err = s.Recv(); err == nil {
				n = 0
				e := m.GetEvent()
				after = e.GetCursor()
				if v, ok := currentVersion(e); ok {
					to.BundleChanged(e.GetNodeId(), v)
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.OutOfRange {
			after = 0
		}
		d := min(time.Duration(1<<min(n, 5))*250*time.Millisecond, 10*time.Second)
		log.Warn("bundle event watch broke; live bundle updates wait for it", "err", err, "retry_in", d)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}

// currentVersion is the version an event makes the node's current one:
// an approved put or an approval; 0 for a reset.
func currentVersion(e *berthv1.LifecycleEvent) (int64, bool) {
	d := e.GetDetails()
	switch e.GetType() {
	case bundlestore.EventReset:
		return 0, true
	case bundlestore.EventUpdated:
		if d["state"] != "approved" {
			return 0, false
		}
	case bundlestore.EventApproved:
	default:
		return 0, false
	}
	v, err := strconv.ParseInt(d["version"], 10, 64)
	return v, err == nil && v > 0
}
