package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/rpc"
)

// limitFlags are the connection limits of berthd's gRPC listener, as the
// flags give them: 0 means no limit.
type limitFlags struct {
	conns, unauth, perSource, streams int
	handshake, idle, unauthAge        time.Duration
}

func (l *limitFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&l.conns, "max-connections", rpc.DefaultMaxConnections, "connections the gRPC listener holds at once; above it new ones wait (0: no limit)")
	fs.IntVar(&l.unauth, "max-unauthenticated", rpc.DefaultMaxUnauthenticated, "connections not yet known as a node, service or admin (handshaking, bare keys) the listener holds at once; above it new ones wait (0: no limit)")
	fs.IntVar(&l.perSource, "max-unauthenticated-per-source", rpc.DefaultMaxUnauthenticatedPerSource, "unauthenticated connections from one IP address (IPv6: one /64); the next one is closed; known nodes never count (0: no limit)")
	fs.IntVar(&l.streams, "max-streams", rpc.DefaultMaxConcurrentStreams, "concurrent calls per connection (HTTP/2 MAX_CONCURRENT_STREAMS; 0: no limit)")
	fs.DurationVar(&l.unauthAge, "unauthenticated-max-age", rpc.DefaultUnauthenticatedMaxAge, "a connection still unauthenticated this long after it was accepted is closed (0: never)")
	fs.DurationVar(&l.handshake, "handshake-timeout", rpc.DefaultHandshakeTimeout, "time a new connection has for its TLS handshake (0: no limit)")
	fs.DurationVar(&l.idle, "idle-timeout", rpc.DefaultIdleTimeout, "a connection with no call in flight for this long is closed (GOAWAY; 0: never)")
}

// limits returns the rpc.Limits the flags describe.
func (l *limitFlags) limits() (rpc.Limits, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"--max-connections", int64(l.conns)}, {"--max-unauthenticated", int64(l.unauth)},
		{"--max-unauthenticated-per-source", int64(l.perSource)}, {"--max-streams", int64(l.streams)},
		{"--handshake-timeout", int64(l.handshake)}, {"--idle-timeout", int64(l.idle)},
		{"--unauthenticated-max-age", int64(l.unauthAge)},
	} {
		if f.v < 0 {
			return rpc.Limits{}, fmt.Errorf("%s must not be negative (0 turns the limit off)", f.name)
		}
	}
	out := rpc.Limits{
		MaxConnections:              off(l.conns),
		MaxUnauthenticated:          off(l.unauth),
		MaxUnauthenticatedPerSource: off(l.perSource),
		MaxConcurrentStreams:        off(l.streams),
		UnauthenticatedMaxAge:       off(l.unauthAge),
		HandshakeTimeout:            off(l.handshake),
		IdleTimeout:                 off(l.idle),
	}
	return out, out.Check()
}

// off turns a flag's 0 ("no limit") into rpc.Limits' negative value; in
// rpc.Limits 0 means the default.
func off[T int | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}
