package heartbeat

import (
	"context"

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
func (d readsDown) EventBounds(context.Context) (int64, int64, error) { return 0, 0, d.err }
