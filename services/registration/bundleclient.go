package registration

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// GRPCBundles reaches the bundle store over the registration service's own
// long-lived mTLS connection, so that a booting node gets its sealed bundle
// in the Resume round trip instead of paying a second TLS handshake.
type GRPCBundles struct {
	client berthv1.BundleAdminServiceClient
}

// NewGRPCBundles wraps a connection to the bundle store.
func NewGRPCBundles(conn grpc.ClientConnInterface) *GRPCBundles {
	return &GRPCBundles{client: berthv1.NewBundleAdminServiceClient(conn)}
}

// Sealed returns the node's current sealed bundle, or nil when it has none.
func (b *GRPCBundles) Sealed(ctx context.Context, nodeID string, _ []byte) (*berthv1.SealedBundle, error) {
	resp, err := b.client.GetSealedBundle(ctx, &berthv1.GetSealedBundleRequest{NodeId: nodeID})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, bundlesError("get sealed bundle", err)
	}
	return resp.GetBundle(), nil
}

// Delete removes every bundle of a node.
func (b *GRPCBundles) Delete(ctx context.Context, nodeID string) error {
	if _, err := b.client.DeleteBundles(ctx, &berthv1.DeleteBundlesRequest{NodeId: nodeID}); err != nil {
		return bundlesError("delete bundles", err)
	}
	return nil
}

func bundlesError(op string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		// Down, slow, overloaded or busy: waiting can change it.
		return fmt.Errorf("bundle store %s: %w: %v", op, errBundlesUnavailable, err)
	}
	return fmt.Errorf("bundle store %s: %w", op, err)
}
