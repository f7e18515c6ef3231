package heartbeat

import (
	"context"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/hbstore"
)

// readsDown is a store whose database cannot serve the admin reads: they
// fail with err.
type readsDown struct {
	hbstore.Store
	err error
}

func (d readsDown) GetLiveness(context.Context, string) (hbstore.Liveness, error) {
	return hbstore.Liveness{}, d.err
}
func (d readsDown) ListLiveness(context.Context, hbstore.LivenessFilter) ([]hbstore.Liveness, error) {
	return nil, d.err
}
func (d readsDown) Events() eventlog.Log { return downLog{Log: d.Store.Events(), err: d.err} }

// downLog is an event log whose bounds cannot be read.
type downLog struct {
	eventlog.Log
	err error
}

func (l downLog) Bounds(context.Context) (eventlog.Bounds, error) { return eventlog.Bounds{}, l.err }
