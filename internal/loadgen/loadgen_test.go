package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/pki"
)

func TestMain(m *testing.M) {
	// TestCeiling starts this test binary again as the ceiling's server.
	MaybeCeilingServer()
	os.Exit(m.Run())
}

// startDev runs every service in this process on SQLite, as berthd dev
// does, with a one-second heartbeat interval, and returns how to reach it.
func startDev(t *testing.T, mods ...func(*daemon.Config)) Conn {
	t.Helper()
	dir := t.TempDir()
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	cfg := daemon.Config{
		Role: daemon.RoleAll, Listen: "127.0.0.1:0", PKIDir: layout.Dir, DataDir: dir,
		HeartbeatInterval: time.Second, ShutdownTimeout: 5 * time.Second,
		Ready: func(a string) { ready <- a },
	}
	for _, m := range mods {
		m(&cfg)
	}
	go func() { done <- daemon.Run(ctx, cfg) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("daemon ended early: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	return Conn{Server: addr, CAFile: layout.RootPath(), CertFile: layout.AdminCertPath(), KeyFile: layout.AdminKeyPath()}
}

// TestScenarios keeps the harness from rotting: five nodes register, then
// storm (every boot resumes with its bundle and a heartbeat, and no
// certificate is issued), then beat for a few intervals.
// runFive runs scenario c with five nodes of the seed "smoke" against conn,
// and fails the test unless all five succeeded.
func runFive(t *testing.T, conn Conn, c Config) *Result {
	t.Helper()
	c.Nodes, c.Conn, c.TempDir, c.Seed = 5, conn, t.TempDir(), "smoke"
	c.ServerProcs = []Proc{{Name: "self", PID: os.Getpid()}}
	c.Log = slog.New(slog.NewTextHandler(t.Output(), nil))
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatalf("%s: %v", c.Scenario, err)
	}
	if res.OK != 5 || len(res.Errors) != 0 {
		t.Fatalf("%s: ok %d of 5, errors %v %v", c.Scenario, res.OK, res.Errors, res.ErrorSamples)
	}
	if res.ServerPeakRSSMB == nil || *res.ServerPeakRSSMB <= 0 {
		t.Errorf("%s: server_peak_rss_mb = %v", c.Scenario, res.ServerPeakRSSMB)
	}
	return res
}

func TestScenarios(t *testing.T) {
	conn := startDev(t)
	run := func(t *testing.T, c Config) *Result {
		t.Helper()
		return runFive(t, conn, c)
	}
	certs := func(r *Result) int64 {
		if r.CertsIssued == nil {
			t.Fatalf("%s: certs_issued unknown: %v", r.Scenario, r.Notes)
		}
		return *r.CertsIssued
	}

	reg := run(t, Config{Scenario: ScenarioRegister})
	if got := certs(reg); got != 5 {
		t.Errorf("register issued %d certificates, want 5", got)
	}
	// A first registration's boot is the node's first heartbeat once the
	// registration service knows the interval; before that, the agent
	// beats itself.
	if reg.Actions[agent.ActionRegistered] != 5 || reg.HeartbeatsAcked+reg.BootsRecorded != 5 {
		t.Errorf("register: actions %v, heartbeats acked %d, boots recorded %d", reg.Actions, reg.HeartbeatsAcked, reg.BootsRecorded)
	}
	if reg.CertsLinted == nil || *reg.CertsLinted != 5 || reg.LintFailures == nil || *reg.LintFailures != 0 {
		t.Errorf("register: certs linted %v, lint failures %v %v", reg.CertsLinted, reg.LintFailures, reg.LintFailureSamples)
	}
	if reg.DuplicateNodes == nil || *reg.DuplicateNodes != 0 || reg.FleetNodes == nil || *reg.FleetNodes != 5 {
		t.Errorf("register: duplicate nodes %v, fleet nodes %v", reg.DuplicateNodes, reg.FleetNodes)
	}
	if _, err := Run(context.Background(), Config{Scenario: ScenarioRegister, Nodes: 5, Conn: conn, TempDir: t.TempDir(), Seed: "smoke"}); err == nil {
		t.Error("register of registered nodes without --reset did not fail")
	}

	profiles := filepath.Join(t.TempDir(), "made") // made by the run, as make bench's restore/ is
	storm := run(t, Config{Scenario: ScenarioStorm, ProfileDir: profiles, Probe: time.Second})
	// The ceiling measured just before the boots, after the setup.
	if p := storm.Probe; p == nil || p.Handshakes == 0 || len(p.Errors) != 0 || p.ProbeFor != "" {
		t.Errorf("storm: probe %+v, want a ceiling of some handshakes", p)
	}
	if reg.Probe != nil {
		t.Errorf("register without Probe measured one: %+v", reg.Probe)
	}
	// The load generator's own CPU profile over the boots, which pprof
	// reads (five boots may leave it without a sample).
	if f, err := os.Open(filepath.Join(profiles, "storm-loadgen-cpu.pprof")); err != nil {
		t.Errorf("storm: load generator profile: %v", err)
	} else {
		p, err := profile.Parse(f)
		f.Close()
		if err != nil || len(p.SampleType) == 0 || p.SampleType[len(p.SampleType)-1].Type != "cpu" {
			t.Errorf("storm: load generator profile %v, %v; want a CPU profile", p, err)
		}
	}
	if got := certs(storm); got != 0 {
		t.Errorf("storm issued %d certificates, want 0", got)
	}
	// Every Resume is the node's first heartbeat: one handshake on the boot
	// path, the stream's later.
	if storm.Actions[agent.ActionResumed] != 5 || storm.BundlesApplied != 5 || storm.BootsRecorded != 5 || storm.HeartbeatsAcked != 0 ||
		storm.HeartbeatsFollowed != 5 || storm.Renewed != 0 {
		t.Errorf("storm: actions %v, bundles applied %d, boots recorded %d, heartbeats acked %d, followed %d, renewed %d",
			storm.Actions, storm.BundlesApplied, storm.BootsRecorded, storm.HeartbeatsAcked, storm.HeartbeatsFollowed, storm.Renewed)
	}
	if storm.HandshakesPerBoot == nil || *storm.HandshakesPerBoot != 1 || storm.HandshakesPerBootTotal == nil || *storm.HandshakesPerBootTotal != 2 ||
		storm.ServerCPUMsPerBootTotal == nil || storm.ServerCPUMsPerOp == nil || *storm.ServerCPUMsPerBootTotal < *storm.ServerCPUMsPerOp ||
		storm.FollowS < storm.ElapsedS {
		t.Errorf("storm: handshakes per boot %v, in total %v, server CPU per boot %v, in total %v, streams done at %g s, boots at %g s",
			storm.HandshakesPerBoot, storm.HandshakesPerBootTotal, storm.ServerCPUMsPerOp, storm.ServerCPUMsPerBootTotal, storm.FollowS, storm.ElapsedS)
	}
	// Whether a stream opened before the last boot depends on the
	// machine's speed (one-second interval); that the storm counts them
	// does not.
	if d := storm.HeartbeatsDuringBoots; d == nil || *d < 0 || *d > int64(storm.HeartbeatsFollowed) {
		t.Errorf("storm: heartbeat streams opened during the boots %v, of %d", d, storm.HeartbeatsFollowed)
	}
	if storm.LoadgenCPUMsPerOp == nil || *storm.LoadgenCPUMsPerOp <= 0 {
		t.Errorf("storm: load generator CPU per boot %v", storm.LoadgenCPUMsPerOp)
	}
	if storm.ThroughputPerS <= 0 || storm.P99Ms <= 0 || storm.MaxMs < storm.P50Ms {
		t.Errorf("storm figures: %+v", storm)
	}

	hb := run(t, Config{Scenario: ScenarioHeartbeat, Duration: 2500 * time.Millisecond, Interval: time.Second})
	if got := certs(hb); got != 0 {
		t.Errorf("heartbeat issued %d certificates, want 0", got)
	}
	if hb.IntervalS != 1 || hb.BeatsAcked < 5*2 || hb.BeatsAcked != hb.BeatsSent {
		t.Errorf("heartbeat: interval %g s, beats sent %d, acked %d", hb.IntervalS, hb.BeatsSent, hb.BeatsAcked)
	}
	if hb.UnreachableEvents == nil || *hb.UnreachableEvents != 0 {
		t.Errorf("heartbeat: unreachable events %v", hb.UnreachableEvents)
	}
}

func TestCeiling(t *testing.T) {
	res, err := Ceiling(context.Background(), CeilingConfig{Duration: time.Second, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Handshakes == 0 || res.HandshakesPerS <= 0 || len(res.Errors) != 0 || res.KeyExchange == "" {
		t.Fatalf("ceiling: %+v", res)
	}
}

func TestErrorClass(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"status", status.Error(codes.ResourceExhausted, "slow down"), "ResourceExhausted"},
		{"wrapped status", fmt.Errorf("heartbeat: %w", status.Error(codes.Aborted, "replaced")), "Aborted"},
		{"agent rpc error text", errors.New("resume: node is gone (NotFound)"), "NotFound"},
		{"pending", fmt.Errorf("node x is %w after 1s", agent.ErrPending), classPending},
		{"denied", fmt.Errorf("x: %w", agent.ErrDenied), "PermissionDenied"},
		{"gave up", errors.New("registration server 127.0.0.1:1 unreachable for 2m0s: connect to 127.0.0.1:1: refused"), "Unavailable"},
		{"deadline", context.DeadlineExceeded, "DeadlineExceeded"},
		{"other", errors.New("disk full"), classUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorClass(tt.err); got != tt.want {
				t.Errorf("errorClass(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := summarize(ds)
	if want := (latencies{P50: 50, P90: 90, P99: 99, Max: 100}); got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (latencies{}) {
		t.Errorf("summarize(nil) = %+v", got)
	}
}

func TestParseProcs(t *testing.T) {
	got, err := ParseProcs(" ca=10, 11 ,registration=12,")
	if err != nil {
		t.Fatal(err)
	}
	want := []Proc{{"ca", 10}, {"11", 11}, {"registration", 12}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseProcs = %v, want %v", got, want)
	}
	for _, bad := range []string{"ca=", "x", "ca=-1"} {
		if _, err := ParseProcs(bad); err == nil {
			t.Errorf("ParseProcs(%q) did not fail", bad)
		}
	}
}

func TestFleetIsStable(t *testing.T) {
	a, _ := newFleet("s")
	b, _ := newFleet("s")
	c, _ := newFleet("t")
	na, nb, nc := a.node(7, "/x"), b.node(7, "/x"), c.node(7, "/x")
	if na.uuid != nb.uuid || string(na.seed) != string(nb.seed) || na.mac != nb.mac || a.tag != b.tag {
		t.Error("the same seed gave different nodes")
	}
	if na.uuid == nc.uuid || string(na.seed) == string(nc.seed) || a.tag == c.tag {
		t.Error("different seeds gave the same node")
	}
	if na.hostname != "load-000007" {
		t.Errorf("hostname %q", na.hostname)
	}
}

func TestCombine(t *testing.T) {
	one, three := 1, 3
	a := &Result{Scenario: ScenarioHeartbeat, Nodes: 10, OK: 10, Errors: map[string]int{}, ThroughputPerS: 2, P99Ms: 5,
		BeatsAcked: 20, UnreachableEvents: &one, Seed: "a"}
	b := &Result{Scenario: ScenarioHeartbeat, Nodes: 5, OK: 4, Errors: map[string]int{"Unavailable": 1}, ThroughputPerS: 1, P99Ms: 9,
		BeatsAcked: 8, UnreachableEvents: &three, Seed: "b"}
	c, err := Combine([]*Result{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if c.Nodes != 15 || c.OK != 14 || c.Errors["Unavailable"] != 1 || c.ThroughputPerS != 3 || c.P99Ms != 9 ||
		c.BeatsAcked != 28 || *c.UnreachableEvents != 4 || c.Processes != 2 || c.Seed != "a,b" {
		t.Errorf("combined: %+v", c)
	}
	if _, err := Combine([]*Result{a, {Scenario: ScenarioStorm}}); err == nil {
		t.Error("combined a heartbeat and a storm result")
	}
}

// TestCombineServerFigures: every process measured all servers over the
// same window, so CPU is the largest, and the heartbeat processes' growth
// is spread over all the nodes.
func TestCombineServerFigures(t *testing.T) {
	cpuA, cpuB := 900.0, 1000.0
	dbA, dbB := 300.0, 250.0
	kbA, kbB := 30.0, 60.0 // each saw 600 KiB of growth: 20 and 10 nodes
	a := &Result{Scenario: ScenarioHeartbeat, OK: 20, ThroughputPerS: 100, ElapsedS: 10, ServerCPUMsTotal: &cpuA, HeartbeatKBPerNode: &kbA,
		ServerCPUMs: map[string]float64{"heartbeat": 900}, DBCPUMs: &dbA}
	b := &Result{Scenario: ScenarioHeartbeat, OK: 10, ThroughputPerS: 100, ElapsedS: 10, ServerCPUMsTotal: &cpuB, HeartbeatKBPerNode: &kbB,
		ServerCPUMs: map[string]float64{"heartbeat": 1000}, DBCPUMs: &dbB}
	c, err := Combine([]*Result{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if *c.ServerCPUMsTotal != 1000 || c.ServerCPUMs["heartbeat"] != 1000 || *c.ServerCPUMsPerOp != 0.5 || *c.HeartbeatKBPerNode != 20 {
		t.Errorf("combined: cpu %v (%v) per beat %v, KiB per node %v; want 1000, 0.5, 20", *c.ServerCPUMsTotal, c.ServerCPUMs, *c.ServerCPUMsPerOp, *c.HeartbeatKBPerNode)
	}
	if c.DBCPUMs == nil || *c.DBCPUMs != 300 {
		t.Errorf("combined database CPU %v; want 300, the largest of the same database's", c.DBCPUMs)
	}
}

// TestReportFigures: the report prints the figures against the
// ceiling and puts them in the summary.
func TestReportFigures(t *testing.T) {
	results := []map[string]any{
		{"scenario": "ceiling", "handshakes_per_s": 1000.0, "cpu_ms_per_handshake": 2.0, "cores": 2.0},
		{"scenario": "storm", "nodes": 2000.0, "ok": 2000.0, "throughput_per_s": 500.0, "server_cpu_ms_per_op": 1.5, "loadgen_cpu_ms_per_op": 2.5, "db_cpu_ms_per_op": 1.0, "handshakes_per_boot": 1.0,
			"handshakes_per_boot_total": 2.0, "follow_s": 12.5, "server_cpu_ms_per_boot_total": 2.5, "heartbeats_during_boots": 300.0,
			"heartbeat_retries_during_boots": 1234.0, "errors": map[string]any{}},
		{"scenario": "heartbeat", "nodes": 2000.0, "ok": 2000.0, "throughput_per_s": 400.0, "interval_s": 5.0,
			"server_cpu_ms_per_op": 0.1, "heartbeat_kb_per_node": 40.0, "errors": map[string]any{}},
		{"scenario": "register", "nodes": 2000.0, "ok": 2000.0, "throughput_per_s": 250.0, "server_cpu_ms_per_op": 4.0, "errors": map[string]any{}},
		{"scenario": "register", "deployment": "dev", "nodes": 1000.0, "ok": 1000.0, "throughput_per_s": 300.0, "server_cpu_ms_per_op": 3.0, "errors": map[string]any{}},
	}
	var out strings.Builder
	summary, err := Report(&out, results)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Resume throughput", "0.500 of the ceiling",
		"server CPU per boot (storm)", "1.500 ms", "1.50 handshakes' CPU",
		"full handshakes per boot on the boot path (storm)", "1.00",
		"full handshakes per boot in total (storm)", "2.00", "the last 12.5 s after the release",
		"heartbeat streams connected while nodes still booted (storm)", "300", "15.0% of the boots",
		"heartbeat stream tries deferred (or failed) while nodes still booted (storm)", "1234",
		"server CPU per boot with its later heartbeat stream (storm)", "2.500 ms",
		"load generator CPU per boot (storm)", "2.500 ms", "2.50 handshakes' CPU",
		"boots/s the CPU of both sides allows (storm)", "500.0 boots/s on 2 cores", "0.500 of the ceiling; 10,000 boots in 20.0 s",
		"PostgreSQL CPU per boot, not in the server CPU (storm)", "1.000 ms", "1.00 handshakes' CPU",
		"boots/s the CPU of both sides and PostgreSQL allows (storm)", "400.0 boots/s on 2 cores", "0.400 of the ceiling; 10,000 boots in 25.0 s",
		"storm of 10,000 boots", "20.0 s (2000 nodes measured)", "10,000 handshakes at the ceiling: 10.0 s",
		"heartbeat memory per connected node", "40.0 KiB (2000 nodes)", "2.50 × the goal; 3.8 GiB at 100000 nodes",
		"heartbeat server CPU per beat", "0.1000 ms", "2.00 × the goal; 0.10 handshakes' CPU; 2.00 cores at 100000 nodes every 5 s",
		"first registration throughput", "250.0 boots/s", "0.250 of the ceiling", "step-ca's /sign rate, 0.45",
		"first registration (dev) throughput", "300.0 boots/s", "0.300 of the ceiling", "server CPU per boot (register_dev)", "3.000 ms",
		"register_dev ", // its own row of the table
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if summary["storm_cpu_bound_boots_per_s"] != 500.0 || summary["storm_loadgen_cpu_ms_per_boot"] != 2.5 ||
		summary["storm_db_cpu_ms_per_boot"] != 1.0 || summary["storm_cpu_bound_with_db_boots_per_s"] != 400.0 ||
		summary["storm_streams_during_boots"] != 300.0 || summary["storm_stream_retries_during_boots"] != 1234.0 {
		t.Errorf("summary of the load generator's CPU: %v", summary)
	}
	if summary["storm_10000_projected_s"] != 20.0 || summary["heartbeat_kb_per_node"] != 40.0 || summary["storm_server_cpu_ms_per_boot"] != 1.5 ||
		summary["register_boots_per_ceiling_handshake"] != 0.25 || summary["register_dev_boots_per_ceiling_handshake"] != 0.3 ||
		summary["heartbeat_kb_per_node_goal_ratio"] != 2.5 || summary["heartbeat_cpu_ms_per_beat_goal_ratio"] != 2.0 {
		t.Errorf("summary: %v", summary)
	}
}

// TestReportFiguresWithoutCeiling: a heartbeat-only run still gets its
// figures, without ratios, projected to 5 s when run at another interval.
func TestReportFiguresWithoutCeiling(t *testing.T) {
	results := []map[string]any{
		{"scenario": "heartbeat", "nodes": 100.0, "ok": 100.0, "throughput_per_s": 10.0, "interval_s": 10.0,
			"server_cpu_ms_per_op": 0.2, "heartbeat_kb_per_node": 50.0, "errors": map[string]any{}},
	}
	var out strings.Builder
	if _, err := Report(&out, results); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"no ceiling measured", "50.0 KiB", "2.00 cores at 100000 nodes every 10 s, 4.00 every 5 s", "-; "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestReportCombinedHeartbeat: a combined heartbeat result says how many
// heartbeat instances its load generators shared, from the servers it read.
func TestReportCombinedHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		servers map[string]any
		want    string
	}{
		{map[string]any{"heartbeat": 60.0, "registration": 70.0}, "4 load generators against one heartbeat instance, combined"},
		{map[string]any{"heartbeat": 60.0, "heartbeat2": 61.0, "registration": 70.0}, "4 load generators against 2 heartbeat replicas, combined"},
	} {
		results := []map[string]any{{"scenario": "heartbeat", "nodes": 100.0, "ok": 100.0, "throughput_per_s": 20.0, "interval_s": 5.0,
			"processes": 4.0, "server_rss_mb": tc.servers, "errors": map[string]any{}}}
		var out strings.Builder
		if _, err := Report(&out, results); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("report lacks %q:\n%s", tc.want, out.String())
		}
	}
}

// TestStoreSettleIn: the store's rates start storeSettle into a window
// long enough to keep most of it, a third of the way into a shorter one.
func TestStoreSettleIn(t *testing.T) {
	for _, c := range []struct{ window, want time.Duration }{
		{30 * time.Second, storeSettle},
		{2 * storeSettle, storeSettle},
		{2*storeSettle - 3*time.Millisecond, 2*storeSettle/3 - time.Millisecond},
		{2500 * time.Millisecond, 833333333 * time.Nanosecond},
	} {
		if got := storeSettleIn(c.window); got != c.want {
			t.Errorf("storeSettleIn(%v) = %v, want %v", c.window, got, c.want)
		}
	}
}

// TestHeartbeatAfterMassBoot: five registrations against a heartbeat
// tier limited to one new stream per second are a mass boot, and berthd
// stretches the fleet's timings (the load factor goes above 1). The
// heartbeat scenario then waits for the stretch to end, and boots its
// nodes without the boot beat so as not to stretch them again, so that
// its nodes beat at the interval it set: at 1 s, five nodes have at least
// ten beats acknowledged in 2.5 s; at the stretched 8 s they would have
// five. The wait takes about a minute: the boots count for that long.
func TestHeartbeatAfterMassBoot(t *testing.T) {
	conn := startDev(t, func(c *daemon.Config) { c.HeartbeatMaxConnectRate = 1 })
	runFive(t, conn, Config{Scenario: ScenarioRegister})
	if err := conn.check(); err != nil {
		t.Fatal(err)
	}
	adm, err := newAdmin(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.close()
	ctx := t.Context()
	for {
		s, err := adm.heartbeatSettings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.GetLoadFactor() > 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("five boots did not stretch the fleet's timings")
		case <-time.After(100 * time.Millisecond):
		}
	}
	hb := runFive(t, conn, Config{Scenario: ScenarioHeartbeat, Duration: 2500 * time.Millisecond, Interval: time.Second})
	if hb.IntervalS != 1 || hb.BeatsAcked < 5*2 || hb.BeatsAcked != hb.BeatsSent {
		t.Errorf("heartbeat after a mass boot: interval %g s, beats sent %d, acked %d", hb.IntervalS, hb.BeatsSent, hb.BeatsAcked)
	}
	if s, err := adm.heartbeatSettings(ctx); err != nil || s.GetLoadFactor() != 1 {
		t.Errorf("load factor after the heartbeat scenario: %v, %v; want 1 (its nodes are no mass boot)", s.GetLoadFactor(), err)
	}
}

// TestSilentSince: the heartbeat scenario counts a node's health events
// only from when its first beat was acknowledged and written; the silence
// it kept before, since an earlier scenario, is not the run's.
func TestSilentSince(t *testing.T) {
	connected := time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC)
	var never, bt beater
	bt.connectedAt.Store(connected.UnixNano())
	for _, tt := range []struct {
		name string
		bt   *beater
		at   time.Time
		want bool
	}{
		{"never connected", &never, connected.Add(time.Hour), false},
		{"before it connected", &bt, connected.Add(-time.Second), false},
		{"before its beat was written", &bt, connected.Add(liveness.DefaultFlushPeriod - time.Millisecond), false},
		{"once its beat was written", &bt, connected.Add(liveness.DefaultFlushPeriod), true},
		{"later", &bt, connected.Add(time.Minute), true},
	} {
		if got := tt.bt.silentSince(tt.at); got != tt.want {
			t.Errorf("%s: silentSince = %v, want %v", tt.name, got, tt.want)
		}
	}
}
