package heartbeat

import (
	"context"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// readsDown is a store whose database cannot serve the admin reads: they
// fail with err.
type readsDown struct {
	heartbeatstore.Store
	err error
}

func (d readsDown) GetLiveness(context.Context, string) (heartbeatstore.Liveness, error) {
	return heartbeatstore.Liveness{}, d.err
}
func (d readsDown) ListLiveness(context.Context, heartbeatstore.LivenessFilter) ([]heartbeatstore.Liveness, error) {
	return nil, d.err
}
func (d readsDown) Events() eventlog.Log { return downLog{Log: d.Store.Events(), err: d.err} }

// downLog is an event log whose bounds cannot be read.
type downLog struct {
	eventlog.Log
	err error
}

func (l downLog) Bounds(context.Context) (eventlog.Bounds, error) { return eventlog.Bounds{}, l.err }
