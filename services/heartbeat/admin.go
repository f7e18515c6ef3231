package heartbeat

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc/metadata"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/lifecycle"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// GetNodeHealth returns one node's health, as stored.
func (s *Service) GetNodeHealth(ctx context.Context, req *berthv1.GetNodeHealthRequest) (*berthv1.GetNodeHealthResponse, error) {
	log := rpc.Logger(ctx, s.log)
	if err := validateNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	l, err := s.store.GetLiveness(ctx, req.GetNodeId())
	if err != nil {
		return nil, errorTable.Status(ctx, log.With(attrNode, req.GetNodeId()), err)
	}
	return &berthv1.GetNodeHealthResponse{Health: livenessToProto(l)}, nil
}

// ListNodeHealth lists node health in pages of ascending node ID, with the
// event cursor to watch after.
func (s *Service) ListNodeHealth(ctx context.Context, req *berthv1.ListNodeHealthRequest) (*berthv1.ListNodeHealthResponse, error) {
	log := rpc.Logger(ctx, s.log)
	f, size, err := validateList(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	// The cursor is read first: every change after it is in the log after
	// it, whether or not this page already shows it.
	b, err := s.store.Events().Bounds(ctx)
	if err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("list node health: %w", err))
	}
	f.Limit = size + 1 // one more tells whether another page follows
	rows, err := s.store.ListLiveness(ctx, f)
	if err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("list node health: %w", err))
	}
	resp := &berthv1.ListNodeHealthResponse{Cursor: b.Head}
	if len(rows) > size {
		rows = rows[:size]
		resp.NextPageToken = ident.PageToken(rows[size-1].NodeID)
	}
	for _, l := range rows {
		resp.Nodes = append(resp.Nodes, livenessToProto(l))
	}
	return resp, nil
}

// WatchHealth replays the event log after a cursor and then follows it.
// Its response headers go out once the watch is in place, before any event
// (as WatchNodeEvents'), so a quiet log leaves no client waiting for them.
func (s *Service) WatchHealth(req *berthv1.WatchHealthRequest, stream berthv1.HeartbeatAdminService_WatchHealthServer) error {
	ctx := stream.Context()
	log := rpc.Logger(ctx, s.log)
	w, err := validateWatch(req)
	if err != nil {
		return errorTable.Status(ctx, log, err)
	}
	var sendErr error
	w.Started = func(after int64) error {
		sendErr = stream.SendHeader(metadata.Pairs(lifecycle.StartHeader, strconv.FormatInt(after, 10)))
		return sendErr
	}
	err = s.core.Watch(ctx, w, func(e heartbeatstore.Event) error {
		sendErr = stream.Send(&berthv1.WatchHealthResponse{Event: eventToProto(e)})
		return sendErr
	})
	if sendErr != nil {
		return sendErr // the stream is broken; its status says why
	}
	return errorTable.Status(ctx, log, err)
}

// GetHeartbeatSettings returns the fleet's timings.
func (s *Service) GetHeartbeatSettings(context.Context, *berthv1.GetHeartbeatSettingsRequest) (*berthv1.GetHeartbeatSettingsResponse, error) {
	return &berthv1.GetHeartbeatSettingsResponse{Settings: settingsToProto(s.core.Settings())}, nil
}

// SetHeartbeatSettings changes the fleet's timings; connected nodes learn
// their new interval at once (on other replicas, within a flush period).
func (s *Service) SetHeartbeatSettings(ctx context.Context, req *berthv1.SetHeartbeatSettingsRequest) (*berthv1.SetHeartbeatSettingsResponse, error) {
	log := rpc.Logger(ctx, s.log)
	t, err := validateSettings(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	actor := caller(ctx).String()
	set, err := s.core.SetSettings(ctx, t, actor)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log.Info("heartbeat settings changed", "interval", set.Current.Interval, "grace", set.Current.Grace, "actor", actor)
	return &berthv1.SetHeartbeatSettingsResponse{Settings: settingsToProto(set)}, nil
}
