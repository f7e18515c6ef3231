package bundles

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

var stateNames = map[bundlestore.State]berthv1.BundleState{
	bundlestore.StateApproved:   berthv1.BundleState_BUNDLE_STATE_APPROVED,
	bundlestore.StatePending:    berthv1.BundleState_BUNDLE_STATE_PENDING,
	bundlestore.StateSuperseded: berthv1.BundleState_BUNDLE_STATE_SUPERSEDED,
	bundlestore.StateReset:      berthv1.BundleState_BUNDLE_STATE_RESET,
}

// infoToProto describes a version; signedBy is who signed it (signedBy),
// or empty where the content is not at hand.
func infoToProto(m bundlestore.Meta, signedBy string) *berthv1.BundleInfo {
	return &berthv1.BundleInfo{
		NodeId:    m.NodeID,
		Version:   m.Version,
		State:     stateNames[m.State],
		Size:      m.Size,
		Sha256:    m.Digest,
		KemId:     uint32(m.KEMID),
		Author:    m.Author,
		CreatedAt: timestamppb.New(m.CreatedAt),
		SignedBy:  signedBy,
	}
}

// signedBy reads who signed a stored bundle from its bytes, without
// verifying anything (the write was verified): an admin's SPIFFE ID,
// "node", or "unsigned" for format version 1; empty without content.
func signedBy(sealed []byte) string {
	if len(sealed) == 0 {
		return ""
	}
	p, err := bundle.Parse(sealed)
	if err != nil {
		return "unknown"
	}
	return p.SignedBy()
}

func sealedToProto(b bundlestore.Bundle) *berthv1.SealedBundle {
	// No signed_by: this is the boot path (GetBundle, and GetSealedBundle
	// inside every Resume), and the node verifies the signer itself.
	return &berthv1.SealedBundle{Info: infoToProto(b.Meta, ""), Sealed: b.Sealed}
}
