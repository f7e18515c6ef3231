// Package registration is berth's registration service: nodes register once
// and resume on every boot, and the management engine approves, rejects,
// revokes and deletes them, hands out bootstrap tokens and follows the node
// lifecycle event log (WatchNodeEvents).
//
// # Lifecycle
//
// New builds the service; Register and Policy put it on a gRPC
// server. Run, started once in the background for the service's lifetime,
// deletes events older than Config.EventRetention (now and every
// EventPrunePeriod) and, when its context ends, ends every WatchNodeEvents
// stream with Unavailable, so that the server's GracefulStop does not wait
// for them. Without Run the service works, but never prunes its log.
package registration

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/lifecycle"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/ratelimit"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// CA is what the registration service needs from the certificate authority.
type CA interface {
	// Sign issues a certificate for nodeID to the key of csr.
	Sign(ctx context.Context, nodeID, hostname string, csr []byte) (regstore.Cert, error)
	// Revoke revokes a certificate by serial.
	Revoke(ctx context.Context, serial, reason string) error
}

// Bundles is what the registration service needs from the bundle store.
type Bundles interface {
	// Sealed returns the node's current sealed bundle, or nil when none.
	Sealed(ctx context.Context, nodeID string) (*berthv1.SealedBundle, error)
	// Delete removes every bundle of a node.
	Delete(ctx context.Context, nodeID string) error
}

// Config holds the service's dependencies.
type Config struct {
	Store regstore.Store
	CA    CA
	// Bundles, when set, lets Resume return the sealed bundle inline.
	Bundles Bundles
	// TrustBundle is the DER root certificates handed to nodes.
	TrustBundle [][]byte
	// Endpoints are the addresses of the other services, returned on Resume.
	Endpoints *berthv1.Endpoints
	Logger    *slog.Logger
	// Clock dates nodes, tokens and events and decides renewals; the
	// system clock when nil.
	Clock clock.Clock
	// EventRetention is how long node lifecycle events are kept
	// (DefaultEventRetention). Run deletes older ones.
	EventRetention time.Duration
	// TokenFailureBurst and TokenFailureInterval limit failed bootstrap
	// token attempts per source address: a source may fail
	// TokenFailureBurst times in a row and earns one more attempt every
	// TokenFailureInterval (DefaultTokenFailureBurst,
	// DefaultTokenFailureInterval). Beyond that its attempts are refused
	// with ResourceExhausted and a retry delay, before the token is looked
	// at. Successful attempts cost nothing.
	TokenFailureBurst    int
	TokenFailureInterval time.Duration
}

// Defaults of Config and of Run.
const (
	DefaultEventRetention = lifecycle.DefaultRetention
	// EventPrunePeriod is how often Run deletes expired events.
	EventPrunePeriod = lifecycle.PrunePeriod
	// A source may fail ten times in a row, then once a minute: plenty
	// for an operator who mistyped a token, nothing for a guesser.
	DefaultTokenFailureBurst    = 10
	DefaultTokenFailureInterval = time.Minute
)

// Service implements NodeAdminService, and through Register also
// RegistrationService (nodeServer).
type Service struct {
	berthv1.UnsafeNodeAdminServiceServer

	store     regstore.Store
	ca        CA
	bundles   Bundles
	bundle    [][]byte
	endpoints *berthv1.Endpoints
	log       *slog.Logger
	clock     clock.Clock
	// renewals collapses concurrent renewals of one node into one CA call.
	renewals singleflight.Group
	// tokenFailures limits failed bootstrap tokens per source address.
	tokenFailures *ratelimit.Limiter

	// events serves the node lifecycle log (WatchNodeEvents, Run).
	events *lifecycle.Feed
}

var _ berthv1.NodeAdminServiceServer = (*Service)(nil)

// New checks the configuration and fills defaults.
func New(c Config) (*Service, error) {
	if c.Store == nil || c.CA == nil {
		return nil, errors.New("registration: Store and CA are required")
	}
	if len(c.TrustBundle) == 0 {
		return nil, errors.New("registration: TrustBundle is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Clock = clock.Or(c.Clock)
	if c.Endpoints == nil {
		c.Endpoints = &berthv1.Endpoints{}
	}
	if c.EventRetention < 0 {
		return nil, errors.New("registration: EventRetention is negative")
	}
	if c.TokenFailureBurst < 0 || c.TokenFailureInterval < 0 {
		return nil, errors.New("registration: TokenFailureBurst and TokenFailureInterval must not be negative")
	}
	events, err := lifecycle.New(lifecycle.Config{
		Log: c.Store.Events(), Service: "registration", Types: regstore.EventTypes(),
		Retention: c.EventRetention, Now: c.Clock.Now, Logger: c.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("registration: %w", err)
	}
	return &Service{
		store: c.Store, ca: c.CA, bundles: c.Bundles, bundle: c.TrustBundle, endpoints: c.Endpoints,
		log: c.Logger, clock: c.Clock, events: events,
		tokenFailures: ratelimit.New(ratelimit.Config{
			Burst:    cmp.Or(c.TokenFailureBurst, DefaultTokenFailureBurst),
			Interval: cmp.Or(c.TokenFailureInterval, DefaultTokenFailureInterval),
			Now:      c.Clock.Now,
		}),
	}, nil
}

// Run deletes expired events now and every EventPrunePeriod until ctx
// ends; then it ends every WatchNodeEvents stream with Unavailable and
// returns nil. Call it once, in the background, for as long as the service
// serves, and stop the gRPC server after it returned (or at the same time:
// GracefulStop then finds the watch streams ending).
func (s *Service) Run(ctx context.Context) error { return s.events.Run(ctx) }

// PruneEvents deletes the events older than the retention period and
// returns how many it deleted. Run calls it; replicas may all do so.
func (s *Service) PruneEvents(ctx context.Context) (int64, error) { return s.events.Prune(ctx) }

// Register puts both gRPC services on a server.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	berthv1.RegisterRegistrationServiceServer(g, nodeServer{s: s})
	berthv1.RegisterNodeAdminServiceServer(g, s)
}

// Policy is the service's rows of the authorisation matrix (rpc.Matrix):
// nodes prove a key; only admins administer and watch.
func (s *Service) Policy() rpc.Policy {
	return rpc.PolicyFor(berthv1.RegistrationService_ServiceDesc.ServiceName, berthv1.NodeAdminService_ServiceDesc.ServiceName)
}

// caller returns the verified key of the calling node. The interceptor has
// already refused peers without a certificate.
func caller(ctx context.Context) mtls.Identity {
	id, _, _ := mtls.PeerIdentity(ctx)
	return id
}
