package bundles

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

var stateNames = map[bundlestore.State]berthv1.BundleState{
	bundlestore.StateApproved:   berthv1.BundleState_BUNDLE_STATE_APPROVED,
	bundlestore.StatePending:    berthv1.BundleState_BUNDLE_STATE_PENDING,
	bundlestore.StateSuperseded: berthv1.BundleState_BUNDLE_STATE_SUPERSEDED,
	bundlestore.StateReset:      berthv1.BundleState_BUNDLE_STATE_RESET,
}

func infoToProto(m bundlestore.Meta) *berthv1.BundleInfo {
	return &berthv1.BundleInfo{
		NodeId:    m.NodeID,
		Version:   m.Version,
		State:     stateNames[m.State],
		Size:      m.Size,
		Sha256:    m.Digest,
		KemId:     uint32(m.KEMID),
		Author:    m.Author,
		CreatedAt: timestamppb.New(m.CreatedAt),
	}
}

func sealedToProto(b bundlestore.Bundle) *berthv1.SealedBundle {
	return &berthv1.SealedBundle{Info: infoToProto(b.Meta), Sealed: b.Sealed}
}
