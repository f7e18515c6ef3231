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
	cpuSigning   = "ca_signing"
	cpuRecords   = "tls_records"
	cpuSyscalls  = "syscalls"
	cpuOTel      = "otel"
	cpuBerthRPC  = "berth_rpc"
	cpuGRPC      = "grpc_http2"
	cpuRuntime   = "runtime"
	cpuOther     = "other"
)

// cpuGroups are the classes of the frames of a stack, by function name
// prefix, for cpuClass's walk from the leaf.
var cpuGroups = []struct {
	class    string
	prefixes []string
}{
	{cpuSyscalls, []string{"syscall.", "internal/runtime/syscall", "runtime/internal/syscall"}},
	{cpuRecords, []string{"crypto/"}},
	{cpuOTel, []string{"go.opentelemetry.io/"}},
	{cpuBerthRPC, []string{"github.com/berth-dev/berth/"}},
	{cpuGRPC, []string{"google.golang.org/grpc", "golang.org/x/net/http2", "google.golang.org/protobuf"}},
}

// cpuClass names what a CPU sample was spent on from the functions of its
// stack (leaf first). A sample anywhere under a TLS handshake (berth's
// check of the client's chain included) is the handshake's, and one under
// berth's CA (the register floor's signing: the CSR's check, the
// signature, Go's check of it) the signing's. Otherwise the
// frame nearest the leaf that belongs to a group decides: system calls
// (reading, writing, accepting), the cryptography of TLS records after the
// handshake, OpenTelemetry's instrumentation, berth's code (interceptors,
// connection limits, the floor's handler), gRPC with HTTP/2 and protobuf;
// the runtime and the standard library between them take the class of
// their caller, so an allocation made by gRPC is gRPC's. A stack of the
// runtime alone (garbage collection, scheduling) is the runtime's, and
// anything else other.
func cpuClass(funcs []string) string {
	for _, f := range funcs {
		if strings.HasPrefix(f, "crypto/tls.(*Conn).handshakeContext") || strings.HasPrefix(f, "crypto/tls.(*Conn).HandshakeContext") ||
			strings.HasPrefix(f, "github.com/berth-dev/berth/internal/mtls.") {
			return cpuHandshake
		}
	}
	for _, f := range funcs {
		if strings.HasPrefix(f, "github.com/berth-dev/berth/internal/pki.") {
			return cpuSigning
		}
	}
	runtimeOnly := true
	for _, f := range funcs {
		for _, g := range cpuGroups {
			for _, p := range g.prefixes {
				if strings.HasPrefix(f, p) {
					return g.class
				}
			}
		}
		if !strings.HasPrefix(f, "runtime.") {
			runtimeOnly = false
		}
	}
	if runtimeOnly {
		return cpuRuntime
	}
	return cpuOther
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
