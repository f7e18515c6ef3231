package loadgen

import (
	"errors"
	"os"
	"strings"

	"github.com/google/pprof/profile"
)

// CPU classes of the floor server's profile (cpuClass).
const (
	cpuHandshake = "tls_handshake"
	cpuOTel      = "otel"
	cpuBerthRPC  = "berth_rpc"
	cpuGRPC      = "grpc_http2"
	cpuRuntime   = "runtime"
	cpuOther     = "other"
)

// cpuClass names what a CPU sample was spent on from the functions of its
// stack, the first class that applies: the full TLS handshake with
// berth's check of the client's chain; OpenTelemetry's instrumentation
// and berth's interceptors and connection limits (what rpc.NewServer adds
// around gRPC); gRPC and HTTP/2 themselves (a connection's setup, its
// framing, the call, protobuf and the TLS records after the handshake,
// allocations made there included); the Go runtime alone (garbage
// collection, scheduling); anything else (accepting, system calls).
func cpuClass(funcs []string) string {
	has := func(prefixes ...string) bool {
		for _, f := range funcs {
			for _, p := range prefixes {
				if strings.HasPrefix(f, p) {
					return true
				}
			}
		}
		return false
	}
	switch {
	case has("crypto/tls.(*Conn).handshakeContext", "crypto/tls.(*Conn).HandshakeContext", "github.com/berth-dev/berth/internal/mtls."):
		return cpuHandshake
	case has("go.opentelemetry.io/"):
		return cpuOTel
	case has("github.com/berth-dev/berth/internal/rpc."):
		return cpuBerthRPC
	case has("google.golang.org/grpc", "golang.org/x/net/http2", "google.golang.org/protobuf"):
		return cpuGRPC
	}
	for _, f := range funcs {
		if !strings.HasPrefix(f, "runtime.") {
			return cpuOther
		}
	}
	return cpuRuntime
}

// profileShares reads a CPU profile and returns each class's share of its
// CPU time.
func profileShares(path string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, err
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			idx = i
		}
	}
	if idx < 0 {
		return nil, errors.New("not a CPU profile")
	}
	byClass := map[string]int64{}
	var total int64
	for _, s := range p.Sample {
		var funcs []string
		for _, loc := range s.Location {
			for _, l := range loc.Line {
				if l.Function != nil {
					funcs = append(funcs, l.Function.Name)
				}
			}
		}
		byClass[cpuClass(funcs)] += s.Value[idx]
		total += s.Value[idx]
	}
	if total == 0 {
		return nil, errors.New("the profile holds no samples")
	}
	shares := map[string]float64{}
	for k, v := range byClass {
		shares[k] = round(float64(v)/float64(total), 3)
	}
	return shares, nil
}
