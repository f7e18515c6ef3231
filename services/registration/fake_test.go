package registration

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/store/regstore"
)

// lookupsDown is a store whose database cannot serve reads and token
// writes: they fail with err.
type lookupsDown struct {
	regstore.Store
	err error
}

func (d lookupsDown) GetNodeByKey(context.Context, []byte) (regstore.Node, error) {
	return regstore.Node{}, d.err
}
func (d lookupsDown) GetNode(context.Context, string) (regstore.Node, error) {
	return regstore.Node{}, d.err
}
func (d lookupsDown) ListNodes(context.Context, regstore.NodeFilter) ([]regstore.Node, error) {
	return nil, d.err
}
func (d lookupsDown) CreateToken(context.Context, regstore.Token) error { return d.err }
func (d lookupsDown) ListTokens(context.Context, bool, time.Time) ([]regstore.Token, error) {
	return nil, d.err
}

// commitsLate is a store on which the next lookups by key miss a node that
// is registered, as they do while the caller's own earlier registration is
// still committing: keyMisses of them find nothing.
type commitsLate struct {
	regstore.Store
	keyMisses *atomic.Int32
}

func (s commitsLate) GetNodeByKey(ctx context.Context, key []byte) (regstore.Node, error) {
	if s.keyMisses.Add(-1) >= 0 {
		return regstore.Node{}, regstore.ErrNotFound
	}
	return s.Store.GetNodeByKey(ctx, key)
}
