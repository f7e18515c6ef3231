package bundles

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/revocation"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestRevocationsUnknownFailsClosed: while the revocation state is not
// known, node calls are refused with Unavailable and change nothing; once
// it is known they are served again. Admin calls do not depend on it.
func TestRevocationsUnknownFailsClosed(t *testing.T) {
	var known atomic.Bool
	e := newEnv(t, "sqlite", func(c *Config) {
		c.RevocationsKnown = func() error {
			if known.Load() {
				return nil
			}
			return fmt.Errorf("%w: the list was never loaded from the CA", revocation.ErrUnknown)
		}
		c.Revoked = func(context.Context, string, string) bool { return false }
	})
	n := e.newNode(t, "node-a", xwing)
	putAdmin(t, e.admin(t), "node-a", 0, e.adminConfig(t, n, "v1"))
	c := e.nodeClient(t, n)
	_, err := c.GetBundle(context.Background(), &berthv1.GetBundleRequest{})
	wantStatus(t, err, codes.Unavailable, msgRevocationUnknown)
	_, err = c.PutBundle(context.Background(), &berthv1.PutBundleRequest{ExpectedVersion: 1, Sealed: e.config(t, n, "v2")})
	wantStatus(t, err, codes.Unavailable, msgRevocationUnknown)
	if h := e.history(t, "node-a"); len(h) != 1 {
		t.Errorf("a refused upload changed the bundle: %v", h)
	}

	known.Store(true)
	if _, err := c.GetBundle(context.Background(), &berthv1.GetBundleRequest{}); err != nil {
		t.Fatalf("GetBundle once revocations are known: %v", err)
	}
	putNode(t, c, 1, e.config(t, n, "v2"))
}
