package rpc

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/telemetry"
)

// TestTraceContextCrossesCalls checks that a server span joins the trace of
// the client that called it, so one request is one trace across services.
func TestTraceContextCrossesCalls(t *testing.T) {
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prop := propagation.TraceContext{}
	srvCert, _ := layout.ServiceCertificate(pki.ServiceCA)
	srv := NewServer(ServerConfig{Name: "t", TrustDomain: layout.TrustDomain, Cert: srvCert, Roots: layout.RootPool(), TracerProvider: tp, Propagator: prop})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	cliCert, _ := layout.ServiceCertificate(pki.ServiceRegistration)
	cfg := mtls.ClientConfig(cliCert, layout.RootPool())
	cfg.ServerName = "127.0.0.1"
	conn, err := Dial(ClientConfig{Addr: lis.Addr().String(), TLS: cfg, TracerProvider: tp, Propagator: prop})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, parent := tp.Tracer("test").Start(context.Background(), "boot")
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	srv.GracefulStop()

	var client, server sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindClient:
			client = s
		case trace.SpanKindServer:
			server = s
		}
	}
	if client == nil || server == nil {
		t.Fatalf("want a client and a server span, got %d spans", len(rec.Ended()))
	}
	traceID := parent.SpanContext().TraceID()
	if client.SpanContext().TraceID() != traceID || server.SpanContext().TraceID() != traceID {
		t.Fatal("client and server spans are not in the caller's trace")
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() {
		t.Fatal("server span's parent is not the client span")
	}
}

// TestUntracedCallsMakeNoSpans: a call made under telemetry.Untraced, as
// background polling is, records no span on either side, while a call
// with no trace at all still starts one.
func TestUntracedCallsMakeNoSpans(t *testing.T) {
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prop := propagation.TraceContext{}
	srvCert, _ := layout.ServiceCertificate(pki.ServiceCA)
	srv := NewServer(ServerConfig{Name: "t", TrustDomain: layout.TrustDomain, Cert: srvCert, Roots: layout.RootPool(), TracerProvider: tp, Propagator: prop})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	cliCert, _ := layout.ServiceCertificate(pki.ServiceRegistration)
	cfg := mtls.ClientConfig(cliCert, layout.RootPool())
	cfg.ServerName = "127.0.0.1"
	conn, err := Dial(ClientConfig{Addr: lis.Addr().String(), TLS: cfg, TracerProvider: tp, Propagator: prop})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	for range 3 {
		if _, err := health.Check(telemetry.Untraced(context.Background()), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	srv.GracefulStop()
	// Only the last call's client and server spans.
	if got := len(rec.Ended()); got != 2 {
		t.Fatalf("%d spans recorded, want 2: those of the one traced call", got)
	}
}
