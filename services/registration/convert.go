package registration

import (
	"encoding/hex"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

var statusNames = map[regstore.Status]berthv1.NodeStatus{
	regstore.StatusPending:  berthv1.NodeStatus_NODE_STATUS_PENDING,
	regstore.StatusApproved: berthv1.NodeStatus_NODE_STATUS_APPROVED,
	regstore.StatusRejected: berthv1.NodeStatus_NODE_STATUS_REJECTED,
	regstore.StatusRevoked:  berthv1.NodeStatus_NODE_STATUS_REVOKED,
}

func statusToProto(s regstore.Status) berthv1.NodeStatus { return statusNames[s] }

func statusFromProto(p berthv1.NodeStatus) (regstore.Status, bool) {
	for s, v := range statusNames {
		if v == p {
			return s, true
		}
	}
	return "", false
}

func nodeToProto(n regstore.Node) *berthv1.Node {
	out := &berthv1.Node{
		Id:     n.ID,
		Status: statusToProto(n.Status),
		Facts: &berthv1.MachineFacts{
			HardwareUuid: n.HardwareUUID,
			Macs:         n.MACs,
			Hostname:     n.Hostname,
			Serial:       n.Serial,
		},
		Labels:             n.Labels,
		KeySha256:          hex.EncodeToString(n.KeySHA256),
		CertificatesIssued: n.CertificatesIssued,
		CreatedAt:          timestamppb.New(n.CreatedAt),
		UpdatedAt:          timestamppb.New(n.UpdatedAt),
		ReplacementAllowed: n.ReplacementAllowed,
		TokenId:            n.TokenID,
		BundleKey:          &berthv1.BundleKey{KemId: uint32(n.BundleKEM), PublicKey: n.BundleKey},
		IdentitySource:     n.IdentitySource,
		EkHash:             n.EKHash,
		EkCertificate:      n.EKCertificate,
	}
	out.BootPcrDigest, out.BootPolicyViolation = n.BootPCRDigest, n.BootPolicyViolation
	out.StatusReason = n.StatusReason
	if !n.BootPCRDigestAt.IsZero() {
		out.BootPcrDigestAt = timestamppb.New(n.BootPCRDigestAt)
	}
	if n.Cert != nil {
		out.CertSerial = n.Cert.Serial
		out.CertNotBefore = timestamppb.New(n.Cert.NotBefore)
		out.CertNotAfter = timestamppb.New(n.Cert.NotAfter)
	}
	return out
}

func tokenToProto(t regstore.Token) *berthv1.Token {
	return &berthv1.Token{
		Id:          t.ID,
		ExpiresAt:   timestamppb.New(t.ExpiresAt),
		UsesLeft:    int32(t.UsesLeft),
		AutoApprove: t.AutoApprove,
		Labels:      t.Labels,
		CreatedAt:   timestamppb.New(t.CreatedAt),
		Revoked:     t.Revoked,
		Description: t.Description,

		MinIdentity:     t.MinIdentity,
		AllowSiteSecret: t.AllowSiteSecret,
	}
}

func pcrPolicyToProto(p regstore.PCRPolicy) *berthv1.PCRPolicy {
	return &berthv1.PCRPolicy{
		Label:     p.LabelKey + "=" + p.LabelValue,
		Digests:   p.Digests,
		Enforce:   p.Enforce,
		UpdatedAt: timestamppb.New(p.UpdatedAt),
	}
}
