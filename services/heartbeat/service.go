// Package heartbeat is berth's heartbeat service: every node keeps one
// stream open and beats on the interval the service gives it, and the
// management engine reads node health and follows the health event log.
// It adapts internal/liveness, which does the work, to gRPC.
package heartbeat

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Log attribute keys of this service (the shared ones are in internal/rpc).
const (
	attrNode = "node_id"
)

// Config holds the service's dependencies. Zero durations take the
// defaults of internal/liveness.
type Config struct {
	// Metrics, when set, counts connected streams.
	Metrics *metrics.Metrics
	// Store keeps liveness, the event log, the decider lease and the
	// settings. Required.
	Store heartbeatstore.Store
	// Interval is the default time between beats (10 s).
	Interval time.Duration
	// Grace is how long a node may be silent before it is unreachable
	// (40 s); it must exceed two intervals.
	Grace time.Duration
	// FlushPeriod is how often beats are written to the store (2 s); at most
	// half the interval.
	FlushPeriod time.Duration
	// Retention is how long health events are kept (7 days).
	Retention time.Duration
	// MaxBeatRate is the beats per second all replicas together should
	// receive; above it the decider stretches the fleet's timings. 0 never
	// stretches them.
	MaxBeatRate float64
	// MaxConnectRate is the new streams per second the replicas should
	// see after a mass boot; while booted nodes would open theirs faster,
	// the decider stretches the fleet's timings so that they spread out
	// (liveness.Config.MaxConnectRate). 0 never stretches for boots.
	MaxConnectRate float64
	// IsRevoked is asked when a node connects and every few seconds for
	// every connected node; revoked nodes lose their stream. It must answer
	// from memory. nil means only Revoked ends streams.
	IsRevoked func(ctx context.Context, nodeID string) bool
	// CertRevoked, when set, is asked when a node connects and on every
	// beat whether the certificate the stream was opened with (by serial,
	// lower-case hex) is revoked: a replaced board's old certificate is,
	// while its node is not. It must answer from memory.
	CertRevoked func(ctx context.Context, nodeID, serial string) bool
	// RevocationsKnown, when set, is asked when a node connects and on
	// every beat: an error (revocation.ErrUnknown) means the revocation
	// state is not known, and the stream is refused or ended with
	// Unavailable rather than served as if nothing were revoked.
	RevocationsKnown func() error
	// ReplicaID names this replica as decider; random by default.
	ReplicaID string
	// Logger defaults to a logger that discards everything.
	Logger *slog.Logger
	// Clock drives every period and deadline; the system clock when nil.
	Clock clock.Clock
}

// Service implements HeartbeatService and HeartbeatAdminService.
type Service struct {
	berthv1.UnsafeHeartbeatServiceServer
	berthv1.UnsafeHeartbeatAdminServiceServer

	core             *liveness.Core
	store            heartbeatstore.Store
	revocationsKnown func() error
	certRevoked      func(ctx context.Context, nodeID, serial string) bool
	metrics          *metrics.Metrics
	log              *slog.Logger
	bundles          *bundlePush
}

var (
	_ berthv1.HeartbeatServiceServer      = (*Service)(nil)
	_ berthv1.HeartbeatAdminServiceServer = (*Service)(nil)
)

// New checks c and returns the service. Call Run for its periodic work.
func New(c Config) (*Service, error) {
	if c.Store == nil {
		return nil, errors.New("heartbeat: Config.Store is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	core, err := liveness.New(liveness.Config{
		Store:          c.Store,
		Interval:       c.Interval,
		Grace:          c.Grace,
		FlushPeriod:    c.FlushPeriod,
		Retention:      c.Retention,
		MaxBeatRate:    c.MaxBeatRate,
		MaxConnectRate: c.MaxConnectRate,
		IsRevoked:      c.IsRevoked,
		ReplicaID:      c.ReplicaID,
		Watchers:       c.Metrics.Watchers("heartbeat"),
		Logger:         c.Logger,
		Clock:          clock.Or(c.Clock),
	})
	if err != nil {
		return nil, err
	}
	return &Service{core: core, store: c.Store, revocationsKnown: c.RevocationsKnown, certRevoked: c.CertRevoked,
		log: c.Logger, bundles: newBundlePush(), metrics: c.Metrics}, nil
}

// Register puts the gRPC services on a server: nodes' stream, the admin
// API and the registration service's boots.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	berthv1.RegisterHeartbeatServiceServer(g, s)
	berthv1.RegisterHeartbeatAdminServiceServer(g, s)
	berthv1.RegisterHeartbeatBootServiceServer(g, boots{s: s})
}

// Policy is the service's rows of the authorisation matrix (rpc.Matrix):
// nodes with a certificate beat, admins read health and change the
// settings, the registration service records the boots it served.
func (s *Service) Policy() rpc.Policy {
	return rpc.PolicyFor(berthv1.HeartbeatService_ServiceDesc.ServiceName, berthv1.HeartbeatAdminService_ServiceDesc.ServiceName,
		berthv1.HeartbeatBootService_ServiceDesc.ServiceName)
}

// Run flushes beats, decides which nodes are silent (on the replica that
// holds the lease) and checks revocations until ctx ends; then it ends
// every stream with Unavailable, so that agents reconnect to another
// replica, writes the last beats and hands the decider role on. Stop the
// gRPC server after Run returns.
func (s *Service) Run(ctx context.Context) error { return s.core.Run(ctx) }

// Revoked ends the node's stream at once and refuses its new ones on this
// replica. Other replicas learn through Config.IsRevoked.
func (s *Service) Revoked(nodeID string) { s.core.Revoke(nodeID) }

// BundleChanged tells the node, if its stream is open on this replica, that
// its current bundle version is now version, so that it applies it. The
// daemon calls it for the bundle store's bundle_updated (approved) and
// bundle_approved events; a reset (version 0) makes the next version
// count again.
func (s *Service) BundleChanged(nodeID string, version int64) {
	if version <= 0 {
		s.bundles.forget(nodeID)
		return
	}
	s.bundles.changed(nodeID, version)
}

// DeferStream reports whether a node's new heartbeat stream should wait:
// the fleet is booting faster than its streams are let in (see
// liveness.Core.DeferStream). It is the transport's check
// (rpc.ServerConfig.DeferStreams), made before the TLS key exchange.
func (s *Service) DeferStream() bool { return s.core.DeferStream() }

// Stats returns the core's counters.
func (s *Service) Stats() liveness.Stats { return s.core.Stats() }

// revocationsReady returns nil while the revocation state is known.
func (s *Service) revocationsReady() error {
	if s.revocationsKnown == nil {
		return nil
	}
	return s.revocationsKnown()
}

// streamAllowed checks, from memory, that the revocation state is known
// and the caller's certificate (serial, lower-case hex; "" for none) is
// not revoked.
func (s *Service) streamAllowed(ctx context.Context, nodeID, serial string) error {
	if err := s.revocationsReady(); err != nil {
		return err
	}
	if s.certRevoked != nil && serial != "" && s.certRevoked(ctx, nodeID, serial) {
		return errCertRevoked
	}
	return nil
}

// caller returns the verified identity of the caller; the policy has let
// only nodes with an issued certificate (or admins) through.
func caller(ctx context.Context) mtls.Identity {
	id, _, _ := mtls.PeerIdentity(ctx)
	return id
}
