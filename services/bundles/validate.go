package bundles

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// upload is a validated write of a sealed bundle.
type upload struct {
	expected int64
	sealed   []byte
	parsed   *bundle.Parsed
	digest   string
}

// validateUpload checks the shape of a write: a version it replaces, and
// bytes within the size limit that parse as a signed bundle (format
// version 2). The service cannot and does not decrypt; checkSignature then
// checks the signature.
func (s *Service) validateUpload(expected int64, sealed []byte) (upload, error) {
	if expected < 0 {
		return upload{}, rpcerr.Invalid("expected_version", ruleExpected)
	}
	if len(sealed) == 0 {
		return upload{}, rpcerr.Invalid("sealed", ruleSealed)
	}
	if len(sealed) > s.maxSize {
		return upload{}, tooLargeError{size: len(sealed), limit: s.maxSize}
	}
	p, err := bundle.Parse(sealed)
	if err != nil {
		return upload{}, rpcerr.Invalid("sealed", ruleSealed)
	}
	if p.Signature == nil {
		return upload{}, rpcerr.Invalid("sealed", ruleUnsigned)
	}
	return upload{expected: expected, sealed: sealed, parsed: p, digest: bundle.Digest(sealed)}, nil
}

// signer says who must have signed an upload: an admin credential of the
// trust domain, or the node whose identity key is nodeKey.
type signer struct {
	kind    bundle.SignerKind
	nodeKey crypto.PublicKey
}

// checkSignature verifies an upload's signature for nodeID and the version
// the store gives the next write, which it looks up. It is defence in
// depth: the agent verifies again before it applies anything, and does not
// trust the store.
// It returns what it saw of the node's versions.
func (s *Service) checkSignature(ctx context.Context, nodeID string, up upload, want signer) (versions, error) {
	sig := up.parsed.Signature
	if sig.Kind != want.kind {
		if want.kind == bundle.SignerNode {
			return versions{}, rpcerr.Invalid("sealed", ruleNodeSigned)
		}
		return versions{}, rpcerr.Invalid("sealed", ruleAdminSigned)
	}
	v, err := s.versions(ctx, nodeID)
	if err != nil {
		return versions{}, err
	}
	_, err = up.parsed.Verify(bundle.Verifier{
		TrustDomain: s.trustDomain, NodeID: nodeID, Version: v.next,
		Roots: s.roots, NodeKey: want.nodeKey, Time: s.clock.Now(),
	})
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, bundle.ErrWrongVersion):
		return versions{}, versionError{signed: sig.Version, next: v.next}
	case errors.Is(err, bundle.ErrWrongTarget):
		return versions{}, fmt.Errorf("%w: %w", errWrongTarget, err)
	case errors.Is(err, bundle.ErrSigner):
		return versions{}, fmt.Errorf("%w: %w", errSigner, err)
	}
	return versions{}, fmt.Errorf("%w: %w", errSignature, err)
}

// versions are a node's version numbers: the current and pending ones (0
// for none), and the one the store gives the next write.
type versions struct{ current, pending, next int64 }

// versions reads a node's version numbers from its history. The next
// number is one above the highest used, which history always keeps (it
// trims only versions older than the newest); Delete starts again at 1.
func (s *Service) versions(ctx context.Context, nodeID string) (versions, error) {
	h, err := s.store.History(ctx, nodeID)
	if err != nil {
		return versions{}, err
	}
	var v versions
	for _, m := range h {
		v.next = max(v.next, m.Version)
		switch m.State {
		case bundlestore.StateApproved:
			v.current = m.Version
		case bundlestore.StatePending:
			v.pending = m.Version
		}
	}
	v.next++
	return v, nil
}

func validateNodeID(id string) error {
	if ident.NodeID(id) != nil {
		return rpcerr.Invalid("node_id", ruleNodeID)
	}
	return nil
}

func validateApprove(req *berthv1.ApproveBundleRequest) error {
	if err := validateNodeID(req.GetNodeId()); err != nil {
		return err
	}
	if req.GetVersion() <= 0 {
		return rpcerr.Invalid("version", ruleVersion)
	}
	return nil
}
