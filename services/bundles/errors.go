package bundles

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/bundlestore"
)

// Public messages. Clients see only these (and validation and size
// messages, built from field names, constants and numbers), never an
// internal cause.
const (
	msgNoBundle          = "no bundle"
	msgNoVersion         = "no such bundle version"
	msgStale             = "expected_version is not the current version of the bundle; get the current version and retry"
	msgPendingExists     = "an upload of this node's bundle is waiting for approval; no other upload is accepted until an administrator approves it or resets the bundle"
	msgNotPending        = "this bundle version is not waiting for approval"
	msgNotNode           = "caller is not a node"
	msgRevoked           = "node certificate is revoked"
	msgPolicyUnavailable = "the node's approval policy is unavailable; retry later"
)

// Validation rules, shown after the field name.
const (
	ruleNodeID   = ident.NodeIDRule
	ruleExpected = "must be the version being replaced, or 0 for none"
	ruleVersion  = "must be a positive version number"
	ruleSealed   = "must be a bundle sealed in berth's bundle format, version 1"
)

// Errors of the service core. Store errors are mapped as well.
var (
	errNoBundle          = errors.New(msgNoBundle)
	errNoVersion         = errors.New(msgNoVersion)
	errNotNode           = errors.New(msgNotNode)
	errRevoked           = errors.New(msgRevoked)
	errPolicyUnavailable = errors.New(msgPolicyUnavailable)
)

// tooLargeError is a bundle over the size limit. Its message holds two
// numbers, which are safe to show and tell the writer what to aim for.
type tooLargeError struct{ size, limit int }

func (e tooLargeError) Error() string {
	return fmt.Sprintf("bundle is %d bytes; the limit is %d", e.size, e.limit)
}

// errorTable is the service's mapping of errors to gRPC status.
var errorTable = rpcerr.Table{
	rpcerr.As(codes.ResourceExhausted, tooLargeError.Error),
	rpcerr.Is(errNoVersion, codes.NotFound, msgNoVersion),
	rpcerr.Is(errNoBundle, codes.NotFound, msgNoBundle),
	rpcerr.Is(bundlestore.ErrNotFound, codes.NotFound, msgNoBundle),
	rpcerr.Is(bundlestore.ErrStale, codes.FailedPrecondition, msgStale),
	rpcerr.Is(bundlestore.ErrPendingExists, codes.FailedPrecondition, msgPendingExists),
	rpcerr.Is(bundlestore.ErrNotPending, codes.FailedPrecondition, msgNotPending),
	rpcerr.Is(errNotNode, codes.PermissionDenied, msgNotNode),
	rpcerr.Is(errRevoked, codes.PermissionDenied, msgRevoked),
	rpcerr.Is(errPolicyUnavailable, codes.Unavailable, msgPolicyUnavailable),
}
