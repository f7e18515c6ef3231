// Package rpcerr is the one mapping of berth's internal errors to gRPC
// status, for every service. A service declares, as data in its errors.go,
// a Table of its sentinel errors and error types with a code and a constant
// public message each; its handlers pass every failure through
// Table.Status, which logs the internal cause once with the per-RPC logger
// and returns only the public message, never the cause.
//
// Beyond the table, the mapping is the same for every service:
//
//	validation (Invalid)                   InvalidArgument, "<field> <rule>"
//	a watch's *eventlog.CursorError        OutOfRange, with a
//	                                         berth.v1.CursorOutOfRange detail
//	context.Canceled, a dependency's       Canceled
//	  Canceled
//	context.DeadlineExceeded, a            DeadlineExceeded
//	  dependency's when the call's own
//	  deadline passed
//	a database that cannot serve now       Unavailable, "… retry later"
//	  (db.IsUnavailable)
//	a dependency's Unavailable,            Unavailable, "… retry later"
//	  DeadlineExceeded, ResourceExhausted
//	  or Aborted
//	anything else                          Internal
//
// An unavailable cause is never answered with Internal, which clients treat
// as final, even when the table maps its sentinel to Internal: clients
// retry Unavailable. It lives apart from internal/rpc so that clients of
// that package do not link the database drivers.
package rpcerr

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/rpc"
)

// Public messages of the mapping itself.
const (
	MsgCanceled              = "request canceled"
	MsgDeadline              = "deadline exceeded"
	MsgInternal              = "internal error"
	MsgDatabaseUnavailable   = "database is unavailable; retry later"
	MsgDependencyUnavailable = "a service this request needs is unavailable; retry later"
)

// InvalidError is a request that fails validation. Its message names the
// field and a constant rule, never the offending value, so it is safe to
// show.
type InvalidError struct{ Field, Rule string }

func (e *InvalidError) Error() string { return e.Field + " " + e.Rule }

// Invalid returns the validation error of field: rule is a constant that
// reads after the field name ("must be a UUID").
func Invalid(field, rule string) error { return &InvalidError{Field: field, Rule: rule} }

// RetryError is an error after which the caller may try again once After
// has passed; Status answers it with a google.rpc.RetryInfo detail
// carrying that delay, beside the code and message its cause maps to.
type RetryError struct {
	Err   error
	After time.Duration
}

func (e *RetryError) Error() string { return e.Err.Error() }
func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter wraps err with the delay after which a retry may succeed.
func RetryAfter(err error, after time.Duration) error { return &RetryError{Err: err, After: after} }

// Case maps the errors it matches to a code and a public message.
type Case struct {
	code  codes.Code
	match func(error) (msg string, ok bool)
}

// Is maps every error that errors.Is target to code and msg.
func Is(target error, code codes.Code, msg string) Case {
	return Case{code: code, match: func(err error) (string, bool) { return msg, errors.Is(err, target) }}
}

// As maps every error that errors.As finds an E in to code, with the
// message msg makes of that E. msg must build it from constants and
// numbers only, never from what a caller sent.
func As[E error](code codes.Code, msg func(E) string) Case {
	return Case{code: code, match: func(err error) (string, bool) {
		var e E
		if !errors.As(err, &e) {
			return "", false
		}
		return msg(e), true
	}}
}

// Table is one service's errors. The first case that matches decides.
type Table []Case

// Status maps err to a status error with a public message, and logs err
// once with log, which should be the per-RPC logger (rpc.Logger), perhaps
// with the handler's attributes: client mistakes at info level, the rest at
// error level. It returns nil for a nil err.
func (t Table) Status(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	code, msg := t.Classify(ctx, err)
	level := slog.LevelInfo
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unavailable:
		level = slog.LevelError
	}
	if log == nil {
		log = rpc.Logger(ctx, slog.New(slog.DiscardHandler))
	}
	log.Log(ctx, level, "request failed", rpc.AttrCode, code.String(), rpc.AttrError, err.Error())
	var ce *eventlog.CursorError
	if code == codes.OutOfRange && errors.As(err, &ce) {
		return CursorStatus(ce).Err()
	}
	st := status.New(code, msg)
	var retry *RetryError
	if errors.As(err, &retry) && retry.After > 0 {
		if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry.After)}); err == nil {
			st = withInfo
		}
	}
	return st.Err()
}

// Classify returns the code and public message err deserves.
func (t Table) Classify(ctx context.Context, err error) (codes.Code, string) {
	var (
		inv *InvalidError
		ce  *eventlog.CursorError
	)
	switch {
	case errors.As(err, &inv):
		return codes.InvalidArgument, inv.Error()
	case errors.As(err, &ce):
		st := CursorStatus(ce)
		return st.Code(), st.Message()
	}
	for _, c := range t {
		if msg, ok := c.match(err); ok {
			if c.code == codes.Internal {
				if code, msg, ok := general(ctx, err); ok {
					return code, msg
				}
			}
			return c.code, msg
		}
	}
	if code, msg, ok := general(ctx, err); ok {
		return code, msg
	}
	return codes.Internal, MsgInternal
}

// general maps the causes every service answers alike.
func general(ctx context.Context, err error) (codes.Code, string, bool) {
	dep, isDep := dependencyCode(err)
	switch {
	case errors.Is(err, context.Canceled) || isDep && dep == codes.Canceled:
		return codes.Canceled, MsgCanceled, true
	case errors.Is(err, context.DeadlineExceeded) || isDep && dep == codes.DeadlineExceeded && ctx.Err() != nil:
		return codes.DeadlineExceeded, MsgDeadline, true
	case isDep && transientDependency(dep):
		return codes.Unavailable, MsgDependencyUnavailable, true
	case db.IsUnavailable(err):
		return codes.Unavailable, MsgDatabaseUnavailable, true
	}
	return codes.OK, "", false
}

// transientDependency reports whether a dependency's answer is one that
// waiting can change: it is down, timed out, overloaded or hit a
// concurrent change. The caller is told Unavailable, which clients retry;
// passing the dependency's own code on would tell a node about a limit
// that is not its own.
func transientDependency(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// dependencyCode finds the status of a gRPC call to another service in
// err's chain.
func dependencyCode(err error) (codes.Code, bool) {
	var s interface{ GRPCStatus() *status.Status }
	if errors.As(err, &s) {
		return s.GRPCStatus().Code(), true
	}
	return codes.OK, false
}
