package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// DefaultMaxRecvMsgSize bounds every request; larger ones get ResourceExhausted.
const DefaultMaxRecvMsgSize = 4 << 20

// connBufferSize is each connection's write buffer. gRPC's default is 32
// KiB; a heartbeat replica holds one mostly idle connection per node. It
// is shared: taken from a pool for a write and given back after it.
const connBufferSize = 8 << 10

// readBufferSize 0 reads frames straight from the TLS connection, which
// buffers a whole record itself: a bufio.Reader in front of it would
// hold connBufferSize more per connection, for as long as it is open,
// for nothing (a beat is one record, read with one system call either
// way).
const readBufferSize = 0

// windowSize is each stream's and each connection's HTTP/2 flow-control
// window, fixed. Left unset, gRPC estimates the bandwidth-delay product
// by sending a PING with every burst of data a connection receives and
// timing its answer: on a heartbeat connection that is a PING and its
// acknowledgement, each way through TLS, for every beat. Fixed windows
// turn the estimator off. 1 MiB lets a bundle (DefaultMaxBundleSize)
// cross in one round trip, as the estimator would have grown it to; the
// window is credit, not memory: gRPC allocates only what arrives.
const windowSize = 1 << 20

// serverWindowSize is what a server grants its clients, fixed too, but at
// gRPC's own initial size: a server that refuses a request over
// MaxRecvMsgSize must have let little of it in, or the client, still
// sending into a large window when the stream is refused, loses the
// whole connection and reads Unavailable (which an agent retries) instead
// of ResourceExhausted. Nodes receive bundles through their own (client)
// window, so downloads keep windowSize.
const serverWindowSize = 64 << 10

// ServerConfig describes one gRPC server.
type ServerConfig struct {
	// Name is the service name used in logs (e.g. "registration" or "all").
	Name        string
	Logger      *slog.Logger
	TrustDomain string
	// Cert is the server's certificate; its chain should end with the root
	// so that nodes can check it against their pinned CA hash.
	Cert   tls.Certificate
	Roots  *x509.CertPool
	Policy Policy
	// TracerProvider and MeterProvider instrument the server; nil uses no-ops.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Propagator carries trace context across services; nil uses none.
	Propagator     propagation.TextMapPropagator
	MaxRecvMsgSize int
	// Limits bound what the server spends on its peers; zero fields take
	// their defaults.
	Limits Limits
	// OnUnavailable, if set, is called each time a handler answers
	// Unavailable, so that health re-checks the dependencies at once.
	OnUnavailable func()
	// Bearer, when set, makes the server a front door for the admin API:
	// a call may present an API token ("authorization: Bearer TOKEN")
	// instead of a client certificate, which the handshake then asks for
	// without requiring it. Calls without either are refused by the
	// interceptor (Unauthenticated), and nodes and services still prove
	// themselves with their certificates. Without Bearer every connection
	// must present a certificate and tokens are refused.
	Bearer BearerAuth
	// DeferStreams, when set, is asked for each new connection that
	// offers mtls.ProtoDeferrable (a node opening its heartbeat stream):
	// true refuses it during the handshake, before any key exchange, and
	// the node retries later (liveness.Core.DeferStream).
	DeferStreams func() bool
}

// Server is a gRPC server with its health service. Serve applies the
// connection limits to every listener it is given.
type Server struct {
	*grpc.Server
	Health *health.Server
	limits *connLimiter
}

// Serve accepts connections on lis within the server's limits, as
// grpc.Server.Serve does.
func (s *Server) Serve(lis net.Listener) error {
	return s.Server.Serve(s.limits.listen(lis))
}

// NewServer builds a server with mTLS, the interceptor chain, health and
// reflection. Register services on it, then call Serve.
func NewServer(c ServerConfig) *Server {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxRecvMsgSize == 0 {
		c.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	p := Merge(c.Policy, PolicyFor(serverServices()...))
	lim := newConnLimiter(c.Limits.withDefaults(), newLimitMetrics(c.MeterProvider, c.Name))
	observeUnauthenticated(c.MeterProvider, c.Name, lim)
	tlsCfg := mtls.ServerConfig(c.Cert)
	if c.Bearer != nil {
		tlsCfg.ClientAuth = tls.RequestClientCert
	}
	if c.DeferStreams != nil {
		mtls.DeferStreams(tlsCfg, c.DeferStreams)
	}
	creds := mtls.NewServerCredentials(credentials.NewTLS(tlsCfg), c.TrustDomain, c.Roots)
	log := c.Logger.With(AttrService, c.Name)
	opts := []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(unaryChain(log, p, c.Bearer)),
		grpc.ChainStreamInterceptor(streamChain(log, p, c.Bearer)),
		grpc.MaxRecvMsgSize(c.MaxRecvMsgSize),
		grpc.ReadBufferSize(readBufferSize),
		grpc.WriteBufferSize(connBufferSize),
		grpc.SharedWriteBuffer(true),
		grpc.InitialWindowSize(serverWindowSize),
		grpc.InitialConnWindowSize(serverWindowSize),
		grpc.StatsHandler(connStats{lim: lim}),
		grpc.InTapHandle(lim.tap(p, c.Bearer != nil)),
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOptions(c.TracerProvider, c.MeterProvider, c.Propagator)...)),
	}
	opts = append(opts, limitOptions(lim.limits)...)
	// Innermost, after the chain above: it sees what the handler answered.
	opts = append(opts, unavailableHooks(c.OnUnavailable)...)
	s := &Server{Server: grpc.NewServer(opts...), Health: health.NewServer(), limits: lim}
	healthpb.RegisterHealthServer(s.Server, s.Health)
	reflection.Register(s.Server)
	registerVersion(s.Server)
	return s
}

// limitOptions are the gRPC options of the limits that gRPC enforces itself.
func limitOptions(l Limits) []grpc.ServerOption {
	// Clients ping idle connections too (PermitWithoutStream), so the
	// server must allow it; only the rate is enforced.
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: max(l.KeepaliveMinTime, 0), PermitWithoutStream: true}),
	}
	if on(l.MaxConcurrentStreams) {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(l.MaxConcurrentStreams)))
	}
	if on(l.MaxHeaderListSize) {
		opts = append(opts, grpc.MaxHeaderListSize(uint32(l.MaxHeaderListSize)))
	}
	if on(l.HandshakeTimeout) {
		opts = append(opts, grpc.ConnectionTimeout(l.HandshakeTimeout))
	}
	if on(l.IdleTimeout) {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.IdleTimeout}))
	}
	return opts
}

// serverServices are the services every server built by NewServer has.
func serverServices() []string {
	return []string{
		healthpb.Health_ServiceDesc.ServiceName,
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		berthv1.VersionService_ServiceDesc.ServiceName,
	}
}

func otelOptions(tp trace.TracerProvider, mp metric.MeterProvider, prop propagation.TextMapPropagator) []otelgrpc.Option {
	var o []otelgrpc.Option
	if prop != nil {
		o = append(o, otelgrpc.WithPropagators(prop))
	}
	if tp != nil {
		o = append(o, otelgrpc.WithTracerProvider(tp))
	}
	if mp != nil {
		o = append(o, otelgrpc.WithMeterProvider(mp))
	}
	return o
}
