package bundles

import (
	"context"
	"errors"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// adminServer serves berth.v1.BundleAdminService with the Service's store
// and settings. It is a type of its own because both gRPC services have a
// PutBundle, with different requests.
type adminServer struct {
	berthv1.UnsafeBundleAdminServiceServer
	s *Service
}

var _ berthv1.BundleAdminServiceServer = adminServer{}

// PutBundle writes a node's bundle for an administrator: approved at once,
// superseding an upload that waits for approval.
func (a adminServer) PutBundle(ctx context.Context, req *berthv1.BundleAdminServicePutBundleRequest) (_ *berthv1.BundleAdminServicePutBundleResponse, err error) {
	defer func() { a.s.metrics.BundlePut("admin", metrics.Result(err)) }()
	log := rpc.Logger(ctx, a.s.log)
	if err := validateNodeID(req.GetNodeId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log = log.With(attrNode, req.GetNodeId())
	up, err := a.s.validateUpload(req.GetExpectedVersion(), req.GetSealed())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	if err := a.s.notRevoked(ctx, req.GetNodeId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	v, err := a.s.checkSignature(ctx, req.GetNodeId(), up, signer{kind: bundle.SignerAdmin})
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	// Only the pending version the signature's number was read with is
	// superseded: a node upload that came since took the number, and this
	// write must be signed again.
	b, err := a.s.put(ctx, log, req.GetNodeId(), caller(ctx).String(), up, bundlestore.PutOptions{ReplacePending: v.pending != 0})
	if errors.Is(err, bundlestore.ErrPendingExists) {
		err = versionError{signed: up.parsed.Signature.Version, next: up.parsed.Signature.Version + 1}
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.BundleAdminServicePutBundleResponse{Info: infoToProto(b.Meta, signedBy(b.Sealed))}, nil
}

// GetBundleInfo describes a node's current and pending versions.
func (a adminServer) GetBundleInfo(ctx context.Context, req *berthv1.GetBundleInfoRequest) (*berthv1.GetBundleInfoResponse, error) {
	log := rpc.Logger(ctx, a.s.log)
	if err := validateNodeID(req.GetNodeId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	resp := &berthv1.GetBundleInfoResponse{}
	cur, err := a.s.store.Get(ctx, req.GetNodeId())
	switch {
	case err == nil:
		resp.Current = infoToProto(cur.Meta, signedBy(cur.Sealed))
	case !errors.Is(err, bundlestore.ErrNotFound):
		return nil, errorTable.Status(ctx, log, err)
	}
	pending, err := a.s.store.Pending(ctx, req.GetNodeId())
	switch {
	case err == nil:
		resp.Pending = infoToProto(pending.Meta, signedBy(pending.Sealed))
	case !errors.Is(err, bundlestore.ErrNotFound):
		return nil, errorTable.Status(ctx, log, err)
	}
	if resp.Current == nil && resp.Pending == nil {
		return nil, errorTable.Status(ctx, log, errNoBundle)
	}
	return resp, nil
}

// ListBundleHistory describes the versions kept, newest first.
func (a adminServer) ListBundleHistory(ctx context.Context, req *berthv1.ListBundleHistoryRequest) (*berthv1.ListBundleHistoryResponse, error) {
	log := rpc.Logger(ctx, a.s.log)
	if err := validateNodeID(req.GetNodeId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	h, err := a.s.store.History(ctx, req.GetNodeId())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	resp := &berthv1.ListBundleHistoryResponse{Versions: make([]*berthv1.BundleInfo, 0, len(h)), NextVersion: 1}
	for _, m := range h {
		resp.Versions = append(resp.Versions, infoToProto(m, ""))
		resp.NextVersion = max(resp.NextVersion, m.Version+1)
	}
	return resp, nil
}

// ApproveBundle makes a pending version current.
func (a adminServer) ApproveBundle(ctx context.Context, req *berthv1.ApproveBundleRequest) (*berthv1.ApproveBundleResponse, error) {
	log := rpc.Logger(ctx, a.s.log)
	if err := validateApprove(req); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log = log.With(attrNode, req.GetNodeId(), attrVersion, req.GetVersion())
	b, err := a.s.store.Approve(ctx, req.GetNodeId(), req.GetVersion(), caller(ctx).String(), a.s.clock.Now())
	if errors.Is(err, bundlestore.ErrNotFound) {
		err = errNoVersion
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log.Info("bundle approved", attrAuthor, caller(ctx).String(), attrDigest, b.Digest)
	return &berthv1.ApproveBundleResponse{Info: infoToProto(b.Meta, signedBy(b.Sealed))}, nil
}

// ResetBundle drops a node's current and pending versions.
func (a adminServer) ResetBundle(ctx context.Context, req *berthv1.ResetBundleRequest) (*berthv1.ResetBundleResponse, error) {
	log := rpc.Logger(ctx, a.s.log)
	if err := validateNodeID(req.GetNodeId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log = log.With(attrNode, req.GetNodeId())
	author := caller(ctx).String()
	m, err := a.s.store.Reset(ctx, req.GetNodeId(), author, a.s.clock.Now(), a.s.keep)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log.Info("bundle reset", attrAuthor, author, attrVersion, m.Version)
	return &berthv1.ResetBundleResponse{Info: infoToProto(m, "")}, nil
}

// GetSealedBundle returns a node's current bundle with its content.
func (a adminServer) GetSealedBundle(ctx context.Context, req *berthv1.GetSealedBundleRequest) (_ *berthv1.GetSealedBundleResponse, err error) {
	// Registration fetches a node's bundle to return it inside Resume.
	by := "admin"
	if caller(ctx).Kind == mtls.KindService {
		by = caller(ctx).Name
	}
	defer func() { a.s.metrics.BundleFetch(by, metrics.Result(err)) }()
	log := rpc.Logger(ctx, a.s.log)
	if err := validateNodeID(req.GetNodeId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	b, err := a.s.store.Get(ctx, req.GetNodeId())
	if err != nil {
		return nil, errorTable.Status(ctx, log.With(attrNode, req.GetNodeId()), err)
	}
	return &berthv1.GetSealedBundleResponse{Bundle: sealedToProto(b)}, nil
}

// DeleteBundles forgets a deleted node's bundles.
func (a adminServer) DeleteBundles(ctx context.Context, req *berthv1.DeleteBundlesRequest) (*berthv1.DeleteBundlesResponse, error) {
	log := rpc.Logger(ctx, a.s.log)
	if err := validateNodeID(req.GetNodeId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log = log.With(attrNode, req.GetNodeId())
	if err := a.s.store.Delete(ctx, req.GetNodeId(), caller(ctx).String(), a.s.clock.Now()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log.Info("bundles deleted", attrAuthor, caller(ctx).String())
	return &berthv1.DeleteBundlesResponse{}, nil
}

// notRevoked refuses a bundle for a revoked node: it can never fetch it.
// Unknown revocation state is Unavailable, not a guess.
func (s *Service) notRevoked(ctx context.Context, nodeID string) error {
	if s.nodeRevoked == nil {
		return nil
	}
	if s.revocationsKnown != nil {
		if err := s.revocationsKnown(); err != nil {
			return err
		}
	}
	if s.nodeRevoked(ctx, nodeID) {
		return errNodeRevoked
	}
	return nil
}
