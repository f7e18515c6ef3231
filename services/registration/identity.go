package registration

import (
	"context"
	"fmt"
	"slices"

	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// validateIdentitySource parses a RegisterRequest's identity_source. It is
// required: a node that does not say how it holds its key cannot be ranked.
func validateIdentitySource(s string) (keys.Assurance, error) {
	if s == "" {
		return "", rpcerr.Invalid("identity_source", ruleIdentitySource)
	}
	a, err := keys.ParseAssurance(s)
	if err != nil {
		return "", rpcerr.Invalid("identity_source", ruleIdentitySource)
	}
	return a, nil
}

// validateTokenIdentity checks a new token's identity policy.
func validateTokenIdentity(req *berthv1.CreateTokenRequest) (keys.Assurance, error) {
	var min keys.Assurance
	if m := req.GetMinIdentity(); m != "" {
		a, err := keys.ParseAssurance(m)
		if err != nil {
			return "", rpcerr.Invalid("min_identity", ruleIdentitySource)
		}
		min = a
	}
	if req.GetAllowSiteSecret() {
		if !req.GetAutoApprove() {
			return "", rpcerr.Invalid("allow_site_secret", ruleAllowSiteSecretAuto)
		}
		if min != "" && min != keys.AssuranceSiteSecret {
			return "", rpcerr.Invalid("allow_site_secret", ruleAllowSiteSecretMin)
		}
	}
	return min, nil
}

// approval decides the status of a node registering with tok that holds its
// key as src. A token without auto-approve leaves every node pending; with
// it, a node is approved unless its identity source is below the token's
// minimum, or is a site secret the token does not explicitly allow. held
// says why an auto-approve token did not approve.
func approval(tok regstore.Token, src keys.Assurance) (status regstore.Status, held string) {
	if !tok.AutoApprove {
		return regstore.StatusPending, ""
	}
	if min := keys.Assurance(tok.MinIdentity); min != "" && !src.AtLeast(min) {
		return regstore.StatusPending, fmt.Sprintf("identity source %s is below the token's minimum %s", src, min)
	}
	if src == keys.AssuranceSiteSecret && !tok.AllowSiteSecret {
		return regstore.StatusPending, "site-secret identities are auto-approved only by a token created with --allow-site-secret"
	}
	return regstore.StatusApproved, ""
}

// duplicates finds, for each of nodes, the other nodes that report its
// hardware UUID or one of its MACs: one store query for them all.
func (s *Service) duplicates(ctx context.Context, nodes []regstore.Node) (map[string][]string, error) {
	var uuids, macs []string
	for _, n := range nodes {
		uuids = append(uuids, n.HardwareUUID)
		macs = append(macs, n.MACs...)
	}
	matches, err := s.store.NodesByHardware(ctx, uuids, macs)
	if err != nil {
		return nil, fmt.Errorf("look up duplicate hardware: %w", err)
	}
	out := map[string][]string{}
	for _, n := range nodes {
		for _, m := range matches {
			if m.ID != n.ID && sharesHardware(n, m) {
				out[n.ID] = append(out[n.ID], m.ID)
			}
		}
	}
	return out, nil
}

// sharesHardware reports whether a and b report the same hardware UUID or a
// common MAC. Empty values are unknown, never shared.
func sharesHardware(a, b regstore.Node) bool {
	if a.HardwareUUID != "" && a.HardwareUUID == b.HardwareUUID {
		return true
	}
	for _, m := range a.MACs {
		if m != "" && slices.Contains(b.MACs, m) {
			return true
		}
	}
	return false
}

// nodesToProto converts nodes for GetNode and ListNodes, with their
// duplicates.
func (s *Service) nodesToProto(ctx context.Context, nodes []regstore.Node) ([]*berthv1.Node, error) {
	dups, err := s.duplicates(ctx, nodes)
	if err != nil {
		return nil, err
	}
	var hashes []string
	for _, n := range nodes {
		hashes = append(hashes, n.EKHash)
	}
	labels, err := s.store.EKLabels(ctx, hashes)
	if err != nil {
		return nil, err
	}
	out := make([]*berthv1.Node, len(nodes))
	for i, n := range nodes {
		out[i] = nodeToProto(n)
		out[i].DuplicateOf = dups[n.ID]
		out[i].EkLabel = labels[n.EKHash]
	}
	return out, nil
}
