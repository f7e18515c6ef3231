package rpc

import (
	"crypto/tls"
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// ClientConfig describes a long-lived client connection between services or
// from a CLI.
type ClientConfig struct {
	Addr           string
	TLS            *tls.Config
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// Options are appended to the defaults (tests add a bufconn dialer).
	Options []grpc.DialOption
}

// Dial opens a client connection. The connection is lazy: errors surface on
// the first call as Unavailable.
func Dial(c ClientConfig) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(c.TLS)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOptions(c.TracerProvider, c.MeterProvider, c.Propagator)...)),
		grpc.WithReadBufferSize(connBufferSize),
		grpc.WithWriteBufferSize(connBufferSize),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithInitialWindowSize(windowSize),
		grpc.WithInitialConnWindowSize(windowSize),
	}
	conn, err := grpc.NewClient(c.Addr, append(opts, c.Options...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.Addr, err)
	}
	return conn, nil
}
