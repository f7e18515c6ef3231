package bundles

import (
	"context"
	"time"

	"github.com/berth-dev/berth/internal/store/bundlestore"
)

// downStore is a store whose database cannot serve: every bundle call
// fails with err (the event log still works).
type downStore struct {
	bundlestore.Store
	err error
}

func (d downStore) Put(context.Context, string, int64, bundlestore.Bundle, bundlestore.PutOptions) (bundlestore.Bundle, error) {
	return bundlestore.Bundle{}, d.err
}
func (d downStore) Get(context.Context, string) (bundlestore.Bundle, error) {
	return bundlestore.Bundle{}, d.err
}
func (d downStore) Pending(context.Context, string) (bundlestore.Bundle, error) {
	return bundlestore.Bundle{}, d.err
}
func (d downStore) History(context.Context, string) ([]bundlestore.Meta, error) { return nil, d.err }
func (d downStore) Approve(context.Context, string, int64, string, time.Time) (bundlestore.Bundle, error) {
	return bundlestore.Bundle{}, d.err
}
func (d downStore) Reset(context.Context, string, string, time.Time, int) (bundlestore.Meta, error) {
	return bundlestore.Meta{}, d.err
}
func (d downStore) Delete(context.Context, string, string, time.Time) error { return d.err }

// racingStore is a real store that runs race once, just before the next
// Put, as a concurrent writer (another replica) would between the
// service's reading of version numbers and its write.
type racingStore struct {
	bundlestore.Store
	race func()
}

func (r *racingStore) Put(ctx context.Context, nodeID string, expected int64, b bundlestore.Bundle, opts bundlestore.PutOptions) (bundlestore.Bundle, error) {
	if race := r.race; race != nil {
		r.race = nil
		race()
	}
	return r.Store.Put(ctx, nodeID, expected, b, opts)
}
