// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_*
// environment (OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER,
// OTEL_EXPORTER_OTLP_ENDPOINT and _PROTOCOL, OTEL_TRACES_SAMPLER and _ARG,
// OTEL_RESOURCE_ATTRIBUTES...; no exporter when none is configured) and
// Prometheus metrics served on /metrics, berth's own among them
// (internal/metrics).
package telemetry

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Telemetry holds the providers of one process.
type Telemetry struct {
	// TracerProvider is the SDK's when an exporter is configured, and
	// otherwise a no-op one, which records nothing and passes a caller's
	// trace context on unchanged: a span that no exporter will take still
	// costs its recording (IDs, attributes, a status, the end), about 3%
	// of the registration service's CPU per Register.
	TracerProvider trace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// Metrics serves the Prometheus exposition of this process's metrics.
	Metrics  http.Handler
	Registry *prometheus.Registry
	// traces flushes and stops the SDK's provider; nil without one.
	traces *sdktrace.TracerProvider
}

// tracingConfigured reports whether the standard environment asks for an
// exporter: one named by OTEL_TRACES_EXPORTER, or an OTLP endpoint.
// Without either berth traces into nothing rather than into a collector
// that is not there.
func tracingConfigured() bool {
	if os.Getenv("OTEL_SDK_DISABLED") == "true" || os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return os.Getenv("OTEL_TRACES_EXPORTER") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// New sets up tracing and metrics for a process named serviceName, a name
// OTEL_SERVICE_NAME overrides. The sampler is the SDK's, from
// OTEL_TRACES_SAMPLER (parent-based by default, which Untraced relies on).
func New(ctx context.Context, serviceName string) (*Telemetry, error) {
	// Later detectors win: the environment over berth's name.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, err
	}
	var traces *sdktrace.TracerProvider
	if tracingConfigured() {
		// OTEL_TRACES_EXPORTER (otlp, console, none) and, for otlp,
		// OTEL_EXPORTER_OTLP_PROTOCOL (grpc, http/protobuf).
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, err
		}
		traces = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pexp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	t := &Telemetry{
		TracerProvider: noop.NewTracerProvider(),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(pexp)),
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Registry:       reg,
		traces:         traces,
	}
	if traces != nil {
		t.TracerProvider = traces
	}
	return t, nil
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var err error
	if t.traces != nil {
		err = t.traces.Shutdown(ctx)
	}
	return errors.Join(err, t.MeterProvider.Shutdown(ctx))
}

// Untraced returns ctx under a parent span that is not sampled: work done
// with it, and the gRPC calls it makes (whose servers see the parent
// too), records no spans under the parent-based sampler. Background
// polling runs under it (health probes, revocation refreshes, the
// reconciler, retention), so that a collector receives the traces of what
// callers asked for rather than a span every few seconds per process.
func Untraced(ctx context.Context) context.Context {
	var tid trace.TraceID
	var sid trace.SpanID
	rand.Read(tid[:])
	rand.Read(sid[:])
	return trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
}
