// Package registration is berth's registration service: nodes register once
// and resume on every boot, and the management engine approves, rejects,
// revokes and deletes them, hands out bootstrap tokens and follows the node
// lifecycle event log (WatchNodeEvents).
//
// # Issuance exactly once
//
// Before it asks the CA for a node's certificate the service records an
// intent (node, request ID, key hash, the serial it replaces): in the
// transaction that registers a node approved (regstore.RegisterIssuing),
// else on its own (ClaimIssuance). The CA's Sign is idempotent on the
// request ID; the certificate is stored, counted and the intent closed in
// one transaction (InstallIssuance, or CompleteIssuance once a certificate
// for a node that moved on is revoked). One intent is open per node, so
// the row is also the claim on a renewal: replicas that race complete the
// same intent and get the same certificate. An intent left open by a
// crash is completed by the node's next call or by the reconciler in Run,
// so the CA's log and each node's certificates_issued always agree. The
// reconciler also opens and completes the issuance of an approved node
// that has no certificate and no intent (approved by an admin, or whose
// caller was lost before it claimed), so its next call finds it. A
// certificate that arrives for a node that moved on (revoked, deleted,
// replaced) is counted and revoked, never handed out.
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

	"github.com/berth-dev/berth/internal/apitoken"
	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/lifecycle"
	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/ratelimit"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// CA is what the registration service needs from the certificate authority.
type CA interface {
	// Sign issues a certificate for nodeID to the key of csr; the same
	// requestID again returns the same certificate, never a second one.
	Sign(ctx context.Context, requestID, nodeID, hostname string, csr []byte) (regstore.Cert, error)
	// Revoke revokes a certificate by serial.
	Revoke(ctx context.Context, serial, reason string) error
	// RevokeNode revokes every certificate issued to nodeID but those for
	// the key hash keep (nil: all); nodeRevoked marks the node itself as
	// revoked, for the services that deny it by node ID.
	RevokeNode(ctx context.Context, nodeID string, keep []byte, reason string, nodeRevoked bool) error
	// ListIssued reads the CA's issued-certificate log, of one node or
	// ("") of all.
	ListIssued(ctx context.Context, nodeID string) ([]*berthv1.IssuedCertificate, error)
}

// Bundles is what the registration service needs from the bundle store.
type Bundles interface {
	// Sealed returns the node's current sealed bundle, or nil when it has
	// none. bundleKey is the node's bundle key as registered: the store
	// answers by node ID alone, a cache also by the key, so that a board
	// that replaced the node (another key, its bundles deleted on another
	// replica, which appends no event) never gets the old board's.
	Sealed(ctx context.Context, nodeID string, bundleKey []byte) (*berthv1.SealedBundle, error)
	// Delete removes every bundle of a node.
	Delete(ctx context.Context, nodeID string) error
}

// Config holds the service's dependencies.
type Config struct {
	// Metrics, when set, counts registrations, resumes and certificates.
	Metrics *metrics.Metrics
	Store   regstore.Store
	CA      CA
	// Bundles, when set, lets Resume return the sealed bundle inline.
	Bundles Bundles
	// Boots, when set, takes the boots of Resume and Register calls that
	// carry one (a BootSender to the heartbeat service): each counts as
	// its node's first heartbeat (boots.go).
	Boots Booter
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
	// EKRoots are the TPM manufacturer CAs (--ek-ca): a TPM node's EK
	// certificate is "trusted" when it chains to one. Nil: no EK
	// certificate is checked ("unchecked").
	EKRoots *attest.EKRoots
	// AutoApproveTrustedEK approves, without a token, a TPM node whose EK
	// certificate chains to EKRoots (--ek-ca-auto-approve). An enrolled EK
	// is approved without a token in any case.
	AutoApproveTrustedEK bool
	// ReconcilePeriod is how often Run completes the issuances left open
	// for longer than ReconcileAge (DefaultReconcilePeriod,
	// DefaultReconcileAge): those of a replica that crashed, or lost the
	// database or the CA, between recording an issuance and storing the
	// certificate. It also issues the certificate of every approved node
	// left without one and unchanged for ReconcileAge (approved by an
	// admin, or registered by a replica lost before it opened the
	// intent), so such a node waits at most ReconcileAge plus
	// ReconcilePeriod. Run's first pass, at start, takes every one.
	ReconcilePeriod time.Duration
	ReconcileAge    time.Duration
	// BootPCRs are the SHA-256 PCRs a TPM node quotes at boot
	// (DefaultBootPCRs). Every replica must use the same set: the boot
	// digests recorded and the PCR policies' digests are over exactly
	// these.
	BootPCRs []int
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
	// An issuance takes one CA call and one transaction; one still open
	// after ten seconds has lost its caller, and a pass every fifteen
	// seconds bounds how long a node stays approved without its
	// certificate if it does not call again.
	DefaultReconcilePeriod = 15 * time.Second
	DefaultReconcileAge    = 10 * time.Second
)

// Service implements NodeAdminService, and through Register also
// RegistrationService (nodeServer).
type Service struct {
	berthv1.UnsafeNodeAdminServiceServer

	store     regstore.Store
	ca        CA
	bundles   Bundles
	boots     Booter
	bundle    [][]byte
	endpoints *berthv1.Endpoints
	log       *slog.Logger
	metrics   *metrics.Metrics
	clock     clock.Clock
	// renewals collapses concurrent renewals of one node into one CA call.
	renewals singleflight.Group
	// tokenFailures limits failed bootstrap tokens per source address.
	tokenFailures *ratelimit.Limiter
	// bootstrap keeps the bootstrap tokens read (tokencache.go).
	bootstrap tokenCache
	// reconcilePeriod and reconcileAge drive Run's reconciler.
	reconcilePeriod, reconcileAge time.Duration

	// events serves the node lifecycle log (WatchNodeEvents, Run).
	events *lifecycle.Feed

	ekRoots              *attest.EKRoots
	autoApproveTrustedEK bool
	// challenges are the TPM credentials waiting for their activation.
	challenges challenges
	// tokens checks API tokens and batches their last-use times.
	tokens *apitoken.Checker

	// Boot evidence (boot.go): the PCRs quoted, the replicas' nonce key,
	// the PCR policies last read.
	bootPCRs   []int
	bootPCRs32 []uint32
	nonceK     nonceKey
	policies   policyCache
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
	if c.ReconcilePeriod < 0 || c.ReconcileAge < 0 {
		return nil, errors.New("registration: ReconcilePeriod and ReconcileAge must not be negative")
	}
	if c.TokenFailureBurst < 0 || c.TokenFailureInterval < 0 {
		return nil, errors.New("registration: TokenFailureBurst and TokenFailureInterval must not be negative")
	}
	bootPCRs, err := checkBootPCRs(c.BootPCRs)
	if err != nil {
		return nil, err
	}
	bootPCRs32 := make([]uint32, len(bootPCRs))
	for i, p := range bootPCRs {
		bootPCRs32[i] = uint32(p)
	}
	events, err := lifecycle.New(lifecycle.Config{
		Log: c.Store.Events(), Service: "registration", Types: regstore.EventTypes(),
		Retention: c.EventRetention, Now: c.Clock.Now, Logger: c.Logger,
		Watchers: c.Metrics.Watchers("registration"),
	})
	if err != nil {
		return nil, fmt.Errorf("registration: %w", err)
	}
	tokens, err := apitoken.NewChecker(apitoken.Config{Store: c.Store, Clock: c.Clock, Logger: c.Logger})
	if err != nil {
		return nil, fmt.Errorf("registration: %w", err)
	}
	return &Service{
		tokens: tokens,
		store:  c.Store, ca: c.CA, bundles: c.Bundles, boots: c.Boots, bundle: c.TrustBundle, endpoints: c.Endpoints,
		log: c.Logger, clock: c.Clock, events: events, metrics: c.Metrics,
		ekRoots: c.EKRoots, autoApproveTrustedEK: c.AutoApproveTrustedEK,
		bootPCRs: bootPCRs, bootPCRs32: bootPCRs32,
		reconcilePeriod: cmp.Or(c.ReconcilePeriod, DefaultReconcilePeriod),
		reconcileAge:    cmp.Or(c.ReconcileAge, DefaultReconcileAge),
		tokenFailures: ratelimit.New(ratelimit.Config{
			Burst:    cmp.Or(c.TokenFailureBurst, DefaultTokenFailureBurst),
			Interval: cmp.Or(c.TokenFailureInterval, DefaultTokenFailureInterval),
			Now:      c.Clock.Now,
		}),
	}, nil
}

// Run deletes expired events now and every EventPrunePeriod, and
// completes open issuances now and every ReconcilePeriod (see Reconcile),
// until ctx ends; then it ends every WatchNodeEvents stream with
// Unavailable and returns nil. Call it once, in the background, for as
// long as the service serves, and stop the gRPC server after it returned
// (or at the same time: GracefulStop then finds the watch streams ending).
func (s *Service) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.reconcileLoop(ctx)
	}()
	tokensDone := make(chan struct{})
	go func() {
		defer close(tokensDone)
		s.tokens.Run(ctx)
	}()
	err := s.events.Run(ctx)
	<-done
	<-tokensDone
	return err
}

// PruneEvents deletes the events older than the retention period and
// returns how many it deleted. Run calls it; replicas may all do so.
func (s *Service) PruneEvents(ctx context.Context) (int64, error) { return s.events.Prune(ctx) }

// Register puts the service's gRPC services on a server: nodes', the
// admin API's and API tokens'.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	berthv1.RegisterRegistrationServiceServer(g, nodeServer{s: s})
	berthv1.RegisterNodeAdminServiceServer(g, s)
	berthv1.RegisterAPITokenServiceServer(g, apiTokens{s: s})
	berthv1.RegisterConsoleSessionServiceServer(g, consoleSessions{s: s})
}

// Policy is the service's rows of the authorisation matrix (rpc.Matrix):
// nodes prove a key; the admin API's roles administer and watch.
func (s *Service) Policy() rpc.Policy {
	return rpc.PolicyFor(berthv1.RegistrationService_ServiceDesc.ServiceName, berthv1.NodeAdminService_ServiceDesc.ServiceName,
		berthv1.APITokenService_ServiceDesc.ServiceName, berthv1.ConsoleSessionService_ServiceDesc.ServiceName)
}

// caller returns the verified key of the calling node. The interceptor has
// already refused peers without a certificate.
func caller(ctx context.Context) mtls.Identity {
	id, _, _ := mtls.PeerIdentity(ctx)
	return id
}
