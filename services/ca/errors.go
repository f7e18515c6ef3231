package ca

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/castore"
)

// Public messages. Clients see only these, never an internal cause.
const (
	msgBadCSR        = "csr is not a DER PKCS#10 certificate request with a valid signature"
	msgPolicy        = "request is not allowed by the CA's policy: the key must be ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits, and the hostname must be allowed"
	msgUnknownSerial = "no certificate with this serial was issued by this CA"
	msgConflict      = "request conflicts with the CA's records"
	msgNotRecorded   = "certificate could not be recorded; nothing was issued"
	msgNoCRL         = "this CA was started without a revocation list signer"
	msgRequestReused = "request_id was already used for another node or key"
	// msgOtherIntermediate: the request was answered under an intermediate
	// this CA no longer signs with (rotated since).
	msgOtherIntermediate = "the certificate issued for this request_id was signed by a previous intermediate; use a new request_id"
	// msgCRLUnavailable is the HTTP answer when no valid CRL can be had.
	msgCRLUnavailable = "revocation list is unavailable; retry later"
)

// Validation rules, shown after the field name.
const (
	ruleNodeID    = ident.NodeIDRule
	ruleHostname  = ident.HostnameRule
	ruleCSRSize   = "must be a DER certificate request of at most 16 KiB"
	ruleSerial    = "must be a positive hexadecimal serial number of at most 20 octets"
	ruleReason    = "must be at most 256 characters without control characters"
	ruleTimestamp = "must be a valid timestamp"
	ruleRequestID = "must be 1 to 64 characters of a-z, 0-9, '-' and '_'"
	ruleKeyHash   = "must be empty or a 32-byte SHA-256"
	// ruleKeepRevoked: a revoked node keeps no key.
	ruleKeepRevoked = "must be empty when node_revoked is set"
)

// errNotRecorded marks a certificate that was signed but not written to the
// issued log; it is Internal whatever the store said (Unavailable when the
// store could not serve).
var errNotRecorded = errors.New("signed certificate not recorded in the issued log")

// errRequestReused is a request ID answered before for another node or key.
var errRequestReused = errors.New("request ID reused for another node or key")

// errOtherIntermediate is a request answered under a rotated intermediate.
var errOtherIntermediate = errors.New("recorded certificate not signed by the current intermediate")

// errNoCRL is a CRL asked of a CA configured without a CRL signer.
var errNoCRL = errors.New("no CRL signer configured")

// errorTable is the service's mapping of errors to gRPC status.
var errorTable = rpcerr.Table{
	rpcerr.Is(errNotRecorded, codes.Internal, msgNotRecorded),
	rpcerr.Is(errNoCRL, codes.FailedPrecondition, msgNoCRL),
	rpcerr.Is(errRequestReused, codes.AlreadyExists, msgRequestReused),
	rpcerr.Is(errOtherIntermediate, codes.FailedPrecondition, msgOtherIntermediate),
	rpcerr.Is(pki.ErrBadCSR, codes.InvalidArgument, msgBadCSR),
	rpcerr.Is(pki.ErrPolicy, codes.InvalidArgument, msgPolicy),
	rpcerr.Is(castore.ErrNotFound, codes.NotFound, msgUnknownSerial),
	rpcerr.Is(castore.ErrConflict, codes.AlreadyExists, msgConflict),
}
