package mtls

import (
	"crypto/tls"
	"errors"
	"slices"
)

// ProtoDeferrable is the application protocol (ALPN) a client offers
// after "h2" to say that its connection may be refused for now and tried
// again later: a node opening its heartbeat stream. A server with
// DeferStreams set may then refuse it as soon as its ClientHello is read,
// before any key exchange. The server still negotiates "h2"; a server that
// does not know the name ignores it.
const ProtoDeferrable = "berth-deferrable"

// Deferrable makes cfg offer ProtoDeferrable, after "h2" (which gRPC
// needs, and the gateway's front door tells gRPC by). It returns cfg.
func Deferrable(cfg *tls.Config) *tls.Config {
	cfg.NextProtos = []string{"h2", ProtoDeferrable}
	return cfg
}

// DeferStreams makes cfg refuse, during its handshake, each connection
// that offers ProtoDeferrable while deferNow says so. Only the
// ClientHello is read: a refusal costs a small part of a handshake, and
// the client sees the TLS alert "internal error". It returns cfg.
func DeferStreams(cfg *tls.Config, deferNow func() bool) *tls.Config {
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(hello.SupportedProtos, ProtoDeferrable) && deferNow() {
			return nil, ErrDeferred
		}
		return nil, nil
	}
	return cfg
}

// ErrDeferred is the server's side of a refused deferrable connection.
var ErrDeferred = errors.New("connection deferred: new heartbeat streams wait while the fleet boots")
