package watch

import (
	"context"

	"google.golang.org/grpc"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// filter is what a watch keeps of a service's log.
type filter struct {
	nodeIDs []string
	types   []string // of this service
}

// source is one service's watch RPC.
type source struct {
	service Service
	// open starts a stream after the cursor (or from now) and returns its
	// receive function, which yields nil for a message without an event.
	open func(ctx context.Context, after int64, fromNow bool) (func() (*Event, error), error)
}

func newSource(s Service, conn grpc.ClientConnInterface, f filter) source {
	switch s {
	case Registration:
		c := berthv1.NewNodeAdminServiceClient(conn)
		return source{service: s, open: func(ctx context.Context, after int64, fromNow bool) (func() (*Event, error), error) {
			st, err := c.WatchNodeEvents(ctx, &berthv1.WatchNodeEventsRequest{Filter: f.lifecycle(after, fromNow)})
			if err != nil {
				return nil, err
			}
			return func() (*Event, error) {
				resp, err := st.Recv()
				return lifecycleEvent(s, resp.GetEvent()), err
			}, nil
		}}
	case Bundles:
		c := berthv1.NewBundleAdminServiceClient(conn)
		return source{service: s, open: func(ctx context.Context, after int64, fromNow bool) (func() (*Event, error), error) {
			st, err := c.WatchBundleEvents(ctx, &berthv1.WatchBundleEventsRequest{Filter: f.lifecycle(after, fromNow)})
			if err != nil {
				return nil, err
			}
			return func() (*Event, error) {
				resp, err := st.Recv()
				return lifecycleEvent(s, resp.GetEvent()), err
			}, nil
		}}
	default:
		c := berthv1.NewHeartbeatAdminServiceClient(conn)
		types := healthTypes(f.types)
		return source{service: s, open: func(ctx context.Context, after int64, fromNow bool) (func() (*Event, error), error) {
			if fromNow {
				after = 0
			}
			st, err := c.WatchHealth(ctx, &berthv1.WatchHealthRequest{
				AfterCursor: after, FromNow: fromNow, NodeIds: f.nodeIDs, Types: types,
			})
			if err != nil {
				return nil, err
			}
			return func() (*Event, error) {
				resp, err := st.Recv()
				return healthEvent(resp.GetEvent()), err
			}, nil
		}}
	}
}

// lifecycle is the filter of a lifecycle watch request. With fromNow the
// cursor is 0, as the services require.
func (f filter) lifecycle(after int64, fromNow bool) *berthv1.LifecycleFilter {
	if fromNow {
		after = 0
	}
	return &berthv1.LifecycleFilter{AfterCursor: after, FromNow: fromNow, NodeIds: f.nodeIDs, Types: f.types}
}

// healthTypes maps event type names to the heartbeat service's enum.
func healthTypes(names []string) []berthv1.HealthEventType {
	var out []berthv1.HealthEventType
	for _, n := range names {
		for name, v := range berthv1.HealthEventType_value {
			if enumName(prefixEventType, name) == n {
				out = append(out, berthv1.HealthEventType(v))
			}
		}
	}
	return out
}
