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
func (d lookupsDown) GetToken(context.Context, string) (regstore.Token, error) {
	return regstore.Token{}, d.err
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

// commitsLate is a store whose next registering writes find the caller's
// key taken only at their insert, as when the caller's own earlier
// registration commits between the write's lookup and its insert: the
// next conflicts of them fail with a plain ErrConflict and change nothing,
// as the store's do then.
type commitsLate struct {
	regstore.Store
	conflicts *atomic.Int32
}

func (s commitsLate) RegisterIssuing(ctx context.Context, tokenID string, now time.Time, n regstore.Node, replaceID, requestID string) (regstore.Node, regstore.Intent, error) {
	if s.conflicts.Add(-1) >= 0 {
		return regstore.Node{}, regstore.Intent{}, regstore.ErrConflict
	}
	return s.Store.RegisterIssuing(ctx, tokenID, now, n, replaceID, requestID)
}

// tokenReads is a store that counts its reads of bootstrap tokens.
type tokenReads struct {
	regstore.Store
	n *atomic.Int32
}

func (s tokenReads) GetToken(ctx context.Context, id string) (regstore.Token, error) {
	s.n.Add(1)
	return s.Store.GetToken(ctx, id)
}
