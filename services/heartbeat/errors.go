package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/health"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/hbstore"
)

// Log attribute keys of this service (the shared ones are in internal/rpc).
const (
	attrNode = "node_id"
)

// Public messages. Clients see only these, never an internal cause.
const (
	msgRevoked     = "node is revoked"
	msgSuperseded  = "stream replaced by a newer stream of the same node"
	msgClosing     = "heartbeat service is shutting down; reconnect"
	msgSequence    = "sequence must increase within a stream"
	msgBootChanged = "boot_id must not change within a stream"
	msgTooFast     = "beats arrive faster than the interval allows"
	msgInterval    = "interval must be between twice the flush period (at least 1s) and 1h"
	msgGrace       = "grace must be more than twice the interval and at most 24h"
	msgNeverSeen   = "no beat was ever received from this node"
	msgCursorGone  = "after_cursor is older than the oldest event kept; the oldest cursor available is %d"
	msgCursorAhead = "after_cursor is ahead of the event log, whose newest cursor is %d"
	msgCanceled    = "request canceled"
	msgDeadline    = "deadline exceeded"
	msgInternal    = "internal error"
)

// Validation rules, shown after the field name.
const (
	ruleSequence   = "must be between 1 and 2^63-1"
	ruleBootID     = "must be 1 to 64 letters, digits, '.', '_', ':' or '-'"
	ruleStatus     = "must be up, degraded or maintenance"
	ruleUptime     = "must be a valid, non-negative duration of at most 100 years"
	ruleEventCount = "must be at most 16 per beat"
	ruleKind       = "must match ^[a-z0-9][a-z0-9._-]{0,63}$"
	ruleMessage    = "must be at most 1024 bytes without control characters"
	ruleNodeID     = "must match ^[a-z0-9][a-z0-9-]{0,62}$"
	rulePageSize   = "must be between 0 and 1000"
	ruleState      = "must be a known liveness state"
	ruleListNodes  = "must name at most 1000 nodes"
	rulePageToken  = "must be a next_page_token returned by ListNodeHealth"
	ruleCursor     = "must not be negative"
	ruleFromNow    = "must be 0 with from_now"
	ruleWatchNodes = "must name at most 100 nodes"
	ruleEventType  = "must be known event types"
	ruleDuration   = "must be a valid, non-negative duration"
)

// invalidError is a validation failure. Its message names the field and a
// constant rule, never the offending value, so it is safe to show.
type invalidError struct{ msg string }

func (e invalidError) Error() string { return e.msg }

func invalid(field, rule string) error { return invalidError{msg: field + " " + rule} }

// toStatus maps an error to a gRPC status with a constant public message,
// and logs the cause once: client mistakes and the ends of streams at info,
// everything else at error level.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	code, msg := classify(err)
	level := slog.LevelInfo
	if code == codes.Internal {
		level = slog.LevelError
	}
	log.Log(ctx, level, "request failed", rpc.AttrCode, code.String(), rpc.AttrError, err.Error())
	return status.Error(code, msg)
}

var statusTable = []struct {
	err  error
	code codes.Code
	msg  string
}{
	{health.ErrRevoked, codes.PermissionDenied, msgRevoked},
	{health.ErrSuperseded, codes.Aborted, msgSuperseded},
	{health.ErrClosing, codes.Unavailable, msgClosing},
	{health.ErrSequence, codes.InvalidArgument, msgSequence},
	{health.ErrBootChanged, codes.InvalidArgument, msgBootChanged},
	{health.ErrTooFast, codes.ResourceExhausted, msgTooFast},
	{health.ErrInterval, codes.InvalidArgument, msgInterval},
	{health.ErrGrace, codes.InvalidArgument, msgGrace},
	{hbstore.ErrNotFound, codes.NotFound, msgNeverSeen},
	{context.Canceled, codes.Canceled, msgCanceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded, msgDeadline},
}

func classify(err error) (codes.Code, string) {
	var (
		inv invalidError
		ce  *health.CursorError
	)
	switch {
	case errors.As(err, &inv):
		return codes.InvalidArgument, inv.msg
	case errors.As(err, &ce) && ce.Ahead:
		return codes.OutOfRange, fmt.Sprintf(msgCursorAhead, ce.Newest)
	case errors.As(err, &ce):
		return codes.OutOfRange, fmt.Sprintf(msgCursorGone, ce.Oldest)
	}
	for _, m := range statusTable {
		if errors.Is(err, m.err) {
			return m.code, m.msg
		}
	}
	return codes.Internal, msgInternal
}
