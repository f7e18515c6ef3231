package ca

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/castore"
)

// Log attribute keys of this service (the shared ones are in internal/rpc).
const (
	attrNode   = "node_id"
	attrSerial = "serial"
	attrCSR    = "csr_sha256"
)

// Public messages. Clients see only these, never an internal cause.
const (
	msgBadCSR        = "csr is not a DER PKCS#10 certificate request with a valid signature"
	msgPolicy        = "request is not allowed by the CA's policy: the key must be ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits, and the hostname must be allowed"
	msgUnknownSerial = "no certificate with this serial was issued by this CA"
	msgConflict      = "request conflicts with the CA's records"
	msgCanceled      = "request canceled"
	msgDeadline      = "deadline exceeded"
	msgInternal      = "internal error"
	msgNotRecorded   = "certificate could not be recorded; nothing was issued"
)

// Validation rules, shown after the field name.
const (
	ruleNodeID    = "must match ^[a-z0-9][a-z0-9-]{0,62}$"
	ruleHostname  = ident.HostnameRule
	ruleCSRSize   = "must be a DER certificate request of at most 16 KiB"
	ruleSerial    = "must be a positive hexadecimal serial number of at most 20 octets"
	ruleReason    = "must be at most 256 characters without control characters"
	ruleTimestamp = "must be a valid timestamp"
)

// errNotRecorded marks a certificate that was signed but not written to the
// issued log; it is Internal whatever the store said.
var errNotRecorded = errors.New("signed certificate not recorded in the issued log")

// invalidError is a validation failure. Its message names the field and a
// constant rule, never the offending value, so it is safe to show.
type invalidError struct{ msg string }

func (e invalidError) Error() string { return e.msg }

func invalid(field, rule string) error { return invalidError{msg: field + " " + rule} }

// toStatus maps an error to a gRPC status with a constant public message,
// and logs the cause once: client mistakes at info, everything else at
// error level.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	code, msg := classify(err)
	level := slog.LevelInfo
	if code == codes.Internal {
		level = slog.LevelError
	}
	log.Log(ctx, level, "request failed", rpc.AttrCode, code.String(), rpc.AttrError, err.Error())
	return status.Error(code, msg)
}

func classify(err error) (codes.Code, string) {
	var inv invalidError
	switch {
	case errors.Is(err, errNotRecorded):
		return codes.Internal, msgNotRecorded
	case errors.As(err, &inv):
		return codes.InvalidArgument, inv.msg
	case errors.Is(err, pki.ErrBadCSR):
		return codes.InvalidArgument, msgBadCSR
	case errors.Is(err, pki.ErrPolicy):
		return codes.InvalidArgument, msgPolicy
	case errors.Is(err, castore.ErrNotFound):
		return codes.NotFound, msgUnknownSerial
	case errors.Is(err, castore.ErrConflict):
		return codes.AlreadyExists, msgConflict
	case errors.Is(err, context.Canceled):
		return codes.Canceled, msgCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, msgDeadline
	}
	return codes.Internal, msgInternal
}
