package bundles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/bundlestore"
)

// Log attribute keys of this service (the shared ones are in internal/rpc).
const (
	attrNode    = "node_id"
	attrVersion = "version"
	attrState   = "state"
	attrSize    = "size"
	attrDigest  = "sha256"
	attrAuthor  = "author"
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
	msgCanceled          = "request canceled"
	msgDeadline          = "deadline exceeded"
	msgInternal          = "internal error"
)

// Validation rules, shown after the field name.
const (
	ruleNodeID   = "must match ^[a-z0-9][a-z0-9-]{0,62}$"
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

// invalidError is a validation failure. Its message names the field and a
// constant rule, never the offending value, so it is safe to show.
type invalidError struct{ msg string }

func (e invalidError) Error() string { return e.msg }

func invalid(field, rule string) error { return invalidError{msg: field + " " + rule} }

// tooLargeError is a bundle over the size limit. Its message holds two
// numbers, which are safe to show and tell the writer what to aim for.
type tooLargeError struct{ size, limit int }

func (e tooLargeError) Error() string {
	return fmt.Sprintf("bundle is %d bytes; the limit is %d", e.size, e.limit)
}

// toStatus maps an error to a gRPC status with a public message, and logs
// the cause once: client mistakes at info, everything else at error level.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	code, msg := classify(err)
	level := slog.LevelInfo
	if code == codes.Internal || code == codes.Unavailable {
		level = slog.LevelError
	}
	log.Log(ctx, level, "request failed", rpc.AttrCode, code.String(), rpc.AttrError, err.Error())
	return status.Error(code, msg)
}

func classify(err error) (codes.Code, string) {
	var (
		inv invalidError
		big tooLargeError
	)
	switch {
	case errors.As(err, &inv):
		return codes.InvalidArgument, inv.msg
	case errors.As(err, &big):
		return codes.ResourceExhausted, big.Error()
	}
	for _, m := range statusTable {
		if errors.Is(err, m.err) {
			return m.code, m.msg
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled, msgCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, msgDeadline
	}
	return codes.Internal, msgInternal
}

var statusTable = []struct {
	err  error
	code codes.Code
	msg  string
}{
	{errNoVersion, codes.NotFound, msgNoVersion},
	{errNoBundle, codes.NotFound, msgNoBundle},
	{bundlestore.ErrNotFound, codes.NotFound, msgNoBundle},
	{bundlestore.ErrStale, codes.FailedPrecondition, msgStale},
	{bundlestore.ErrPendingExists, codes.FailedPrecondition, msgPendingExists},
	{bundlestore.ErrNotPending, codes.FailedPrecondition, msgNotPending},
	{errNotNode, codes.PermissionDenied, msgNotNode},
	{errRevoked, codes.PermissionDenied, msgRevoked},
	{errPolicyUnavailable, codes.Unavailable, msgPolicyUnavailable},
}
