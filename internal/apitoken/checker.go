package apitoken

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/store/regstore"
)

// Store is what a Checker needs of the registration store.
type Store interface {
	GetAPIToken(ctx context.Context, id string) (regstore.APIToken, error)
	TouchAPITokens(ctx context.Context, used map[string]time.Time) error
}

// DefaultTouchPeriod is how often a Checker writes the last-use times it
// collected: a token used on every call costs one write a minute per
// process, not one per call.
const DefaultTouchPeriod = time.Minute

// Config is a Checker's dependencies.
type Config struct {
	Store  Store
	Clock  clock.Clock
	Logger *slog.Logger
	// TouchPeriod is how often Run writes last-use times
	// (DefaultTouchPeriod).
	TouchPeriod time.Duration
}

// Checker authenticates tokens against the store.
type Checker struct {
	store  Store
	clock  clock.Clock
	log    *slog.Logger
	period time.Duration

	mu sync.Mutex
	// used holds the last use of each token since the last flush.
	used map[string]time.Time
}

// NewChecker builds a Checker.
func NewChecker(c Config) (*Checker, error) {
	if c.Store == nil {
		return nil, errors.New("apitoken: Store is required")
	}
	if c.TouchPeriod < 0 {
		return nil, errors.New("apitoken: TouchPeriod must not be negative")
	}
	return &Checker{
		store: c.Store, clock: clock.Or(c.Clock), log: cmp.Or(c.Logger, slog.New(slog.DiscardHandler)),
		period: cmp.Or(c.TouchPeriod, DefaultTouchPeriod), used: map[string]time.Time{},
	}, nil
}

// Authenticate checks a presented token (without "Bearer ") and returns
// its principal. Refusals are ErrMalformed, ErrUnknown, ErrRevoked or
// ErrExpired; any other error is the store's (wrapped).
func (c *Checker) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	id, secret, err := Parse(bearer)
	if err != nil {
		return Principal{}, err
	}
	t, err := c.store.GetAPIToken(ctx, id)
	if errors.Is(err, regstore.ErrNotFound) {
		return Principal{}, ErrUnknown
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate API token %s: %w", id, err)
	}
	if !Matches(secret, t.SecretHash) {
		return Principal{}, ErrUnknown
	}
	now := c.clock.Now()
	switch {
	case t.Revoked():
		return Principal{}, ErrRevoked
	case t.Expired(now):
		return Principal{}, ErrExpired
	}
	role, ok := mtls.ParseRole(t.Role)
	if !ok {
		return Principal{}, fmt.Errorf("API token %s has unknown role %q", id, t.Role)
	}
	c.mu.Lock()
	c.used[id] = now
	c.mu.Unlock()
	return Principal{ID: t.ID, Name: t.Name, Role: role}, nil
}

// LastUsed returns the use of token id this process saw and has not
// written yet (zero if none), so that a list can show it at once.
func (c *Checker) LastUsed(id string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used[id]
}

// Flush writes the last-use times collected since the last flush. Times
// that could not be written are kept for the next one.
func (c *Checker) Flush(ctx context.Context) error {
	c.mu.Lock()
	batch := c.used
	c.used = map[string]time.Time{}
	c.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := c.store.TouchAPITokens(ctx, batch); err != nil {
		c.mu.Lock()
		for id, t := range batch {
			if t.After(c.used[id]) {
				c.used[id] = t
			}
		}
		c.mu.Unlock()
		return err
	}
	return nil
}

// Run flushes every TouchPeriod until ctx ends, then once more.
func (c *Checker) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := c.Flush(fctx); err != nil {
				c.log.Warn("API token last use not recorded at shutdown", "error", err)
			}
			return nil
		case <-c.clock.After(c.period):
			if err := c.Flush(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("API token last use not recorded; retrying at the next flush", "error", err)
			}
		}
	}
}

// pending is a copy of the unflushed uses, for tests.
func (c *Checker) pending() map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.used)
}
