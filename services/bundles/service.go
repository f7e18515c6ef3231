// Package bundles is berth's bundles service: it keeps every node's
// configuration bundle, sealed by the writer to the node's bundle key, in
// versions, with compare-and-swap writes, a size limit, an optional hold
// for approval, resets and a short history. It stores and serves ciphertext
// only; it reads no more of a bundle than its clear-text header and its
// signature (internal/bundle.Parse).
//
// # Signatures
//
// Every write must be a bundle of format version 2, signed for the node,
// in the service's trust domain, and for the version number the store gives
// it (one above the highest used; ListBundleHistory and GetBundleVersions
// tell it): an administrator's write by an admin certificate chaining to
// the deployment's root, a node's upload by the node's own identity key
// (the key of its client certificate). The service holds no key that can
// sign a bundle. Checking signatures here is defence in depth and makes
// mistakes fail at once: the agent verifies again before it applies
// anything, and trusts neither this service nor its database. Bundles of
// format version 1, unsigned, that stores hold from before are still
// served, for old agents; current agents refuse them.
//
// Nodes call BundleService for their own bundle, named by their
// certificate; the management engine calls BundleAdminService, which also
// streams the bundle event log (WatchBundleEvents).
//
// # Lifecycle
//
// New builds the service; Register and Policy put it on a gRPC server. Run,
// started once in the background for the service's lifetime, deletes
// events older than Config.EventRetention (now and every EventPrunePeriod)
// and, when its context ends, ends every WatchBundleEvents stream with
// Unavailable, so that the server's GracefulStop does not wait for them.
// Without Run the service works, but never prunes its log.
package bundles

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/lifecycle"
	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Log attribute keys of this service (the shared ones are in internal/rpc).
const (
	attrNode    = "node_id"
	attrVersion = "version"
	attrState   = "state"
	attrSize    = "size"
	attrDigest  = "sha256"
	attrAuthor  = "author"
	attrSigned  = "signed_by"
)

// Defaults for Config, and Run's period.
const (
	DefaultMaxBundleSize  = 1 << 20
	DefaultKeep           = bundlestore.DefaultKeep
	DefaultEventRetention = lifecycle.DefaultRetention
	// EventPrunePeriod is how often Run deletes expired events.
	EventPrunePeriod = lifecycle.PrunePeriod
)

// Config holds the dependencies and settings of the bundles service.
type Config struct {
	// Metrics, when set, counts bundle puts and fetches.
	Metrics *metrics.Metrics
	// Store keeps the bundles. Required.
	Store bundlestore.Store
	// TrustDomain is the deployment's trust domain, which bundles must be
	// signed in. Required.
	TrustDomain string
	// Roots are the deployment's roots, which admin signers must chain
	// to. Required.
	Roots *x509.CertPool
	// MaxBundleSize is the largest sealed bundle accepted, in bytes;
	// DefaultMaxBundleSize when 0. It is checked apart from the gRPC
	// server's own limit on message size, which must be larger.
	MaxBundleSize int
	// Keep is how many versions of a node's bundle history keeps;
	// DefaultKeep when 0.
	Keep int
	// RequireApproval holds every node upload for an administrator's
	// approval (berthd --bundle-require-approval). It is the default: an
	// approval policy an administrator stored (SetBundleSettings)
	// overrides it, on every replica, from the next upload on.
	RequireApproval bool
	// ApprovalRequired, when set, is asked whether a node's uploads must be
	// held for approval even though RequireApproval is off: the node's own
	// policy. An error refuses the upload as Unavailable.
	ApprovalRequired func(ctx context.Context, nodeID string) (bool, error)
	// Revoked, when set, is asked on every node call whether the caller's
	// certificate, by node ID and serial (lower-case hex, as the CA's issued
	// log writes it), is revoked. Revoked callers are denied.
	Revoked func(ctx context.Context, nodeID, serial string) bool
	// NodeRevoked, when set, is asked when an administrator puts a bundle
	// whether the node was revoked (or deleted): such a node takes no
	// bundle, and the put is refused with FailedPrecondition.
	NodeRevoked func(ctx context.Context, nodeID string) bool
	// RevocationsKnown, when set, is asked on every node call before
	// Revoked: an error (revocation.ErrUnknown) means the revocation state
	// is not known, and the call is refused with Unavailable rather than
	// served as if nothing were revoked.
	RevocationsKnown func() error
	// EventRetention is how long bundle events are kept
	// (DefaultEventRetention). Run deletes older ones.
	EventRetention time.Duration
	// Logger defaults to a logger that discards everything.
	Logger *slog.Logger
	// Clock dates versions and events; the system clock when nil.
	Clock clock.Clock
}

// Service implements berth.v1.BundleService, and through Register also
// berth.v1.BundleAdminService.
type Service struct {
	berthv1.UnsafeBundleServiceServer

	store            bundlestore.Store
	trustDomain      string
	roots            *x509.CertPool
	maxSize          int
	keep             int
	requireApproval  bool
	approvalRequired func(ctx context.Context, nodeID string) (bool, error)
	revoked          func(ctx context.Context, nodeID, serial string) bool
	nodeRevoked      func(ctx context.Context, nodeID string) bool
	revocationsKnown func() error
	log              *slog.Logger
	clock            clock.Clock
	metrics          *metrics.Metrics

	// events serves the bundle event log (WatchBundleEvents, Run).
	events *lifecycle.Feed
}

var _ berthv1.BundleServiceServer = (*Service)(nil)

// New checks c and returns the service.
func New(c Config) (*Service, error) {
	switch {
	case c.Store == nil:
		return nil, errors.New("bundles: Config.Store is required")
	case c.TrustDomain == "":
		return nil, errors.New("bundles: Config.TrustDomain is required")
	case c.Roots == nil:
		return nil, errors.New("bundles: Config.Roots is required")
	case c.MaxBundleSize < 0:
		return nil, fmt.Errorf("bundles: Config.MaxBundleSize %d is negative", c.MaxBundleSize)
	case c.Keep < 0:
		return nil, fmt.Errorf("bundles: Config.Keep %d is negative", c.Keep)
	case c.EventRetention < 0:
		return nil, fmt.Errorf("bundles: Config.EventRetention %v is negative", c.EventRetention)
	}
	if c.MaxBundleSize == 0 {
		c.MaxBundleSize = DefaultMaxBundleSize
	}
	if c.Keep == 0 {
		c.Keep = DefaultKeep
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Clock = clock.Or(c.Clock)
	events, err := lifecycle.New(lifecycle.Config{
		Log: c.Store.Events(), Service: "bundles", Types: bundlestore.EventTypes(),
		Retention: c.EventRetention, Now: c.Clock.Now, Logger: c.Logger,
		Watchers: c.Metrics.Watchers("bundles"),
	})
	if err != nil {
		return nil, fmt.Errorf("bundles: %w", err)
	}
	return &Service{
		events:           events,
		store:            c.Store,
		trustDomain:      c.TrustDomain,
		roots:            c.Roots,
		maxSize:          c.MaxBundleSize,
		keep:             c.Keep,
		requireApproval:  c.RequireApproval,
		approvalRequired: c.ApprovalRequired,
		revoked:          c.Revoked,
		nodeRevoked:      c.NodeRevoked,
		revocationsKnown: c.RevocationsKnown,
		log:              c.Logger,
		clock:            c.Clock,
		metrics:          c.Metrics,
	}, nil
}

// Register puts both gRPC services on a server.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	berthv1.RegisterBundleServiceServer(g, s)
	berthv1.RegisterBundleAdminServiceServer(g, adminServer{s: s})
}

// Policy is the service's rows of the authorisation matrix (rpc.Matrix):
// nodes their own bundle, admins every node's, and the registration
// service may read a node's sealed bundle (to return it inside Resume) and
// delete a deleted node's bundles.
func (s *Service) Policy() rpc.Policy {
	return rpc.PolicyFor(berthv1.BundleService_ServiceDesc.ServiceName, berthv1.BundleAdminService_ServiceDesc.ServiceName)
}

// Run deletes expired events now and every EventPrunePeriod until ctx
// ends; then it ends every WatchBundleEvents stream with Unavailable and
// returns nil. Call it once, in the background, for as long as the service
// serves.
func (s *Service) Run(ctx context.Context) error { return s.events.Run(ctx) }

// PruneEvents deletes the events older than the retention period and
// returns how many it deleted. Run calls it; replicas may all do so.
func (s *Service) PruneEvents(ctx context.Context) (int64, error) { return s.events.Prune(ctx) }

// caller returns the verified identity of the caller; the interceptor has
// already applied the policy to it.
func caller(ctx context.Context) mtls.Identity {
	id, _, _ := mtls.PeerIdentity(ctx)
	return id
}

// node returns the calling node's ID, after the revocation check. The ID
// comes from the node's certificate and from nowhere else.
func (s *Service) node(ctx context.Context) (string, error) {
	id := caller(ctx)
	if id.Kind != mtls.KindNode || ident.NodeID(id.Name) != nil || id.Leaf == nil {
		return "", errNotNode
	}
	if s.revocationsKnown != nil {
		if err := s.revocationsKnown(); err != nil {
			return "", err
		}
	}
	if s.revoked != nil && s.revoked(ctx, id.Name, id.Leaf.SerialNumber.Text(16)) {
		return "", errRevoked
	}
	return id.Name, nil
}

// GetBundle returns the calling node's current bundle.
func (s *Service) GetBundle(ctx context.Context, _ *berthv1.GetBundleRequest) (_ *berthv1.GetBundleResponse, err error) {
	defer func() { s.metrics.BundleFetch("node", metrics.Result(err)) }()
	log := rpc.Logger(ctx, s.log)
	nodeID, err := s.node(ctx)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log = log.With(attrNode, nodeID)
	b, err := s.store.Get(ctx, nodeID)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.GetBundleResponse{Bundle: sealedToProto(b)}, nil
}

// GetBundleVersions tells the calling node its bundle's version numbers,
// the next one among them, which its own uploads must be signed for.
func (s *Service) GetBundleVersions(ctx context.Context, _ *berthv1.GetBundleVersionsRequest) (*berthv1.GetBundleVersionsResponse, error) {
	log := rpc.Logger(ctx, s.log)
	nodeID, err := s.node(ctx)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	v, err := s.versions(ctx, nodeID)
	if err != nil {
		return nil, errorTable.Status(ctx, log.With(attrNode, nodeID), err)
	}
	return &berthv1.GetBundleVersionsResponse{Current: v.current, Pending: v.pending, Next: v.next}, nil
}

// PutBundle stores an upload of the calling node, held for approval when
// the service, the node's policy or the node itself asks for it.
func (s *Service) PutBundle(ctx context.Context, req *berthv1.PutBundleRequest) (_ *berthv1.PutBundleResponse, err error) {
	defer func() { s.metrics.BundlePut("node", metrics.Result(err)) }()
	log := rpc.Logger(ctx, s.log)
	nodeID, err := s.node(ctx)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log = log.With(attrNode, nodeID)
	up, err := s.validateUpload(req.GetExpectedVersion(), req.GetSealed())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	if _, err := s.checkSignature(ctx, nodeID, up, signer{kind: bundle.SignerNode, nodeKey: caller(ctx).Leaf.PublicKey}); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	hold, err := s.mustHold(ctx, nodeID, req.GetRequireApproval())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	b, err := s.put(ctx, log, nodeID, caller(ctx).String(), up, bundlestore.PutOptions{RequireApproval: hold})
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.PutBundleResponse{Info: infoToProto(b.Meta, signedBy(b.Sealed))}, nil
}

// mustHold decides whether a node's upload waits for approval. The node
// may ask for a hold but never lift one.
func (s *Service) mustHold(ctx context.Context, nodeID string, asked bool) (bool, error) {
	if asked {
		return true, nil
	}
	required, err := s.approvalPolicy(ctx)
	if err != nil {
		return false, err
	}
	if required {
		return true, nil
	}
	if s.approvalRequired == nil {
		return false, nil
	}
	hold, err := s.approvalRequired(ctx, nodeID)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errPolicyUnavailable, err)
	}
	return hold, nil
}

// approvalPolicy reports whether every node upload waits for approval: the
// policy an administrator stored, else the configured default. It is read
// on each upload, so that a change applies on every replica at once.
func (s *Service) approvalPolicy(ctx context.Context) (bool, error) {
	p, err := s.store.ApprovalPolicy(ctx)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errPolicyUnavailable, err)
	}
	switch p.Approval {
	case approvalRequired:
		return true, nil
	case approvalAuto:
		return false, nil
	}
	return s.requireApproval, nil
}

// put stores a validated upload for nodeID, written by author.
//
// The signature was checked against the version number the store would
// give the next write, read before the write. The store compares that
// number inside the write's transaction (PutOptions.Version), so a write
// that comes in between (another write, a reset) makes this one fail with
// a versionError rather than land under a number it is not signed for.
func (s *Service) put(ctx context.Context, log *slog.Logger, nodeID, author string, up upload, opts bundlestore.PutOptions) (bundlestore.Bundle, error) {
	opts.Keep, opts.Version = s.keep, up.parsed.Signature.Version
	in := bundlestore.Bundle{
		Meta: bundlestore.Meta{
			Digest:    up.digest,
			KEMID:     up.parsed.Header.KEM,
			Author:    author,
			CreatedAt: s.clock.Now(),
		},
		Sealed: up.sealed,
	}
	b, err := s.store.Put(ctx, nodeID, up.expected, in, opts)
	var ve *bundlestore.VersionError
	if errors.As(err, &ve) {
		return bundlestore.Bundle{}, versionError{signed: ve.Version, next: ve.Next}
	}
	if err != nil {
		return bundlestore.Bundle{}, err
	}
	log.Info("bundle stored", attrAuthor, author, attrVersion, b.Version, attrState, string(b.State),
		attrSize, b.Size, attrDigest, b.Digest, attrSigned, up.parsed.SignedBy())
	return b, nil
}
