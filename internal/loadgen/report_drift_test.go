package loadgen

import (
	"encoding/json"
	"strings"
	"testing"
)

// A machine that slowed down between scenarios: the run's ceiling was
// 1,000/s, step-ca's probe 900/s, the register floor's 600/s and
// register's 500/s. Against the run's ceiling register reaches 0.40 of
// step-ca and its floor 0.60; each against its own probe, 0.80 and 1.00.
// With every core busy, each side's CPU per operation against its probe's
// CPU per handshake.
func TestReportDrift(t *testing.T) {
	probe := func(name string, rate float64) map[string]any {
		return map[string]any{"scenario": "ceiling", "probe_for": name, "handshakes_per_s": rate, "errors": map[string]any{},
			"cores": 2.0, "cpu_bound_handshakes_per_s": 1000.0}
	}
	results := []map[string]any{
		{"scenario": "ceiling", "handshakes_per_s": 1000.0, "cpu_ms_per_handshake": 2.0, "cpu_bound_handshakes_per_s": 1000.0, "cores": 2.0},
		probe("register-floor", 600),
		{"scenario": "register-floor", "ops": 6000.0, "ops_per_s": 600.0, "cpu_bound_ops_per_s": 900.0, "errors": map[string]any{}},
		probe("boot-floor", 800),
		{"scenario": "boot-floor", "ops": 6000.0, "ops_per_s": 720.0, "cpu_bound_ops_per_s": 800.0, "errors": map[string]any{}},
		probe("register", 500),
		// 2.0 + 1.5 + 0.5 ms per registration: 500/s on two cores.
		{"scenario": "register", "nodes": 1000.0, "ok": 1000.0, "throughput_per_s": 400.0, "errors": map[string]any{},
			"server_cpu_ms_per_op": 2.0, "loadgen_cpu_ms_per_op": 1.5, "db_cpu_ms_per_op": 0.5},
		probe("stepca-sign", 900),
		// 1.0 ms of step-ca's and 1.0 of its client's per sign: 1,000/s.
		{"scenario": "stepca-sign", "nodes": 1000.0, "ok": 1000.0, "throughput_per_s": 1000.0, "errors": map[string]any{},
			"server_cpu_ms_per_op": 1.0, "loadgen_cpu_ms": 1000.0},
		probe("storm", 700),
		// 1.0 + 2.0 + 2.0 ms per boot: 400/s.
		{"scenario": "storm", "nodes": 1000.0, "ok": 1000.0, "throughput_per_s": 420.0, "errors": map[string]any{},
			"server_cpu_ms_per_op": 1.0, "loadgen_cpu_ms_per_op": 2.0, "db_cpu_ms_per_op": 2.0},
		// A probe whose result is missing from the run is said, not used.
		probe("storm_restarted", 650),
		// So is a probe that measured nothing (its ceiling failed).
		probe("grpc-floor", 0),
		{"scenario": "grpc-floor", "ops": 6000.0, "ops_per_s": 1100.0, "errors": map[string]any{}},
	}
	var out strings.Builder
	summary, err := Report(&out, results)
	if err != nil {
		t.Fatal(err)
	}
	// The table's columns are padded: compare words.
	text := strings.Join(strings.FieldsFunc(out.String(), func(r rune) bool { return r == ' ' }), " ")
	for _, want := range []string{
		"register 400.0 500.0 handshakes/s 0.800 0.50",
		"stepca-sign 1000.0 900.0 handshakes/s 1.111 0.90",
		"storm_restarted - 650.0 handshakes/s no result of that name in this run",
		"grpc-floor - 0.0 handshakes/s the probe measured no handshakes: no share",
		// 0.600 of the storm's probe against 0.900 of the boot floor's.
		"Resume throughput / the ceiling just before it, against a node's least boot 0.600 0.900 >= 0.850 within reach: the floor is 1.06 × the goal; berth is 0.67 × the floor",
		// register 0.8 and its floor 1.0 of their probes, step-ca 1.111 of its.
		"first registration / step-ca's /sign, each against the ceiling just before it, against a node's least first registration 0.72 0.90 >= 1.00 OUT OF REACH: the floor is 0.90 × the goal; berth is 0.80 × the floor",
		"Resume throughput / the ceiling just before it, all cores busy (CPU of both ends and PostgreSQL), against a node's least boot 0.400 0.800 >= 0.850 OUT OF REACH: the floor is 0.94 × the goal; berth is 0.50 × the floor",
		"first registration / step-ca's /sign, each against the ceiling just before it, all cores busy (CPU of both ends and PostgreSQL), against a node's least first registration 0.50 0.90 >= 1.00 OUT OF REACH: the floor is 0.90 × the goal; berth is 0.56 × the floor",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	// A probe is not the run's ceiling: the storm is still judged against 1,000/s.
	if got := summary["storm_boots_per_ceiling_handshake"]; got != 0.42 {
		t.Errorf("storm against the run's ceiling = %v, want 0.42", got)
	}
	for key, want := range map[string]float64{
		"resume_probed_ratio": 0.6, "resume_probed_ratio_floor": 0.9,
		"register_per_stepca_sign_probed": 0.72, "register_per_stepca_sign_probed_floor": 0.9,
		"resume_probed_ratio_cpu_bound": 0.4, "resume_probed_ratio_cpu_bound_floor": 0.8,
		"register_per_stepca_sign_probed_cpu_bound": 0.5, "register_per_stepca_sign_probed_cpu_bound_floor": 0.9,
	} {
		if got := summary[key]; got != want {
			t.Errorf("summary[%s] = %v, want %v", key, got, want)
		}
	}
	if strings.Contains(text, "after a restart") || strings.Contains(text, "berthd dev") {
		t.Errorf("a row for a deployment this run did not measure:\n%s", out.String())
	}
	if _, ok := summary["resume_restarted_probed_ratio"]; ok {
		t.Errorf("a comparison without its result: %v", summary)
	}
	if probes, _ := summary["probes"].([]map[string]any); len(probes) != 5 {
		t.Errorf("summary probes = %v, want the 5 results that have one", summary["probes"])
	}
}

// Without probes (BENCH_PROBE_DURATION=0, or results from before them)
// the report has no such section.
func TestReportNoProbes(t *testing.T) {
	var out strings.Builder
	summary, err := Report(&out, []map[string]any{
		{"scenario": "ceiling", "handshakes_per_s": 1000.0},
		{"scenario": "storm", "nodes": 10.0, "ok": 10.0, "throughput_per_s": 420.0, "errors": map[string]any{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "ceiling just before") || summary["probes"] != nil {
		t.Errorf("a drift section without probes:\n%s", out.String())
	}
}

// A probe says whose it is, in its text and in its JSON; the run's own
// ceiling has no probe_for, so that no report takes it for a probe.
func TestCeilingProbeOutput(t *testing.T) {
	for _, tt := range []struct {
		probeFor, text, json string
		probe                bool
	}{
		{"storm", "ceiling just before storm: 900.0 full mTLS handshakes/s", `"probe_for":"storm"`, true},
		{"", "ceiling: 900.0 full mTLS handshakes/s", `"cpu_bound_handshakes_per_s":1000`, false},
	} {
		r := &CeilingResult{Scenario: ScenarioCeiling, HandshakesPerS: 900, CPUMsPerHandshake: 2, CPUBoundPerS: 1000, ProbeFor: tt.probeFor}
		var out strings.Builder
		if err := WriteCeilingText(&out, r); err != nil || !strings.HasPrefix(out.String(), tt.text) {
			t.Errorf("probe for %q: text %q (%v), want it to start with %q", tt.probeFor, out.String(), err, tt.text)
		}
		b, err := json.Marshal(r)
		if err != nil || !strings.Contains(string(b), tt.json) || strings.Contains(string(b), "probe_for") != tt.probe {
			t.Errorf("probe for %q: JSON %s (%v)", tt.probeFor, b, err)
		}
	}
}

// The floor table's rows with every core busy give berth's own figure too,
// from the servers', the agents' and PostgreSQL's CPU per operation (step-ca's
// and its client's for the yardstick), against the run's ceiling.
func TestReportCPUBoundBerth(t *testing.T) {
	results := []map[string]any{
		{"scenario": "ceiling", "handshakes_per_s": 1000.0, "cpu_ms_per_handshake": 2.0, "cpu_bound_handshakes_per_s": 1000.0, "cores": 2.0},
		// 1.0 + 2.0 + 1.0 ms per boot: 500/s on two cores.
		{"scenario": "storm", "nodes": 300.0, "ok": 300.0, "throughput_per_s": 400.0, "errors": map[string]any{},
			"server_cpu_ms_per_op": 1.0, "loadgen_cpu_ms_per_op": 2.0, "db_cpu_ms_per_op": 1.0},
		{"scenario": "boot-floor", "ops": 5000.0, "ops_per_s": 500.0, "cpu_bound_ops_per_s": 600.0, "errors": map[string]any{}},
		// 2.0 + 1.5 + 0.5 ms per registration: 500/s; step-ca 1.0 + 1.0 ms per sign: 1,000/s.
		{"scenario": "register", "nodes": 1000.0, "ok": 1000.0, "throughput_per_s": 400.0, "errors": map[string]any{},
			"server_cpu_ms_per_op": 2.0, "loadgen_cpu_ms_per_op": 1.5, "db_cpu_ms_per_op": 0.5},
		{"scenario": "stepca-sign", "nodes": 1000.0, "ok": 1000.0, "throughput_per_s": 1000.0, "server_cpu_ms_per_op": 1.0, "loadgen_cpu_ms": 1000.0, "errors": map[string]any{}},
		{"scenario": "register-floor", "ops": 8000.0, "ops_per_s": 800.0, "cpu_bound_ops_per_s": 900.0, "errors": map[string]any{}},
	}
	var out strings.Builder
	if _, err := Report(&out, results); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.FieldsFunc(out.String(), func(r rune) bool { return r == ' ' }), " ")
	for _, want := range []string{
		"the same, all cores busy (CPU of both ends, and PostgreSQL's for berth) 0.500 0.600 (600.0 boots/s against 1000.0 handshakes/s) >= 0.850 OUT OF REACH: the floor is 0.71 × the goal; berth is 0.83 × the floor",
		"the same, all cores busy (CPU of both ends, and PostgreSQL's for berth) 0.50 0.90 (900.0 registrations/s against 1000.0 signs/s (2.000 ms per sign, step-ca and its client)) >= 1.00 OUT OF REACH: the floor is 0.90 × the goal; berth is 0.56 × the floor",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// step-ca's CPU without its client's would flatter it: with no client CPU
// there is no figure with every core busy, rather than one from the
// server alone.
func TestReportStepCAWithoutClientCPU(t *testing.T) {
	var out strings.Builder
	summary, err := Report(&out, []map[string]any{
		{"scenario": "ceiling", "handshakes_per_s": 1000.0, "cpu_bound_handshakes_per_s": 1000.0, "cores": 2.0},
		{"scenario": "stepca-sign", "nodes": 1000.0, "ok": 1000.0, "throughput_per_s": 1000.0, "server_cpu_ms_per_op": 1.0, "errors": map[string]any{}},
		{"scenario": "register-floor", "ops": 8000.0, "ops_per_s": 800.0, "cpu_bound_ops_per_s": 900.0, "errors": map[string]any{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := summary["register_per_stepca_sign_cpu_bound_floor"]; ok || strings.Contains(out.String(), "per sign, step-ca and its client") {
		t.Errorf("a CPU-bound figure from step-ca's server alone:\n%s", out.String())
	}
	if summary["register_per_stepca_sign_floor"] != 0.8 {
		t.Errorf("the measured figure is still given: %v", summary)
	}
}
