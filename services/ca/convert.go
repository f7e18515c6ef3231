package ca

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/store/castore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func issuedToProto(c castore.Issued) *berthv1.IssuedCertificate {
	out := &berthv1.IssuedCertificate{
		Serial:    c.Serial,
		NodeId:    c.NodeID,
		NotBefore: timestamppb.New(c.NotBefore),
		NotAfter:  timestamppb.New(c.NotAfter),
		IssuedAt:  timestamppb.New(c.IssuedAt),
		RequestId: c.RequestID,
	}
	if r := c.Revocation; r != nil {
		out.Revoked, out.RevocationReason, out.RevokedAt = true, r.Reason, timestamppb.New(r.RevokedAt)
	}
	return out
}

func revocationToProto(r castore.Revocation) *berthv1.Revocation {
	return &berthv1.Revocation{
		Serial:      r.Serial,
		NodeId:      r.NodeID,
		Reason:      r.Reason,
		RevokedAt:   timestamppb.New(r.RevokedAt),
		NodeRevoked: r.Node,
	}
}
