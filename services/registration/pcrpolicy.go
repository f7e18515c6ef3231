package registration

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// maxPolicyDigests bounds a policy: a fleet has a few images, each with a
// few firmware versions.
const maxPolicyDigests = 1000

var pcrDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// SetPCRPolicy sets a label's allowed boot digests.
func (s *Service) SetPCRPolicy(ctx context.Context, req *berthv1.SetPCRPolicyRequest) (*berthv1.SetPCRPolicyResponse, error) {
	log := rpc.Logger(ctx, s.log)
	p, err := validatePCRPolicy(req.GetPolicy())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	p.UpdatedAt = s.clock.Now()
	p, err = s.store.SetPCRPolicy(ctx, p, caller(ctx).String())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	s.forgetPolicies()
	log.Info("PCR policy set", "label", p.LabelKey+"="+p.LabelValue, "digests", len(p.Digests), "enforce", p.Enforce)
	return &berthv1.SetPCRPolicyResponse{Policy: pcrPolicyToProto(p)}, nil
}

// ListPCRPolicies lists the PCR policies.
func (s *Service) ListPCRPolicies(ctx context.Context, _ *berthv1.ListPCRPoliciesRequest) (*berthv1.ListPCRPoliciesResponse, error) {
	log := rpc.Logger(ctx, s.log)
	ps, err := s.store.ListPCRPolicies(ctx)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	out := &berthv1.ListPCRPoliciesResponse{}
	for _, p := range ps {
		out.Policies = append(out.Policies, pcrPolicyToProto(p))
	}
	return out, nil
}

// DeletePCRPolicy removes a label's PCR policy.
func (s *Service) DeletePCRPolicy(ctx context.Context, req *berthv1.DeletePCRPolicyRequest) (*berthv1.DeletePCRPolicyResponse, error) {
	log := rpc.Logger(ctx, s.log)
	key, value, err := parsePolicyLabel("label", req.GetLabel())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	err = s.store.DeletePCRPolicy(ctx, key, value, s.clock.Now(), caller(ctx).String())
	if errors.Is(err, regstore.ErrNotFound) {
		err = errPolicyNotFound
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	s.forgetPolicies()
	log.Info("PCR policy deleted", "label", key+"="+value)
	return &berthv1.DeletePCRPolicyResponse{}, nil
}

func validatePCRPolicy(in *berthv1.PCRPolicy) (regstore.PCRPolicy, error) {
	key, value, err := parsePolicyLabel("policy.label", in.GetLabel())
	if err != nil {
		return regstore.PCRPolicy{}, err
	}
	ds := in.GetDigests()
	if len(ds) == 0 || len(ds) > maxPolicyDigests {
		return regstore.PCRPolicy{}, rpcerr.Invalid("policy.digests", rulePolicyDigests)
	}
	seen := make(map[string]bool, len(ds))
	for _, d := range ds {
		if !pcrDigestRE.MatchString(d) {
			return regstore.PCRPolicy{}, rpcerr.Invalid("policy.digests", rulePolicyDigest)
		}
		if seen[d] {
			return regstore.PCRPolicy{}, rpcerr.Invalid("policy.digests", rulePolicyDigestTwice)
		}
		seen[d] = true
	}
	return regstore.PCRPolicy{LabelKey: key, LabelValue: value, Digests: ds, Enforce: in.GetEnforce()}, nil
}

// parsePolicyLabel splits "key=value" at its first '=' (a key has none; a
// value may) and checks both as node labels are checked.
func parsePolicyLabel(field, label string) (key, value string, err error) {
	key, value, ok := strings.Cut(label, "=")
	if !ok || !labelKeyRE.MatchString(key) || value == "" || !labelValRE.MatchString(value) {
		return "", "", rpcerr.Invalid(field, rulePolicyLabel)
	}
	return key, value, nil
}
