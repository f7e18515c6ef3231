package liveness

import "errors"

// Errors of the core. The service maps each to a gRPC status.
var (
	// ErrRevoked: the node is revoked; its stream ends and it may not open
	// another.
	ErrRevoked = errors.New("node is revoked")
	// ErrSuperseded: the node opened a newer stream, which replaced this one.
	ErrSuperseded = errors.New("stream superseded by a newer stream of the same node")
	// ErrClosing: the core is shutting down.
	ErrClosing = errors.New("heartbeat core is shutting down")
	// ErrSequence: a beat's sequence did not increase within its stream.
	ErrSequence = errors.New("sequence did not increase")
	// ErrBootChanged: a beat's boot ID differs from the stream's first beat.
	ErrBootChanged = errors.New("boot ID changed within a stream")
	// ErrTooFast: the node beats far more often than its interval.
	ErrTooFast = errors.New("beats arrive faster than the interval allows")
	// ErrInterval and ErrGrace: settings out of range (see SetSettings).
	ErrInterval = errors.New("interval out of range")
	ErrGrace    = errors.New("grace out of range")
)
