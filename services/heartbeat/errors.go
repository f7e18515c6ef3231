package heartbeat

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/revocation"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// errCertRevoked is a stream whose certificate is revoked.
var errCertRevoked = errors.New("certificate revoked")

// Public messages. Clients see only these, never an internal cause. A
// watch's cursor errors are mapped by rpcerr, as for every service.
const (
	msgRevoked = "node is revoked"
	// msgCertRevoked: a certificate revoked on its own, such as a replaced
	// board's; the node itself may live on under a new key.
	msgCertRevoked = "this certificate is revoked"
	msgRevUnknown  = "revocation state not yet known; retry later"
	msgSuperseded  = "stream replaced by a newer stream of the same node"
	msgClosing     = "heartbeat service is shutting down; reconnect"
	msgSequence    = "sequence must increase within a stream"
	msgBootChanged = "boot_id must not change within a stream"
	msgTooFast     = "beats arrive faster than the interval allows"
	msgInterval    = "interval must be between twice the flush period (at least 1s) and 1h"
	msgGrace       = "grace must be more than twice the interval and at most 24h"
	msgNeverSeen   = "no beat was ever received from this node"
)

// Validation rules, shown after the field name.
const (
	ruleSequence       = "must be between 1 and 2^63-1"
	ruleBootID         = ident.BootIDRule
	ruleStatus         = "must be up, degraded or maintenance"
	ruleUptime         = "must be a valid, non-negative duration of at most 100 years"
	ruleEventCount     = "must be at most 16 per beat"
	ruleKind           = "must match ^[a-z0-9][a-z0-9._-]{0,63}$"
	ruleMessage        = "must be at most 1024 bytes without control characters"
	ruleSeverity       = "must be info, warning or critical"
	ruleEventSeq       = "must be at most 2^63-1"
	ruleInstance       = "must be 1 to 64 letters, digits, '.', '_', ':' or '-' when events carry sequences"
	ruleTime           = "must be a valid timestamp"
	ruleReportedKeys   = "must hold at most 64 keys"
	ruleReported       = "keys must match ^[a-z0-9][a-z0-9._-]{0,63}$ and values be at most 256 bytes without control characters"
	ruleAppliedVersion = "must not be negative"
	ruleHooks          = "must hold at most 64 hook results"
	ruleHookText       = "command and error must be at most 1024 bytes"
	ruleNodeID         = ident.NodeIDRule
	rulePageSize       = "must be between 0 and 1000"
	ruleState          = "must be a known liveness state"
	ruleListNodes      = "must name at most 1000 nodes"
	rulePageToken      = "must be a next_page_token returned by ListNodeHealth"
	ruleCursor         = "must not be negative"
	ruleFromNow        = "must be 0 with from_now"
	ruleWatchNodes     = "must name at most 100 nodes"
	ruleEventType      = "must be known event types"
	ruleDuration       = "must be a valid, non-negative duration"
)

// errorTable is the service's mapping of errors to gRPC status.
var errorTable = rpcerr.Table{
	rpcerr.Is(liveness.ErrRevoked, codes.PermissionDenied, msgRevoked),
	rpcerr.Is(errCertRevoked, codes.PermissionDenied, msgCertRevoked),
	rpcerr.Is(revocation.ErrUnknown, codes.Unavailable, msgRevUnknown),
	rpcerr.Is(liveness.ErrSuperseded, codes.Aborted, msgSuperseded),
	rpcerr.Is(liveness.ErrClosing, codes.Unavailable, msgClosing),
	rpcerr.Is(liveness.ErrSequence, codes.InvalidArgument, msgSequence),
	rpcerr.Is(liveness.ErrBootChanged, codes.InvalidArgument, msgBootChanged),
	rpcerr.Is(liveness.ErrTooFast, codes.ResourceExhausted, msgTooFast),
	rpcerr.Is(liveness.ErrInterval, codes.InvalidArgument, msgInterval),
	rpcerr.Is(liveness.ErrGrace, codes.InvalidArgument, msgGrace),
	rpcerr.Is(heartbeatstore.ErrNotFound, codes.NotFound, msgNeverSeen),
}
