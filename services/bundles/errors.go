package bundles

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/revocation"
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
	msgNodeRevoked       = "node is revoked (or deleted): it takes no bundle"
	msgPolicyUnavailable = "the node's approval policy is unavailable; retry later"
	msgWrongTarget       = "sealed is signed for another node or another trust domain"
	msgSigner            = "sealed is signed by a signer this deployment does not trust: an administrator's write must be signed by an admin certificate of this trust domain, a node's upload by the node's own identity key"
	msgSignature         = "sealed: the bundle's signature does not verify"
	msgRevocationUnknown = "revocation state not yet known; retry later"
)

// Validation rules, shown after the field name.
const (
	ruleNodeID      = ident.NodeIDRule
	ruleApproval    = "must be required, auto or default"
	ruleExpected    = "must be the version being replaced, or 0 for none"
	ruleVersion     = "must be a positive version number"
	ruleSealed      = "must be a bundle sealed and signed in berth's bundle format, version 2"
	ruleUnsigned    = "is an unsigned bundle (format version 1), which agents refuse; seal it again with a current berthctl, which signs it"
	ruleAdminSigned = "must be signed by an admin credential for an administrator's write"
	ruleNodeSigned  = "must be signed by the node's own identity key for a node's upload"
	rulePageSize    = "must be between 0 and 1000"
	rulePageToken   = "must be a next_page_token returned by ListSealedBundles"
	ruleNodeIDs     = "must be at most 1000 node IDs, each " + ident.NodeIDRule
)

// Errors of the service core. Store errors are mapped as well.
var (
	errNoBundle          = errors.New(msgNoBundle)
	errNoVersion         = errors.New(msgNoVersion)
	errNotNode           = errors.New(msgNotNode)
	errRevoked           = errors.New(msgRevoked)
	errNodeRevoked       = errors.New(msgNodeRevoked)
	errPolicyUnavailable = errors.New(msgPolicyUnavailable)
	errWrongTarget       = errors.New(msgWrongTarget)
	errSigner            = errors.New(msgSigner)
	errSignature         = errors.New(msgSignature)
)

// versionError is a bundle signed for another version than the one the
// store gives the next write. Its message holds two numbers, safe to show,
// that tell the writer what to sign.
type versionError struct{ signed, next int64 }

func (e versionError) Error() string {
	return fmt.Sprintf("the bundle is signed for version %d, but the next version of this node's bundle is %d; seal and sign it again for version %d",
		e.signed, e.next, e.next)
}

// tooLargeError is a bundle over the size limit. Its message holds two
// numbers, which are safe to show and tell the writer what to aim for.
type tooLargeError struct{ size, limit int }

func (e tooLargeError) Error() string {
	return fmt.Sprintf("bundle is %d bytes; the limit is %d", e.size, e.limit)
}

// errorTable is the service's mapping of errors to gRPC status.
var errorTable = rpcerr.Table{
	rpcerr.As(codes.ResourceExhausted, tooLargeError.Error),
	rpcerr.As(codes.FailedPrecondition, versionError.Error),
	rpcerr.Is(errWrongTarget, codes.InvalidArgument, msgWrongTarget),
	rpcerr.Is(errSigner, codes.InvalidArgument, msgSigner),
	rpcerr.Is(errSignature, codes.InvalidArgument, msgSignature),
	rpcerr.Is(errNoVersion, codes.NotFound, msgNoVersion),
	rpcerr.Is(errNoBundle, codes.NotFound, msgNoBundle),
	rpcerr.Is(bundlestore.ErrNotFound, codes.NotFound, msgNoBundle),
	rpcerr.Is(bundlestore.ErrStale, codes.FailedPrecondition, msgStale),
	rpcerr.Is(bundlestore.ErrPendingExists, codes.FailedPrecondition, msgPendingExists),
	rpcerr.Is(bundlestore.ErrNotPending, codes.FailedPrecondition, msgNotPending),
	rpcerr.Is(errNotNode, codes.PermissionDenied, msgNotNode),
	rpcerr.Is(errRevoked, codes.PermissionDenied, msgRevoked),
	rpcerr.Is(errNodeRevoked, codes.FailedPrecondition, msgNodeRevoked),
	rpcerr.Is(errPolicyUnavailable, codes.Unavailable, msgPolicyUnavailable),
	rpcerr.Is(revocation.ErrUnknown, codes.Unavailable, msgRevocationUnknown),
}
