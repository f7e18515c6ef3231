package registration

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// GRPCCA reaches the CA service over its long-lived mTLS connection.
type GRPCCA struct {
	client berthv1.CertificateAuthorityServiceClient
}

// NewGRPCCA wraps a connection to the CA service.
func NewGRPCCA(conn grpc.ClientConnInterface) *GRPCCA {
	return &GRPCCA{client: berthv1.NewCertificateAuthorityServiceClient(conn)}
}

// Sign asks the CA for a node certificate, once per request ID.
func (c *GRPCCA) Sign(ctx context.Context, requestID, nodeID, hostname string, csr []byte) (regstore.Cert, error) {
	resp, err := c.client.Sign(ctx, &berthv1.SignRequest{RequestId: requestID, NodeId: nodeID, Hostname: hostname, Csr: csr})
	if err != nil {
		return regstore.Cert{}, caError("sign", err)
	}
	ic := resp.GetCertificate()
	if len(resp.GetCertificateChain()) == 0 || ic == nil {
		return regstore.Cert{}, errors.New("CA returned an empty certificate")
	}
	return regstore.Cert{
		Serial:    ic.GetSerial(),
		NotBefore: ic.GetNotBefore().AsTime(),
		NotAfter:  ic.GetNotAfter().AsTime(),
		Chain:     resp.GetCertificateChain(),
	}, nil
}

// Revoke asks the CA to revoke a certificate.
func (c *GRPCCA) Revoke(ctx context.Context, serial, reason string) error {
	_, err := c.client.Revoke(ctx, &berthv1.RevokeRequest{Serial: serial, Reason: reason})
	if err != nil {
		return caError("revoke", err)
	}
	return nil
}

// RevokeNode asks the CA to revoke every certificate of a node but those
// of the key keep.
func (c *GRPCCA) RevokeNode(ctx context.Context, nodeID string, keep []byte, reason string, nodeRevoked bool) error {
	_, err := c.client.RevokeNodeCertificates(ctx, &berthv1.RevokeNodeCertificatesRequest{
		NodeId: nodeID, Reason: reason, KeepKeySha256: keep, NodeRevoked: nodeRevoked,
	})
	if err != nil {
		return caError("revoke node certificates", err)
	}
	return nil
}

// ListIssued reads the CA's issued-certificate log.
func (c *GRPCCA) ListIssued(ctx context.Context, nodeID string) ([]*berthv1.IssuedCertificate, error) {
	resp, err := c.client.ListIssued(ctx, &berthv1.ListIssuedRequest{NodeId: nodeID})
	if err != nil {
		return nil, caError("list issued certificates", err)
	}
	return resp.GetCertificates(), nil
}

// caError marks a CA outage as such, so nodes are told to retry rather than
// being handed an internal error.
func caError(op string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		// Down, slow, overloaded or busy: waiting can change it.
		return fmt.Errorf("CA %s: %w: %v", op, errCAUnavailable, err)
	}
	return fmt.Errorf("CA %s: %w", op, err)
}
