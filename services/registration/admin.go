package registration

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/revocation"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ListNodes lists nodes in pages, filtered by status and labels.
func (s *Service) ListNodes(ctx context.Context, req *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
	log := rpc.Logger(ctx, s.log)
	f, err := validateListNodes(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	limit := f.Limit
	f.Limit++ // one more tells whether another page follows
	nodes, err := s.store.ListNodes(ctx, f)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	resp := &berthv1.ListNodesResponse{}
	if len(nodes) > limit {
		nodes = nodes[:limit]
		resp.NextPageToken = ident.PageToken(nodes[limit-1].ID)
	}
	if resp.Nodes, err = s.nodesToProto(ctx, nodes); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return resp, nil
}

func validateListNodes(req *berthv1.ListNodesRequest) (regstore.NodeFilter, error) {
	var f regstore.NodeFilter
	if req.GetPageSize() < 0 || req.GetPageSize() > maxPageSize {
		return f, rpcerr.Invalid("page_size", rulePageSize)
	}
	f.Limit = int(req.GetPageSize())
	if f.Limit == 0 {
		f.Limit = defaultPageSize
	}
	if req.GetStatus() != berthv1.NodeStatus_NODE_STATUS_UNSPECIFIED {
		st, ok := statusFromProto(req.GetStatus())
		if !ok {
			return f, rpcerr.Invalid("status", ruleStatus)
		}
		f.Status = st
	}
	if err := validateLabels("labels", req.GetLabels()); err != nil {
		return f, err
	}
	f.Labels = req.GetLabels()
	after, err := decodePageToken(req.GetPageToken())
	f.AfterID = after
	return f, err
}

// GetNode returns one node.
func (s *Service) GetNode(ctx context.Context, req *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
	log := rpc.Logger(ctx, s.log)
	n, err := s.getNode(ctx, req.GetId())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	out, err := s.nodesToProto(ctx, []regstore.Node{n})
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.GetNodeResponse{Node: out[0]}, nil
}

func (s *Service) getNode(ctx context.Context, id string) (regstore.Node, error) {
	if err := validateNodeID(id); err != nil {
		return regstore.Node{}, err
	}
	n, err := s.store.GetNode(ctx, id)
	if errors.Is(err, regstore.ErrNotFound) {
		return n, errNodeNotFound
	}
	return n, err
}

// setStatus moves a node between statuses, with the reason given for it
// ("" for none).
func (s *Service) setStatus(ctx context.Context, id string, from []regstore.Status, to regstore.Status, reason string) (*berthv1.Node, error) {
	if err := validateNodeID(id); err != nil {
		return nil, err
	}
	n, err := s.store.SetStatus(ctx, id, from, to, s.clock.Now(), caller(ctx).String(), reason)
	if errors.Is(err, regstore.ErrNotFound) {
		return nil, errNodeNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("set node %s %s: %w", id, to, err)
	}
	s.log.Info("node status changed", "node", id, "status", to)
	return nodeToProto(n), nil
}

// ApproveNode approves a pending or rejected node. Its certificate is issued
// when it next calls in, or by the reconciler (Reconcile) if it does not
// call first, so approval never waits on the CA.
func (s *Service) ApproveNode(ctx context.Context, req *berthv1.ApproveNodeRequest) (*berthv1.ApproveNodeResponse, error) {
	log := rpc.Logger(ctx, s.log)
	n, err := s.setStatus(ctx, req.GetId(), []regstore.Status{regstore.StatusPending, regstore.StatusRejected, regstore.StatusApproved}, regstore.StatusApproved, "")
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.ApproveNodeResponse{Node: n}, nil
}

// RejectNode rejects a pending node, recording the reason given with it;
// rejecting a rejected node again changes the reason.
func (s *Service) RejectNode(ctx context.Context, req *berthv1.RejectNodeRequest) (*berthv1.RejectNodeResponse, error) {
	log := rpc.Logger(ctx, s.log)
	reason := strings.TrimSpace(req.GetReason())
	if len(reason) > maxDescription || !printable(reason) {
		return nil, errorTable.Status(ctx, log, rpcerr.Invalid("reason", ruleText))
	}
	n, err := s.setStatus(ctx, req.GetId(), []regstore.Status{regstore.StatusPending, regstore.StatusRejected}, regstore.StatusRejected, reason)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.RejectNodeResponse{Node: n}, nil
}

// RevokeNode denies the node first, then revokes every certificate the CA
// ever issued to it. If the CA is unreachable the call fails and can
// simply be repeated; a certificate still being issued meanwhile is
// revoked when its issuance completes (complete).
func (s *Service) RevokeNode(ctx context.Context, req *berthv1.RevokeNodeRequest) (*berthv1.RevokeNodeResponse, error) {
	log := rpc.Logger(ctx, s.log)
	if len(req.GetReason()) > maxDescription || !printable(req.GetReason()) {
		return nil, errorTable.Status(ctx, log, rpcerr.Invalid("reason", ruleText))
	}
	// The CA's revocation list tells a replaced board's certificate from a
	// revoked node by this reason; an admin must not be able to pick it.
	if strings.EqualFold(strings.TrimSpace(req.GetReason()), revocation.ReasonSuperseded) {
		return nil, errorTable.Status(ctx, log, rpcerr.Invalid("reason", ruleReasonReserved))
	}
	all := []regstore.Status{regstore.StatusPending, regstore.StatusApproved, regstore.StatusRejected, regstore.StatusRevoked}
	n, err := s.setStatus(ctx, req.GetId(), all, regstore.StatusRevoked, req.GetReason())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	if err := s.ca.RevokeNode(ctx, n.GetId(), nil, req.GetReason(), true); err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("revoke certificates of node %s: %w", n.GetId(), err))
	}
	return &berthv1.RevokeNodeResponse{Node: n}, nil
}

// DeleteNode revokes every certificate of the node and forgets the node.
func (s *Service) DeleteNode(ctx context.Context, req *berthv1.DeleteNodeRequest) (*berthv1.DeleteNodeResponse, error) {
	log := rpc.Logger(ctx, s.log)
	n, err := s.getNode(ctx, req.GetId())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	if err := s.ca.RevokeNode(ctx, n.ID, nil, reasonDeleted, true); err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("revoke certificates of node %s: %w", n.ID, err))
	}
	if s.bundles != nil {
		if err := s.bundles.Delete(ctx, n.ID); err != nil {
			return nil, errorTable.Status(ctx, log, fmt.Errorf("delete bundles of node %s: %w", n.ID, err))
		}
	}
	if err := s.store.DeleteNode(ctx, n.ID, s.clock.Now(), caller(ctx).String()); err != nil {
		if errors.Is(err, regstore.ErrNotFound) {
			err = errNodeNotFound
		}
		return nil, errorTable.Status(ctx, log, err)
	}
	// Again, for a certificate whose issuance was in flight: its completion
	// revokes it too, once it finds the node gone.
	if err := s.ca.RevokeNode(ctx, n.ID, nil, reasonDeleted, true); err != nil {
		log.Warn("revoking the certificates of a deleted node again failed", "node", n.ID, "error", err)
	}
	s.log.Info("node deleted", "node", n.ID)
	return &berthv1.DeleteNodeResponse{}, nil
}

// ListCertificates reads the CA's issued-certificate log for an admin, so
// that one address serves the whole admin API. A node the CA never issued
// to, registered or not, has an empty list.
func (s *Service) ListCertificates(ctx context.Context, req *berthv1.ListCertificatesRequest) (*berthv1.ListCertificatesResponse, error) {
	log := rpc.Logger(ctx, s.log)
	if id := req.GetNodeId(); id != "" {
		if ident.NodeID(id) != nil {
			return nil, errorTable.Status(ctx, log, rpcerr.Invalid("node_id", ruleNodeID))
		}
	}
	certs, err := s.ca.ListIssued(ctx, req.GetNodeId())
	if err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("list issued certificates: %w", err))
	}
	return &berthv1.ListCertificatesResponse{Certificates: certs}, nil
}

// AllowReplacement lets new hardware keys take over this node once.
func (s *Service) AllowReplacement(ctx context.Context, req *berthv1.AllowReplacementRequest) (*berthv1.AllowReplacementResponse, error) {
	log := rpc.Logger(ctx, s.log)
	if err := validateNodeID(req.GetId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	n, err := s.store.AllowReplacement(ctx, req.GetId(), s.clock.Now(), caller(ctx).String())
	if errors.Is(err, regstore.ErrNotFound) {
		err = errNodeNotFound
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.AllowReplacementResponse{Node: nodeToProto(n)}, nil
}

// LabelNode sets and removes a node's labels, recording who did.
func (s *Service) LabelNode(ctx context.Context, req *berthv1.LabelNodeRequest) (*berthv1.LabelNodeResponse, error) {
	log := rpc.Logger(ctx, s.log)
	if err := validateLabelChange(req); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	n, err := s.store.SetLabels(ctx, req.GetId(), req.GetSet(), req.GetRemove(), maxLabels, s.clock.Now(), caller(ctx).String())
	if errors.Is(err, regstore.ErrNotFound) {
		err = errNodeNotFound
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log.Info("node labels changed", "node", n.ID, "set", req.GetSet(), "remove", req.GetRemove())
	return &berthv1.LabelNodeResponse{Node: nodeToProto(n)}, nil
}

// CreateToken makes a bootstrap token; only the hash of its secret is kept.
func (s *Service) CreateToken(ctx context.Context, req *berthv1.CreateTokenRequest) (*berthv1.CreateTokenResponse, error) {
	log := rpc.Logger(ctx, s.log)
	t, err := s.newToken(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	secret := randomLower(tokenSecretLen)
	sum := sha256.Sum256([]byte(secret))
	t.SecretHash = sum[:]
	t.CreatedBy = caller(ctx).String()
	if err := s.store.CreateToken(ctx, t); err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("create token: %w", err))
	}
	s.log.Info("token created", "token", t.ID, "uses", t.UsesLeft, "auto_approve", t.AutoApprove, "expires_at", t.ExpiresAt,
		"min_identity", t.MinIdentity, "allow_site_secret", t.AllowSiteSecret)
	return &berthv1.CreateTokenResponse{Token: tokenToProto(t), SecretToken: t.ID + "." + secret}, nil
}

func (s *Service) newToken(req *berthv1.CreateTokenRequest) (regstore.Token, error) {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	switch {
	case req.GetTtlSeconds() < 0 || req.GetTtlSeconds() > maxTokenTTLHours*3600:
		return regstore.Token{}, rpcerr.Invalid("ttl_seconds", ruleTTL)
	case ttl == 0:
		ttl = 24 * time.Hour
	}
	uses := int(req.GetUses())
	switch {
	case uses < 0 || uses > maxTokenUses:
		return regstore.Token{}, rpcerr.Invalid("uses", ruleUses)
	case uses == 0:
		uses = 1
	}
	if err := validateLabels("labels", req.GetLabels()); err != nil {
		return regstore.Token{}, err
	}
	if len(req.GetDescription()) > maxDescription || !printable(req.GetDescription()) {
		return regstore.Token{}, rpcerr.Invalid("description", ruleText)
	}
	minID, err := validateTokenIdentity(req)
	if err != nil {
		return regstore.Token{}, err
	}
	now := s.clock.Now()
	return regstore.Token{
		ID:          randomLower(tokenIDLen),
		ExpiresAt:   now.Add(ttl),
		UsesLeft:    uses,
		AutoApprove: req.GetAutoApprove(),
		Labels:      req.GetLabels(),
		Description: req.GetDescription(),
		CreatedAt:   now,

		MinIdentity:     string(minID),
		AllowSiteSecret: req.GetAllowSiteSecret(),
	}, nil
}

// ListTokens lists tokens without their secrets.
func (s *Service) ListTokens(ctx context.Context, req *berthv1.ListTokensRequest) (*berthv1.ListTokensResponse, error) {
	log := rpc.Logger(ctx, s.log)
	toks, err := s.store.ListTokens(ctx, req.GetIncludeInactive(), s.clock.Now())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	resp := &berthv1.ListTokensResponse{}
	for _, t := range toks {
		resp.Tokens = append(resp.Tokens, tokenToProto(t))
	}
	return resp, nil
}

// RevokeToken makes a token unusable.
func (s *Service) RevokeToken(ctx context.Context, req *berthv1.RevokeTokenRequest) (*berthv1.RevokeTokenResponse, error) {
	log := rpc.Logger(ctx, s.log)
	if err := validateTokenID(req.GetId()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	t, err := s.store.RevokeToken(ctx, req.GetId(), s.clock.Now(), caller(ctx).String())
	s.bootstrap.drop(req.GetId())
	if errors.Is(err, regstore.ErrNotFound) {
		err = errTokenNotFound
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	s.log.Info("token revoked", "token", t.ID)
	return &berthv1.RevokeTokenResponse{Token: tokenToProto(t)}, nil
}

// randomLower returns n lower-case base32 characters from crypto/rand.
func randomLower(n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(strings.ToLower(rand.Text()))
	}
	return b.String()[:n]
}
