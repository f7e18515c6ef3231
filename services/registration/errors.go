package registration

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/regstore"
)

// Public messages. Clients see only these (and validation messages, which
// are built from field names and constants), never an internal cause.
const (
	msgUnknownKey       = "no node is registered with this key"
	msgPending          = "node is pending approval"
	msgRejected         = "node was rejected by the administrator"
	msgRevoked          = "node is revoked"
	msgTokenRequired    = "a bootstrap token is required to register a new node"
	msgTokenInvalid     = "bootstrap token is invalid"
	msgTokenExpired     = "bootstrap token has expired"
	msgTokenExhausted   = "bootstrap token has no uses left"
	msgCSRKeyMismatch   = "CSR key does not match the key of the TLS session"
	msgCSRIdentity      = "CSR requests a URI identity; the CA names certificates after the node"
	msgHardwareConflict = "another node with this hardware UUID is registered with a different key; an administrator must allow its replacement or delete it"
	msgNodeNotFound     = "node not found"
	msgTokenNotFound    = "token not found"
	msgBadTransition    = "node status does not allow this change"
	msgKeyConflict      = "this key is already registered"
	msgCAUnavailable    = "certificate authority is unavailable; retry later"
	msgBundlesDown      = "bundle store is unavailable; retry later"
	msgDeadline         = "deadline exceeded"
	msgInternal         = "internal error"
)

// Errors of the registration core. Store errors are mapped as well.
var (
	errUnknownKey         = errors.New(msgUnknownKey)
	errPending            = errors.New(msgPending)
	errRejected           = errors.New(msgRejected)
	errRevoked            = errors.New(msgRevoked)
	errTokenRequired      = errors.New(msgTokenRequired)
	errTokenInvalid       = errors.New(msgTokenInvalid)
	errCSRKeyMismatch     = errors.New(msgCSRKeyMismatch)
	errCSRIdentity        = errors.New(msgCSRIdentity)
	errHardwareConflict   = errors.New(msgHardwareConflict)
	errNodeNotFound       = errors.New(msgNodeNotFound)
	errTokenNotFound      = errors.New(msgTokenNotFound)
	errCAUnavailable      = errors.New(msgCAUnavailable)
	errBundlesUnavailable = errors.New(msgBundlesDown)
)

// invalidError is a validation failure. Its message names the field and the
// rule only, never the offending value, so it is safe to show.
type invalidError struct{ msg string }

func (e invalidError) Error() string { return e.msg }

func invalid(field, rule string) error { return invalidError{msg: field + ": " + rule} }

// toStatus maps an error to a gRPC status, logging the internal cause once.
func toStatus(ctx context.Context, fallback *slog.Logger, err error) error {
	var inv invalidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &inv):
		return status.Error(codes.InvalidArgument, inv.msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msgDeadline)
	}
	for _, m := range statusTable {
		if errors.Is(err, m.err) {
			return status.Error(m.code, m.msg)
		}
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Canceled || errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "request canceled")
	}
	rpc.Logger(ctx, fallback).Error("request failed", rpc.AttrError, err)
	return status.Error(codes.Internal, msgInternal)
}

var statusTable = []struct {
	err  error
	code codes.Code
	msg  string
}{
	{errUnknownKey, codes.NotFound, msgUnknownKey},
	{errPending, codes.FailedPrecondition, msgPending},
	{errRejected, codes.PermissionDenied, msgRejected},
	{errRevoked, codes.PermissionDenied, msgRevoked},
	{errTokenRequired, codes.InvalidArgument, msgTokenRequired},
	{errTokenInvalid, codes.PermissionDenied, msgTokenInvalid},
	{regstore.ErrTokenInvalid, codes.PermissionDenied, msgTokenInvalid},
	{regstore.ErrTokenExpired, codes.PermissionDenied, msgTokenExpired},
	{regstore.ErrTokenExhausted, codes.ResourceExhausted, msgTokenExhausted},
	{errCSRKeyMismatch, codes.PermissionDenied, msgCSRKeyMismatch},
	{errCSRIdentity, codes.PermissionDenied, msgCSRIdentity},
	{errHardwareConflict, codes.FailedPrecondition, msgHardwareConflict},
	{errNodeNotFound, codes.NotFound, msgNodeNotFound},
	{errTokenNotFound, codes.NotFound, msgTokenNotFound},
	{regstore.ErrPrecondition, codes.FailedPrecondition, msgBadTransition},
	{regstore.ErrConflict, codes.AlreadyExists, msgKeyConflict},
	{errCAUnavailable, codes.Unavailable, msgCAUnavailable},
	{errBundlesUnavailable, codes.Unavailable, msgBundlesDown},
}
