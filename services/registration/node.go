package registration

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// nodeServer serves berth.v1.RegistrationService, the nodes' side, with the
// Service's core. It is a type of its own so that the Service's Register
// puts it on a server, as every service's does, while the RPC of that name
// lives here.
type nodeServer struct {
	berthv1.UnsafeRegistrationServiceServer
	s *Service
}

var _ berthv1.RegistrationServiceServer = nodeServer{}

// now is the server's time as answers carry it, taken as late as possible
// so that the agent's round-trip correction covers the rest.
func (n nodeServer) now() *timestamppb.Timestamp { return timestamppb.New(n.s.clock.Now()) }

// Register enrols a node, or returns the existing one for a known key.
func (n nodeServer) Register(ctx context.Context, req *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
	log := rpc.Logger(ctx, n.s.log)
	id := caller(ctx)
	in, err := validateRegister(req, id)
	if err == nil {
		err = validateBootBeat(req.GetBoot())
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	cache, cached := n.s.bundles.(newNodes)
	var epoch uint64
	if cached {
		epoch, cached = cache.Epoch()
	}
	reg, err := n.s.register(ctx, id, in)
	if err != nil {
		return nil, n.failed(ctx, log, err, func(r string) { n.s.metrics.Registration(r) })
	}
	if reg.challenge != nil {
		n.s.metrics.Registration(metrics.ResultChallenge)
		return &berthv1.RegisterResponse{TpmChallenge: reg.challenge, ServerTime: n.now()}, nil
	}
	// An approved node with an attestation key shows its boot first; the
	// quote goes to Resume, which returns the credentials (and completes
	// the issuance opened here).
	node, quote, err := n.s.bootCheck(ctx, reg.node, nil)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	if quote != nil {
		return &berthv1.RegisterResponse{QuoteChallenge: quote, ServerTime: n.now()}, nil
	}
	bundle := withBundle
	if reg.made {
		bundle = noBundleYet
		if cached {
			cache.Created(reg.node.ID, reg.node.BundleKey, epoch)
		}
	}
	creds, err := n.s.credentials(ctx, node, reg.opened, bundle)
	if err != nil {
		return nil, n.failed(ctx, log, err, func(r string) { n.s.metrics.Registration(r) })
	}
	result := metrics.ResultPending
	if creds.GetStatus() == berthv1.NodeStatus_NODE_STATUS_APPROVED {
		result = metrics.ResultApproved
	}
	n.s.metrics.Registration(result)
	n.s.booted(ctx, creds, req.GetBoot())
	return &berthv1.RegisterResponse{Credentials: creds, ServerTime: n.now()}, nil
}

// Resume returns the current credentials of the calling node.
func (n nodeServer) Resume(ctx context.Context, req *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
	log := rpc.Logger(ctx, n.s.log)
	count := func(r string) { n.s.metrics.Resume("resume", r) }
	if err := validateBootBeat(req.GetBoot()); err != nil {
		return nil, n.failed(ctx, log, err, count)
	}
	node, err := n.s.resumeNode(ctx, caller(ctx))
	if err != nil {
		return nil, n.failed(ctx, log, err, count)
	}
	node, quote, err := n.s.bootCheck(ctx, node, req.GetQuote())
	if err != nil {
		return nil, n.failed(ctx, log, err, count)
	}
	if quote != nil {
		count(metrics.ResultChallenge)
		return &berthv1.ResumeResponse{QuoteChallenge: quote, ServerTime: n.now()}, nil
	}
	creds, err := n.s.credentials(ctx, node, regstore.Intent{}, withBundle)
	if err != nil {
		return nil, n.failed(ctx, log, err, count)
	}
	n.s.metrics.Resume("resume", resumed(creds))
	n.s.booted(ctx, creds, req.GetBoot())
	return &berthv1.ResumeResponse{Credentials: creds, ServerTime: n.now()}, nil
}

// Renew returns the calling node's credentials, renewed when due.
func (n nodeServer) Renew(ctx context.Context, _ *berthv1.RenewRequest) (*berthv1.RenewResponse, error) {
	log := rpc.Logger(ctx, n.s.log)
	// A running node renews without its bundle: it applies bundles at boot
	// only, and renewal must not fail because the bundle store is down.
	node, err := n.s.resumeNode(ctx, caller(ctx))
	if err == nil {
		err = n.s.renewCheck(ctx, node)
	}
	count := func(r string) { n.s.metrics.Resume("renew", r) }
	if err != nil {
		return nil, n.failed(ctx, log, err, count)
	}
	creds, err := n.s.credentials(ctx, node, regstore.Intent{}, withoutBundle)
	if err != nil {
		return nil, n.failed(ctx, log, err, count)
	}
	n.s.metrics.Resume("renew", resumed(creds))
	return &berthv1.RenewResponse{Credentials: creds, ServerTime: n.now()}, nil
}

// failed maps a node call's error to its status, and counts it.
func (n nodeServer) failed(ctx context.Context, log *slog.Logger, err error, count func(result string)) error {
	st := errorTable.Status(ctx, log, err)
	count(metrics.Result(st))
	return st
}

// resumed is the result of a Resume or Renew that succeeded.
func resumed(c *berthv1.NodeCredentials) string {
	if c.GetRenewed() {
		return metrics.ResultRenewed
	}
	return metrics.ResultOK
}
