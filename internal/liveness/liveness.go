// Package liveness is the transport-free core of the heartbeat service:
// it decides which nodes are alive.
//
// Every replica keeps the liveness of the nodes streaming to it in memory
// (last beat, sequence, boot ID, status) and writes what changed to the
// store in one batch per flush period, never a row per beat. A beat that
// changes what the store knows of its node (a node new or back from
// silence, a reboot, a status change, the agent's own events) is written at
// once instead, with its events, before it is acknowledged (see
// Session.Beat): the store compares it with the stored row in one
// transaction, so each transition is logged exactly once whichever replica
// the node reaches, and a replica that dies loses none. A flush still turns
// a node that the decider declared silent while it was beating (the store
// ran behind) healthy again, with its event, in the same transaction.
//
// Exactly one replica at a time, the decider, holds a lease in the store
// and scans the stored last-seen times for nodes that went silent: suspect
// after two intervals, unreachable after the grace period. It reads the
// store, not its memory, because a node may stream to another replica; the
// flush period is well below the interval, so the store is never more than
// a flush behind. A replica that takes the role (at start, after another
// stopped, or after losing the store for longer than the lease) declares
// nobody silent for a full grace period, so that nodes cut off by a restart
// have time to reconnect before anyone calls them dead.
//
// All events go to the store's event log (package eventlog), which Watch
// replays from a cursor and then follows.
package liveness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// Defaults of Config.
const (
	DefaultInterval        = 10 * time.Second
	DefaultGrace           = 40 * time.Second
	DefaultFlushPeriod     = 2 * time.Second
	DefaultDecidePeriod    = time.Second
	DefaultLeaseTTL        = 10 * time.Second
	DefaultPollPeriod      = time.Second
	DefaultRevocationCheck = 5 * time.Second
	DefaultRetention       = 7 * 24 * time.Hour
	// DefaultMaxBeatRate is the usual Config.MaxBeatRate; the core itself
	// defaults to none.
	DefaultMaxBeatRate = 10_000
	// DefaultMaxConnectRate is the usual Config.MaxConnectRate: a new
	// stream costs a full TLS handshake, about 1 ms of CPU, so this is
	// about a tenth of a core. The core itself defaults to none.
	DefaultMaxConnectRate = 100
)

// retentionPeriod is how often the decider deletes old events.
const retentionPeriod = 10 * time.Minute

// shutdownFlushTimeout bounds the last flush when Run returns.
const shutdownFlushTimeout = 5 * time.Second

// Log attribute keys of the core.
const (
	attrNode    = "node_id"
	attrReplica = "replica"
	attrError   = "error"
	attrCount   = "count"

	attrLoadFactor = "load_factor"
	attrBooted     = "booted"
)

// Config holds the core's dependencies and timings.
type Config struct {
	// Store is required.
	Store heartbeatstore.Store
	// Interval is the default time between beats (DefaultInterval).
	Interval time.Duration
	// Grace is how long a node may be silent before it is unreachable
	// (DefaultGrace). It must exceed two intervals.
	Grace time.Duration
	// FlushPeriod is how often beats are written to the store
	// (DefaultFlushPeriod). It must be at most half the interval, so that the
	// decider, reading the store, sees every beat in time.
	FlushPeriod time.Duration
	// DecidePeriod is how often the decider scans for silent nodes
	// (DefaultDecidePeriod).
	DecidePeriod time.Duration
	// LeaseTTL is how long the decider lease lasts unrenewed
	// (DefaultLeaseTTL); a crashed decider is replaced after it.
	LeaseTTL time.Duration
	// PollPeriod is how often a watch reads the store for events written by
	// other replicas (DefaultPollPeriod); events of this replica wake it at
	// once.
	PollPeriod time.Duration
	// RevocationCheck is how often IsRevoked is asked about every connected
	// node (DefaultRevocationCheck).
	RevocationCheck time.Duration
	// Retention is how long events are kept (DefaultRetention).
	Retention time.Duration
	// MaxBeatRate is the number of beats per second the heartbeat tier
	// should receive in total, from all nodes. When the live nodes would
	// beat faster at the base interval, the decider stretches every node's
	// timings by a load factor until they do not; 0 never stretches them.
	MaxBeatRate float64
	// MaxConnectRate is the number of heartbeat streams per second the
	// tier should see opened after a mass boot. While the boots this
	// replica recorded in the last minute would open their streams faster
	// within the second half of one base interval (when booted nodes open
	// them), the decider stretches every node's timings
	// so that they spread out (see bootWindow); 0 never stretches for
	// boots. The boots every replica recorded count: each stores its count
	// every DecidePeriod, for the decider to add up. While this replica
	// records boots faster than MaxConnectRate, it also defers new streams
	// (DeferStream).
	MaxConnectRate float64
	// IsRevoked, if set, is asked when a node connects and every
	// RevocationCheck for every connected node. It must be cheap (a lookup
	// in memory): it is called for each node.
	IsRevoked func(ctx context.Context, nodeID string) bool
	// ReplicaID names this replica as the lease holder; random by default.
	// Two live replicas must never share one.
	ReplicaID string
	// Logger defaults to a logger that discards everything.
	Logger *slog.Logger
	// Clock defaults to SystemClock().
	Clock Clock
	// Watchers, when set, keeps the positions of open watches (metrics).
	Watchers *metrics.WatcherSet
}

// Core is the heartbeat core of one replica.
type Core struct {
	store     heartbeatstore.Store
	cfg       Config
	log       *slog.Logger
	clock     Clock
	isRevoked func(ctx context.Context, nodeID string) bool

	shards   []*shard
	follower *eventlog.Follower
	// settings is the cached fleet settings; see settings.go.
	settings atomic.Pointer[heartbeatstore.Settings]

	revokedMu sync.Mutex
	revoked   map[string]struct{}

	closing atomic.Bool
	// closed is closed when Run returns, ending every watch.
	closed chan struct{}

	// flushMu makes flushes one at a time; it guards the retry buffer.
	flushMu  sync.Mutex
	retryObs map[string]heartbeatstore.Observation

	// decideMu makes decisions one at a time; it guards the decider state.
	decideMu      sync.Mutex
	decider       bool
	storeTrouble  bool
	holdUntil     time.Time
	leaseUntil    time.Time // when the lease this replica last took or renewed ends
	lastRetention time.Time
	sharedBoots   int // the boot count this replica last stored (shareBoots)

	// booted counts the boots recorded lately, for adjustLoad; others is
	// the other replicas' count as the decider last added it up, for
	// RecordBoots' raise (raiseForBoots).
	booted bootCount
	others atomic.Int64
	// gate defers new streams during a mass boot (DeferStream).
	gate streamGate

	stats counters
}

// counters are the core's statistics; see Stats.
type counters struct {
	beats, flushes, flushErrors, rows, events, silenced atomic.Int64
	boots, deferred                                     atomic.Int64
	sessions                                            atomic.Int64
	decider                                             atomic.Bool
}

// Stats are counters for measuring and monitoring.
type Stats struct {
	Beats         int64 // beats accepted
	Flushes       int64 // flushes that wrote something
	FlushErrors   int64 // flushes that failed (and will be retried)
	RowsWritten   int64 // liveness rows written by flushes
	EventsWritten int64 // events appended by this replica
	Silenced      int64 // nodes this replica declared suspect or unreachable
	Sessions      int64 // streams connected now
	Decider       bool  // this replica holds the decider lease
	Boots         int64 // boots recorded as beats (RecordBoots)
	Deferred      int64 // new streams deferred while the fleet booted (DeferStream)
}

// CheckRate checks a limit on a rate (Config.MaxBeatRate,
// MaxConnectRate): a NaN one would be stored as the load factor, and a
// negative one would turn the limit off unannounced.
func CheckRate(r float64) error {
	if !(r >= 0) || math.IsInf(r, 0) {
		return fmt.Errorf("must be a finite number of at least 0 (0 turns the limit off), not %v", r)
	}
	return nil
}

// New checks c, fills defaults and returns the core. Call Run to start its
// periodic work.
func New(c Config) (*Core, error) {
	if c.Store == nil {
		return nil, errors.New("liveness: Config.Store is required")
	}
	setDefault(&c.Interval, DefaultInterval)
	setDefault(&c.Grace, DefaultGrace)
	setDefault(&c.FlushPeriod, DefaultFlushPeriod)
	setDefault(&c.DecidePeriod, DefaultDecidePeriod)
	setDefault(&c.LeaseTTL, DefaultLeaseTTL)
	setDefault(&c.PollPeriod, DefaultPollPeriod)
	setDefault(&c.RevocationCheck, DefaultRevocationCheck)
	setDefault(&c.Retention, DefaultRetention)
	if err := CheckRate(c.MaxBeatRate); err != nil {
		return nil, fmt.Errorf("liveness: MaxBeatRate %w", err)
	}
	if err := CheckRate(c.MaxConnectRate); err != nil {
		return nil, fmt.Errorf("liveness: MaxConnectRate %w", err)
	}
	switch {
	case c.FlushPeriod*2 > c.Interval:
		return nil, fmt.Errorf("liveness: flush period %v must be at most half the interval %v", c.FlushPeriod, c.Interval)
	case c.Grace <= 2*c.Interval:
		return nil, fmt.Errorf("liveness: grace %v must exceed two intervals (%v)", c.Grace, 2*c.Interval)
	case c.LeaseTTL <= c.DecidePeriod:
		return nil, fmt.Errorf("liveness: lease TTL %v must exceed the decide period %v", c.LeaseTTL, c.DecidePeriod)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = SystemClock()
	}
	if c.ReplicaID == "" {
		c.ReplicaID = newReplicaID()
	}
	core := &Core{
		store:     c.Store,
		cfg:       c,
		log:       c.Logger.With(attrReplica, c.ReplicaID),
		clock:     c.Clock,
		isRevoked: c.IsRevoked,
		shards:    newShards(defaultShards),
		revoked:   map[string]struct{}{},
		retryObs:  map[string]heartbeatstore.Observation{},
		closed:    make(chan struct{}),
	}
	f, err := eventlog.NewFollower(eventlog.FollowerConfig{
		Source: c.Store.Events(), PollPeriod: c.PollPeriod, PageSize: watchPage, After: c.Clock.After, Done: core.closed,
		Watchers: c.Watchers,
	})
	if err != nil {
		return nil, fmt.Errorf("liveness: %w", err)
	}
	core.follower = f
	core.settings.Store(&heartbeatstore.Settings{})
	return core, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// newReplicaID names a replica for logs and the lease: host name and a
// random suffix, since a restarted process must not inherit the lease (and
// skip the grace period) of its previous life.
func newReplicaID() string {
	host, _ := os.Hostname()
	var b [6]byte
	rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// ReplicaID returns the name this replica holds the lease under.
func (c *Core) ReplicaID() string { return c.cfg.ReplicaID }

// Stats returns the counters.
func (c *Core) Stats() Stats {
	s := &c.stats
	return Stats{
		Beats: s.beats.Load(), Flushes: s.flushes.Load(), FlushErrors: s.flushErrors.Load(),
		RowsWritten: s.rows.Load(), EventsWritten: s.events.Load(),
		Silenced: s.silenced.Load(), Sessions: s.sessions.Load(), Decider: s.decider.Load(), Boots: s.boots.Load(),
		Deferred: s.deferred.Load(),
	}
}

// Run does the core's periodic work until ctx ends: it loads the fleet
// settings, flushes, decides (when it holds the lease) and checks
// revocations, each on its period. Then it ends every stream and watch
// with ErrClosing, flushes what is left and gives the lease up, so that
// another replica takes over at once. Call it once.
func (c *Core) Run(ctx context.Context) error {
	if err := c.RefreshSettings(ctx); err != nil {
		c.log.Warn("heartbeat settings not loaded; using defaults", attrError, err)
	}
	flushC := c.clock.After(c.cfg.FlushPeriod)
	decideC := c.clock.After(c.cfg.DecidePeriod)
	revokeC := c.clock.After(c.cfg.RevocationCheck)
	for {
		select {
		case <-ctx.Done():
			return c.shutdown(context.WithoutCancel(ctx))
		case <-flushC:
			if err := c.RefreshSettings(ctx); err != nil {
				c.log.Warn("heartbeat settings not refreshed", attrError, err)
			}
			if err := c.Flush(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("flush failed; will retry", attrError, err)
			}
			flushC = c.clock.After(c.cfg.FlushPeriod)
		case <-decideC:
			if err := c.Decide(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("deciding silent nodes failed", attrError, err)
			}
			decideC = c.clock.After(c.cfg.DecidePeriod)
		case <-revokeC:
			c.CheckRevocations(ctx)
			revokeC = c.clock.After(c.cfg.RevocationCheck)
		}
	}
}

// shutdown ends the streams, flushes and releases the lease.
func (c *Core) shutdown(ctx context.Context) error {
	c.closing.Store(true)
	close(c.closed)
	c.endSessions(func(string) error { return ErrClosing })
	ctx, cancel := context.WithTimeout(ctx, shutdownFlushTimeout)
	defer cancel()
	err := c.Flush(ctx)
	if err != nil {
		c.log.Error("last flush failed; beats since the previous one are lost", attrError, err)
	}
	c.decideMu.Lock()
	defer c.decideMu.Unlock()
	if c.decider {
		if rerr := c.store.ReleaseLease(ctx, c.cfg.ReplicaID); rerr != nil {
			c.log.Warn("decider lease not released; another replica takes over when it expires", attrError, rerr)
		}
		c.setDecider(false)
	}
	return err
}
