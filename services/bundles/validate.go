package bundles

import (
	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// upload is a validated write of a sealed bundle.
type upload struct {
	expected int64
	sealed   []byte
	header   bundle.Header
	digest   string
}

// validateUpload checks a write: a version it replaces, and bytes within
// the size limit that start with a bundle header. The service cannot and
// does not decrypt, so the header is all it can check of the content.
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
	h, err := bundle.ParseHeader(sealed)
	if err != nil {
		return upload{}, rpcerr.Invalid("sealed", ruleSealed)
	}
	return upload{expected: expected, sealed: sealed, header: h, digest: bundle.Digest(sealed)}, nil
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
