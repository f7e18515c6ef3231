package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCallFloors runs the grpc, boot and register floors briefly, each against its
// own server process: operations made, none failed (a boot floor's boot
// counts only once its answer passed the node's checks), the server's CPU
// and both ends' measured, and the server's profile split into shares that
// add up.
func TestCallFloors(t *testing.T) {
	for _, tt := range []struct {
		scenario string
		run      func(context.Context, FloorConfig) (*FloorResult, error)
	}{
		{ScenarioGRPCFloor, GRPCFloor},
		{ScenarioBootFloor, BootFloor},
		{ScenarioRegisterFloor, RegisterFloor},
	} {
		t.Run(tt.scenario, func(t *testing.T) {
			res, err := tt.run(context.Background(), FloorConfig{
				Duration: time.Second, Concurrency: 4, ProfileDir: t.TempDir(), TempDir: t.TempDir(),
				Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Scenario != tt.scenario || res.Concurrency != 4 || res.Ops == 0 || len(res.Errors) != 0 {
				t.Fatalf("%s: %+v", tt.scenario, res)
			}
			if res.ServerCPUMsPerOp == nil || *res.ServerCPUMsPerOp <= 0 || res.CPUMsPerOp == nil || *res.CPUMsPerOp < *res.ServerCPUMsPerOp || res.CPUBoundPerS == nil {
				t.Errorf("server_cpu_ms_per_op = %v, cpu_ms_per_op_both_ends = %v, cpu_bound_ops_per_s = %v", res.ServerCPUMsPerOp, res.CPUMsPerOp, res.CPUBoundPerS)
			}
			var sum float64
			for _, v := range res.ServerCPUShares {
				sum += v
			}
			if res.ServerCPUShares[cpuHandshake] <= 0 || math.Abs(sum-1) > 0.01 {
				t.Errorf("server_cpu_shares = %v (sum %.3f), notes %v", res.ServerCPUShares, sum, res.Notes)
			}
		})
	}
}

// TestStreamFloor holds a handful of connections against the echo server:
// every one connects and is still open at the end, messages are echoed,
// and the server's memory per connection is measured.
func TestStreamFloor(t *testing.T) {
	res, err := StreamFloor(context.Background(), FloorConfig{
		Conns: 5, Concurrency: 2, Interval: 100 * time.Millisecond, Duration: time.Second, TempDir: t.TempDir(),
		Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != ScenarioStreamFloor || res.Connections != 5 || res.Held != 5 || res.Ops == 0 || len(res.Errors) != 0 {
		t.Fatalf("stream floor: %+v", res)
	}
	if res.ServerKBPerConn == nil || res.ServerHeapKBPerConn == nil || res.ServerStackKBPerConn == nil || res.ServerCPUMsPerOp == nil {
		t.Errorf("server figures missing: %+v", res)
	}
	if _, err := StreamFloor(context.Background(), FloorConfig{}); err == nil {
		t.Error("a stream floor without connections ran")
	}
}

// TestFloorCommand: the floor server's commands and their answers.
func TestFloorCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	var prof *os.File
	for _, tt := range []struct{ line, want string }{
		{"stop-profile", "error no profile is running"},
		{"profile " + path, "ok"},
		{"profile " + path, "error a profile is running"},
		{"stop-profile", "ok"},
		{"profile " + filepath.Join(t.TempDir(), "none", "cpu.pprof"), "error open "},
		{"dance", `error unknown command "dance"`},
	} {
		if got := floorCommand(tt.line, &prof); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%q: %q, want %q", tt.line, got, tt.want)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Errorf("profile not written: %v", err)
	}
	var heap, stack int64
	if mem := floorCommand("mem", &prof); func() error { _, err := fmt.Sscanf(mem, "heap %d stack %d", &heap, &stack); return err }() != nil || heap <= 0 || stack <= 0 {
		t.Errorf("mem: %q", mem)
	}
}

func TestCPUClass(t *testing.T) {
	tests := []struct {
		name  string
		funcs []string // leaf first
		want  string
	}{
		{"handshake under gRPC", []string{"crypto/ecdsa.Verify", "crypto/tls.(*Conn).handshakeContext", "google.golang.org/grpc.(*Server).handleRawConn"}, cpuHandshake},
		{"handshake's read", []string{"syscall.Syscall", "net.(*conn).Read", "crypto/tls.(*Conn).readRecord", "crypto/tls.(*Conn).handshakeContext"}, cpuHandshake},
		{"berth's chain check", []string{"crypto/x509.(*Certificate).Verify", "github.com/berth-dev/berth/internal/mtls.VerifyPeer", "google.golang.org/grpc.(*Server).handleRawConn"}, cpuHandshake},
		{"read under berth's connection", []string{"internal/runtime/syscall.Syscall6", "syscall.read", "net.(*conn).Read", "github.com/berth-dev/berth/internal/rpc.(*trackedConn).Read"}, cpuSyscalls},
		{"the CA's signature", []string{"crypto/internal/fips140/nistec.p256MulInternal", "crypto/ecdsa.SignASN1", "crypto/x509.CreateCertificate",
			"github.com/berth-dev/berth/internal/pki.(*Signer).Sign", "github.com/berth-dev/berth/internal/loadgen.floorRegister.Register"}, cpuSigning},
		{"record decryption", []string{"crypto/internal/fips140/aes/gcm.open", "crypto/tls.(*Conn).readRecord", "google.golang.org/grpc/internal/transport.(*http2Server).HandleStreams"}, cpuRecords},
		{"stats handler", []string{"go.opentelemetry.io/otel/sdk/metric.(*int64Inst).Add", "google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders"}, cpuOTel},
		{"interceptor", []string{"log/slog.(*Logger).With", "github.com/berth-dev/berth/internal/rpc.unaryChain.func1", "google.golang.org/grpc.(*Server).processUnaryRPC"}, cpuBerthRPC},
		{"message under the interceptor", []string{"runtime.mallocgc", "google.golang.org/protobuf/proto.Unmarshal", "google.golang.org/grpc.(*serverStream).RecvMsg",
			"github.com/berth-dev/berth/internal/rpc.NewServer.streamChain.func4"}, cpuGRPC},
		{"framing", []string{"runtime.mallocgc", "golang.org/x/net/http2.(*Framer).ReadFrame", "google.golang.org/grpc/internal/transport.(*http2Server).HandleStreams"}, cpuGRPC},
		{"garbage collection", []string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, cpuRuntime},
		{"elsewhere", []string{"sync.(*Mutex).Lock", "time.Sleep"}, cpuOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuClass(tt.funcs); got != tt.want {
				t.Errorf("cpuClass = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestReportFloors: the figures next to their floors, each goal judged
// against its floor, in the table and the summary.
func TestReportFloors(t *testing.T) {
	results := []map[string]any{
		{"scenario": "ceiling", "handshakes_per_s": 1000.0, "cpu_ms_per_handshake": 2.0, "cpu_bound_handshakes_per_s": 1000.0},
		{"scenario": "storm", "nodes": 300.0, "ok": 300.0, "throughput_per_s": 400.0, "server_cpu_ms_per_op": 2.0, "errors": map[string]any{}},
		{"scenario": "heartbeat", "nodes": 300.0, "ok": 300.0, "throughput_per_s": 60.0, "interval_s": 5.0,
			"server_cpu_ms_per_op": 0.25, "heartbeat_kb_per_node": 80.0, "errors": map[string]any{}},
		{"scenario": "grpc-floor", "ops": 6000.0, "ops_per_s": 600.0, "server_cpu_ms_per_op": 0.9, "cpu_bound_ops_per_s": 700.0, "errors": map[string]any{},
			"server_cpu_shares": map[string]any{"tls_handshake": 0.6, "grpc_http2": 0.4}},
		{"scenario": "stream-floor", "ops": 1800.0, "ops_per_s": 60.0, "server_cpu_ms_per_op": 0.04,
			"server_kb_per_conn": 20.0, "server_heap_kb_per_conn": 12.5, "server_stack_kb_per_conn": 4.0, "errors": map[string]any{},
			"server_cpu_shares": map[string]any{"grpc_http2": 0.5, "runtime": 0.5}},
	}
	var out strings.Builder
	summary, err := Report(&out, results)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Resume throughput / ceiling", "0.400", "0.600 (600.0 calls/s)", ">= 0.850", "OUT OF REACH: the floor is 0.71 × the goal; berth is 0.67 × the floor",
		"Resume throughput / ceiling, all cores busy (CPU of both ends, and PostgreSQL's for berth)", "0.700 (700.0 calls/s against 1000.0 handshakes/s)", "OUT OF REACH: the floor is 0.82 × the goal\n",
		"server CPU per Resume", "2.000 ms", "0.900 ms", "<= 0.800 ms", "OUT OF REACH: the floor is 1.12 × the goal; berth is 2.22 × the floor; scaled by this run's handshake (1.000 ms, the issue's 0.6 ms) the goal is 1.333 ms and the floor 0.67 × it: within reach",
		"heartbeat server CPU per beat", "0.2500 ms", "0.0400 ms", "within reach: the floor is 0.80 × the goal; berth is 6.25 × the floor; scaled by this run's handshake (1.000 ms, the issue's 0.6 ms) the goal is 0.0833 ms and the floor 0.48 × it: within reach",
		"heartbeat memory per connected node", "80.0 KiB", "20.0 KiB (live heap 12.5 KiB and stacks 4.0 KiB: 1.03 × the goal without any garbage)", "<= 16.0 KiB", "OUT OF REACH: the floor is 1.25 × the goal; berth is 4.00 × the floor",
		"grpc-floor server CPU per call by the profile: tls_handshake 60% (0.540 ms), grpc_http2 40% (0.360 ms).",
		"stream-floor server CPU per message by the profile: grpc_http2 50% (0.020 ms), runtime 50% (0.020 ms).",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if summary["resume_ceiling_ratio_floor"] != 0.6 || summary["resume_server_cpu_ms_floor"] != 0.9 ||
		summary["heartbeat_cpu_ms_per_beat_floor"] != 0.04 || summary["heartbeat_kb_per_node_floor"] != 20.0 || summary["resume_cpu_bound_ceiling_ratio_floor"] != 0.7 {
		t.Errorf("summary: %v", summary)
	}
	floors, _ := summary["floors"].([]map[string]any)
	if len(floors) != 5 || floors[2]["goal_scaled_ms"] != 1.3333 || floors[2]["out_of_reach_scaled"] != false || floors[0]["goal_scaled_ms"] != nil {
		t.Errorf("floors: %v", floors)
	}
	var reach []bool
	for _, f := range floors {
		reach = append(reach, f["out_of_reach"].(bool))
	}
	if want := []bool{true, true, true, false, true}; !slices.Equal(reach, want) {
		t.Errorf("out_of_reach = %v, want %v", reach, want)
	}
}

// TestReportFloorsAlone: floors without berth's figures or a ceiling
// still get their rows where they can be judged, and none where not.
func TestReportFloorsAlone(t *testing.T) {
	results := []map[string]any{
		{"scenario": "stream-floor", "ops": 10.0, "ops_per_s": 1.0, "server_cpu_ms_per_op": 0.1, "errors": map[string]any{}},
	}
	var out strings.Builder
	summary, err := Report(&out, results)
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !strings.Contains(text, "OUT OF REACH: the floor is 2.00 × the goal\n") || strings.Contains(text, "Resume throughput / ceiling") ||
		strings.Contains(text, "memory per connected node") {
		t.Errorf("report:\n%s", text)
	}
	if _, ok := summary["resume_ceiling_ratio_floor"]; ok {
		t.Errorf("summary has a Resume floor without a ceiling: %v", summary)
	}
}
