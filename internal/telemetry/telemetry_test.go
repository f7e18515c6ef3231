package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// noTracingEnv clears the variables that configure a trace exporter.
func noTracingEnv(t *testing.T) {
	for _, v := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(v, "")
	}
}

// TestNoExporterRecordsNoSpans: without an exporter a process records no
// span, and a caller's trace context goes on unchanged to the calls it
// makes, so a trace crossing it reaches the next service that exports.
func TestNoExporterRecordsNoSpans(t *testing.T) {
	noTracingEnv(t)
	tel, err := New(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	tracer := tel.TracerProvider.Tracer("test")

	_, span := tracer.Start(context.Background(), "no parent")
	if span.IsRecording() {
		t.Error("a span without a parent is recorded with no exporter configured")
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3},
		SpanID:     trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	ctx, span := tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "child")
	if span.IsRecording() {
		t.Error("a sampled caller's span is recorded with no exporter configured")
	}
	if got := trace.SpanContextFromContext(ctx); got.TraceID() != parent.TraceID() || !got.IsSampled() {
		t.Errorf("calls made under the span carry %v, not the caller's sampled trace %v", got.TraceID(), parent.TraceID())
	}
}

// TestExporterRecordsSpans: with an exporter configured, spans are
// recorded.
func TestExporterRecordsSpans(t *testing.T) {
	noTracingEnv(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	tel, err := New(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	// Not ended: the console exporter would print it.
	_, span := tel.TracerProvider.Tracer("test").Start(context.Background(), "recorded")
	if !span.IsRecording() {
		t.Error("a span is not recorded with OTEL_TRACES_EXPORTER=console")
	}
}
