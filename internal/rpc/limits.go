package rpc

import (
	"fmt"
	"time"
)

// Limits bound what a gRPC server spends on its peers, above all on peers
// that have not authenticated. A connection is unauthenticated from the
// moment it is accepted until it presents a certificate issued by berth (a
// node, a service or an admin) or, for a bare node key, until the
// registration service finds that key registered and approved
// (MarkAuthenticated). Bootstrap keys, foreign certificates and
// connections still in their handshake are all unauthenticated.
//
// The zero value of each field takes its default; a negative value turns
// that limit off (for benchmarks that measure the server without it).
type Limits struct {
	// MaxConnections caps the connections one listener holds at once, of
	// every kind. At the cap the listener stops accepting: new connections
	// wait in the kernel's backlog rather than being refused.
	MaxConnections int
	// MaxUnauthenticated caps the unauthenticated connections (handshaking,
	// bootstrap keys, foreign certificates) of one listener. At the cap the
	// listener stops accepting too, until one of them authenticates or
	// closes, so that their memory stays bounded whoever opens them.
	MaxUnauthenticated int
	// MaxUnauthenticatedPerSource caps the unauthenticated connections from
	// one source IP address; the next one from that address is closed at
	// once. Authenticated connections never count, so a fleet of known
	// nodes behind one address (a NAT, a load generator) is not throttled
	// by the connections it holds; only its concurrent handshakes and
	// bootstraps count.
	MaxUnauthenticatedPerSource int
	// MaxUnauthenticatedStreams caps the concurrent calls on one
	// unauthenticated connection; the next one fails with
	// ResourceExhausted before any handler runs. An agent makes its
	// bootstrap calls one at a time.
	MaxUnauthenticatedStreams int
	// MaxUnauthenticatedBytes caps what an unauthenticated connection may
	// send (TLS records included) before it authenticates; past it the
	// connection is closed. It bounds the request bytes such a peer can
	// make the server hold, whatever message sizes it announces. A closed
	// agent connection simply reconnects.
	MaxUnauthenticatedBytes int64
	// UnauthenticatedMaxAge closes a connection that is still
	// unauthenticated this long after it was accepted. Idle timeouts never
	// end a connection whose calls never finish, so without it a flood
	// holds the listener's unauthenticated slots forever; with it, clients
	// waiting in the backlog get their turn. A node's bootstrap calls take
	// seconds; an agent whose connection closed reconnects.
	UnauthenticatedMaxAge time.Duration
	// MaxConcurrentStreams is the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS of
	// every connection: beyond it a peer's new streams are refused
	// (REFUSED_STREAM). gRPC clients queue calls above it instead.
	MaxConcurrentStreams int
	// MaxHeaderListSize caps the decoded headers of one call; a larger
	// header list resets the stream.
	MaxHeaderListSize int
	// HandshakeTimeout bounds the TLS handshake and the HTTP/2 preface of a
	// new connection.
	HandshakeTimeout time.Duration
	// IdleTimeout closes (GOAWAY) a connection that has had no call in
	// flight for this long. Clients reconnect on their next call.
	IdleTimeout time.Duration
	// KeepaliveMinTime is the shortest interval between a client's pings
	// that the server accepts; faster pinging ends the connection (GOAWAY
	// ENHANCE_YOUR_CALM "too_many_pings"). berth's clients ping every 30 s,
	// with or without calls in flight.
	KeepaliveMinTime time.Duration
}

// Defaults of Limits. The unauthenticated ones bound the memory of a
// flood: MaxUnauthenticated connections of at most
// MaxUnauthenticatedStreams calls and MaxUnauthenticatedBytes each.
const (
	// A heartbeat replica holds one connection per node: 100,000 nodes
	// per instance plus the services and admins.
	DefaultMaxConnections = 200_000
	// Far above what two cores can handshake at once (about a thousand
	// handshakes a second), so a power-restore storm is never slowed by it.
	DefaultMaxUnauthenticated          = 1024
	DefaultMaxUnauthenticatedPerSource = 256
	DefaultMaxUnauthenticatedStreams   = 4
	DefaultMaxUnauthenticatedBytes     = 256 << 10
	DefaultUnauthenticatedMaxAge       = time.Minute
	// Service-to-service connections multiplex many calls (the
	// registration service's Sign calls to the CA in a first-boot storm);
	// gRPC clients queue calls above the limit.
	DefaultMaxConcurrentStreams = 1024
	DefaultMaxHeaderListSize    = 16 << 10
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultIdleTimeout          = 5 * time.Minute
	// berth's clients ping every 30 s; leave room for timer slack.
	DefaultKeepaliveMinTime = 10 * time.Second
)

// withDefaults fills every zero field with its default.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxConnections, DefaultMaxConnections)
	def(&l.MaxUnauthenticated, DefaultMaxUnauthenticated)
	def(&l.MaxUnauthenticatedPerSource, DefaultMaxUnauthenticatedPerSource)
	def(&l.MaxUnauthenticatedStreams, DefaultMaxUnauthenticatedStreams)
	def(&l.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	def(&l.MaxHeaderListSize, DefaultMaxHeaderListSize)
	if l.MaxUnauthenticatedBytes == 0 {
		l.MaxUnauthenticatedBytes = DefaultMaxUnauthenticatedBytes
	}
	if l.UnauthenticatedMaxAge == 0 {
		l.UnauthenticatedMaxAge = DefaultUnauthenticatedMaxAge
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.KeepaliveMinTime == 0 {
		l.KeepaliveMinTime = DefaultKeepaliveMinTime
	}
	return l
}

// Check reports limits that make no sense, such as a per-source cap above
// the listener's.
func (l Limits) Check() error {
	d := l.withDefaults()
	if d.MaxUnauthenticated > 0 && d.MaxConnections > 0 && d.MaxUnauthenticated > d.MaxConnections {
		return fmt.Errorf("the unauthenticated connection limit (%d) is above the connection limit (%d)", d.MaxUnauthenticated, d.MaxConnections)
	}
	if d.MaxUnauthenticatedPerSource > 0 && d.MaxUnauthenticated > 0 && d.MaxUnauthenticatedPerSource > d.MaxUnauthenticated {
		return fmt.Errorf("the per-source unauthenticated connection limit (%d) is above the listener's (%d)", d.MaxUnauthenticatedPerSource, d.MaxUnauthenticated)
	}
	if d.MaxHeaderListSize > 0 && d.MaxHeaderListSize < 1024 {
		return fmt.Errorf("the header list size limit (%d bytes) is below 1 KiB: no gRPC call would fit", d.MaxHeaderListSize)
	}
	return nil
}

// on reports whether a limit is set.
func on[T int | int64 | time.Duration](v T) bool { return v > 0 }
