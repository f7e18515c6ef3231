package bundles

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The approval policies, and the word that clears a stored one.
const (
	approvalRequired = "required"
	approvalAuto     = "auto"
	approvalDefault  = "default"
)

// GetBundleSettings returns the approval policy in force.
func (a adminServer) GetBundleSettings(ctx context.Context, _ *berthv1.GetBundleSettingsRequest) (*berthv1.GetBundleSettingsResponse, error) {
	p, err := a.s.store.ApprovalPolicy(ctx)
	if err != nil {
		return nil, errorTable.Status(ctx, rpc.Logger(ctx, a.s.log), err)
	}
	return &berthv1.GetBundleSettingsResponse{Settings: a.s.settingsToProto(p)}, nil
}

// SetBundleSettings stores the approval policy, or clears it ("default").
func (a adminServer) SetBundleSettings(ctx context.Context, req *berthv1.SetBundleSettingsRequest) (*berthv1.SetBundleSettingsResponse, error) {
	log := rpc.Logger(ctx, a.s.log)
	approval := req.GetApproval()
	switch approval {
	case approvalRequired, approvalAuto:
	case approvalDefault:
		approval = ""
	default:
		return nil, errorTable.Status(ctx, log, rpcerr.Invalid("approval", ruleApproval))
	}
	actor := caller(ctx).String()
	p, err := a.s.store.SetApprovalPolicy(ctx, approval, actor, a.s.clock.Now())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log.Info("bundle approval policy set", "approval", req.GetApproval(), attrAuthor, actor)
	return &berthv1.SetBundleSettingsResponse{Settings: a.s.settingsToProto(p)}, nil
}

func (s *Service) settingsToProto(p bundlestore.Policy) *berthv1.BundleSettings {
	def := approvalAuto
	if s.requireApproval {
		def = approvalRequired
	}
	out := &berthv1.BundleSettings{Approval: def, DefaultApproval: def}
	if p.Approval != "" {
		out.Approval, out.ApprovalSet, out.UpdatedBy, out.UpdatedAt = p.Approval, true, p.UpdatedBy, timestamppb.New(p.UpdatedAt)
	}
	return out
}
