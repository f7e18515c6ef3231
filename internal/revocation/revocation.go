// Package revocation keeps a local copy of the CA's revocation list, so that
// services other than registration can deny a revoked node on every call
// within seconds without asking the CA each time.
package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/clock"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// DefaultPeriod is how often the list is refreshed: the longest a revoked
// node can still be served by a replica that has not heard yet.
const DefaultPeriod = 2 * time.Second

// DefaultMaxStale is how long a cache that has stopped hearing from the CA
// is still trusted. Beyond it the cache fails closed: Known reports
// ErrUnknown and services refuse node calls with Unavailable. While the CA
// is down nobody can revoke anything, so a list that was complete when the
// CA went away stays complete; the bound covers a replica cut off from a CA
// that others still reach, and is long enough to ride out a CA restart.
const DefaultMaxStale = 5 * time.Minute

// ErrUnknown is the cache not knowing the revocation state: it has never
// loaded the list from the CA, or has not refreshed it for longer than
// MaxStale. Services answer node calls with Unavailable meanwhile, never
// as if nothing were revoked.
var ErrUnknown = errors.New("revocation state not yet known")

// ReasonSuperseded is the revocation reason the registration service uses
// when new hardware keys take over a node (the CRL gives it as RFC 5280's
// superseded). The node itself is not revoked: it keeps its ID under the
// new key. Whether a revocation is the node's is Revocation.node_revoked,
// not the reason.
const ReasonSuperseded = "superseded"

// overlap re-reads a little of the past on each poll, so a revocation that
// committed with a slightly older timestamp than one already seen is not
// missed. Re-reading is harmless: the set is idempotent.
const overlap = 30 * time.Second

// Source lists revocations made at or after since.
type Source interface {
	GetRevocations(ctx context.Context, req *berthv1.GetRevocationsRequest, opts ...grpc.CallOption) (*berthv1.GetRevocationsResponse, error)
}

// Config describes a Cache.
type Config struct {
	// Source is the CA, a CertificateAuthorityServiceClient. Required.
	Source Source
	// Period is the time between refreshes; DefaultPeriod when 0.
	Period time.Duration
	// MaxStale is how long the last list is trusted when refreshes fail;
	// DefaultMaxStale when 0.
	MaxStale time.Duration
	// Logger defaults to a logger that discards everything.
	Logger *slog.Logger
	// Clock times the refreshes; the system clock when nil.
	Clock clock.Clock
}

// Cache is the set of revoked certificate serials, and of nodes revoked or
// deleted (the revocations the CA marks node_revoked).
type Cache struct {
	src      Source
	period   time.Duration
	maxStale time.Duration
	log      *slog.Logger
	clock    clock.Clock

	mu      sync.RWMutex
	serials map[string]struct{}
	nodes   map[string]struct{}
	// since is the newest revocation time seen; zero asks for everything.
	since time.Time
	// loaded is when the last refresh succeeded; zero before the first.
	loaded time.Time
}

// New returns a cache fed from c.Source.
func New(c Config) *Cache {
	if c.Period <= 0 {
		c.Period = DefaultPeriod
	}
	if c.MaxStale <= 0 {
		c.MaxStale = DefaultMaxStale
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Cache{
		src: c.Source, period: c.Period, maxStale: c.MaxStale, log: c.Logger, clock: clock.Or(c.Clock),
		serials: map[string]struct{}{}, nodes: map[string]struct{}{},
	}
}

// Run refreshes the cache now and then one period after each refresh
// ends, until ctx ends.
func (c *Cache) Run(ctx context.Context) {
	for {
		if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("refreshing revocations from the CA failed; keeping the last list", "error", err)
		}
		if c.clock.Sleep(ctx, c.period) != nil {
			return
		}
	}
}

// Refresh fetches revocations since the last refresh.
func (c *Cache) Refresh(ctx context.Context) error {
	c.mu.RLock()
	req := &berthv1.GetRevocationsRequest{}
	if !c.since.IsZero() {
		req.Since = timestamppb.New(c.since.Add(-overlap))
	}
	c.mu.RUnlock()
	resp, err := c.src.GetRevocations(ctx, req)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded.IsZero() {
		c.log.Info("revocation list loaded from the CA", "revocations", len(resp.GetRevocations()))
	}
	c.loaded = c.clock.Now()
	for _, r := range resp.GetRevocations() {
		c.serials[normalize(r.GetSerial())] = struct{}{}
		if r.GetNodeId() != "" && r.GetNodeRevoked() {
			c.nodes[r.GetNodeId()] = struct{}{}
		}
		if t := r.GetRevokedAt().AsTime(); t.After(c.since) {
			c.since = t
		}
	}
	return nil
}

// Known returns nil while the cache knows the revocation state: it has
// loaded the list and refreshed it within MaxStale. Otherwise it returns an
// ErrUnknown error that says why; callers must then refuse, not serve.
func (c *Cache) Known() error {
	c.mu.RLock()
	loaded := c.loaded
	c.mu.RUnlock()
	if loaded.IsZero() {
		return fmt.Errorf("%w: the list was never loaded from the CA", ErrUnknown)
	}
	if age := c.clock.Now().Sub(loaded); age > c.maxStale {
		return fmt.Errorf("%w: the list was last refreshed from the CA %s ago (limit %s)", ErrUnknown, age.Round(time.Second), c.maxStale)
	}
	return nil
}

// Revoked reports whether the certificate with this serial is revoked.
// The node ID is accepted for the hooks' signature; revocation is per
// certificate, since a replaced node keeps its ID under a new key.
func (c *Cache) Revoked(_ context.Context, _ string, serial string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.serials[normalize(serial)]
	return ok
}

// NodeRevoked reports whether the node was revoked or deleted, for services
// that track nodes rather than certificates (heartbeat streams).
func (c *Cache) NodeRevoked(_ context.Context, nodeID string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.nodes[nodeID]
	return ok
}

func normalize(serial string) string {
	return strings.TrimLeft(strings.ToLower(serial), "0")
}
