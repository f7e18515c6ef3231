package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteFloorText prints a floor's result for people.
func WriteFloorText(w io.Writer, r *FloorResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	cpu := "unknown"
	if r.ServerCPUMsPerOp != nil {
		cpu = fmt.Sprintf("%.4f ms per operation (%.1f ms over %.1f s)", *r.ServerCPUMsPerOp, r.ServerCPUMs, r.ElapsedS)
	}
	lat := fmt.Sprintf("p50 %.1f ms   p99 %.1f ms   max %.1f ms", r.P50Ms, r.P99Ms, r.MaxMs)
	switch r.Scenario {
	case ScenarioStreamFloor:
		fmt.Fprintf(tw, "%s: %d connections, one stream each, a message every %g s (connected in %.1f s, %d open at the end)\n",
			r.Scenario, r.Connections, r.IntervalS, r.ConnectS, r.Held)
		row("throughput", "%.1f messages/s echoed (%d in %.1f s)", r.OpsPerS, r.Ops, r.ElapsedS)
		row("latency", "%s (message to echo)", lat)
	case ScenarioBootFloor:
		fmt.Fprintf(tw, "%s: a node's least boot each (fresh certificate and mTLS connection, Resume from memory, key, bundle signature and decryption checked), %d in flight\n",
			r.Scenario, r.Concurrency)
		row("throughput", "%.1f boots/s (%d in %.1f s)", r.OpsPerS, r.Ops, r.ElapsedS)
		row("latency", "%s (connection, call and checks)", lat)
	case ScenarioRegisterFloor:
		fmt.Fprintf(tw, "%s: a node's least first registration each (fresh certificate, CSR and mTLS connection, CSR signed from memory, key checked), %d in flight\n",
			r.Scenario, r.Concurrency)
		row("throughput", "%.1f registrations/s (%d in %.1f s)", r.OpsPerS, r.Ops, r.ElapsedS)
		row("latency", "%s (connection, call and checks)", lat)
	default:
		fmt.Fprintf(tw, "%s: a fresh mTLS connection and one empty call each, %d in flight\n", r.Scenario, r.Concurrency)
		row("throughput", "%.1f calls/s (%d in %.1f s)", r.OpsPerS, r.Ops, r.ElapsedS)
		row("latency", "%s (connection and call)", lat)
	}
	row("errors", "%s", errorText(r.Errors))
	row("server CPU", "%s", cpu)
	if r.CPUMsPerOp != nil && r.CPUBoundPerS != nil {
		row("CPU, both ends", "%.4f ms per operation; all cores busy would make %.1f/s", *r.CPUMsPerOp, *r.CPUBoundPerS)
	}
	if r.ServerKBPerConn != nil && r.ServerHeapKBPerConn != nil && r.ServerStackKBPerConn != nil {
		row("server memory", "%.1f KiB resident per connection, of which %.1f KiB live heap and %.1f KiB goroutine stacks",
			*r.ServerKBPerConn, *r.ServerHeapKBPerConn, *r.ServerStackKBPerConn)
	}
	if len(r.ServerCPUShares) > 0 {
		row("server CPU split", "%s", sharesText(r.ServerCPUShares, r.ServerCPUMsPerOp))
	}
	for _, k := range sortedKeys(r.ErrorSamples) {
		row("  e.g. "+k, "%s", r.ErrorSamples[k])
	}
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	return tw.Flush()
}

// sharesText lists CPU shares, largest first, with each one's milliseconds
// per operation when perOp is known.
func sharesText(shares map[string]float64, perOp *float64) string {
	keys := sortedKeys(shares)
	// Largest first; the names break ties, for a stable line.
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(shares[b], shares[a]) })
	var parts []string
	for _, k := range keys {
		p := fmt.Sprintf("%s %.0f%%", k, shares[k]*100)
		if perOp != nil {
			p += fmt.Sprintf(" (%.3f ms)", shares[k]**perOp)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// floorRow is one of the issue's figures next to its floor.
type floorRow struct {
	key, figure string
	berth       *float64
	floor       *float64
	goal        float64
	// atMost: the goal is an upper bound (CPU, memory); otherwise a lower
	// bound (throughput).
	atMost bool
	unit   string
	format string
	// floorNote is said after the floor's figure.
	floorNote string
	// hsCPU, for CPU rows, is this run's server CPU per handshake (ms),
	// by which the goal is scaled too (scaledGoal).
	hsCPU float64
}

// issueHandshakeCPUMs is the server CPU of one handshake where the issue
// set its CPU goals ("about 0.6 ms").
const issueHandshakeCPUMs = 0.6

// scaledGoal is a CPU row's goal in this run's milliseconds: the issue set
// its CPU goals where a handshake cost the server issueHandshakeCPUMs, and
// a loaded machine spends more on everything, a handshake included.
func (r floorRow) scaledGoal() (float64, bool) {
	if r.hsCPU <= 0 {
		return 0, false
	}
	return r.goal * r.hsCPU / issueHandshakeCPUMs, true
}

// outOfReach reports whether the floor itself misses the goal.
func (r floorRow) outOfReach() bool {
	if r.floor == nil {
		return false
	}
	if r.atMost {
		return *r.floor > r.goal
	}
	return *r.floor < r.goal
}

func (r floorRow) want() string {
	op := ">="
	if r.atMost {
		op = "<="
	}
	return strings.TrimSpace(fmt.Sprintf("%s "+r.format+" %s", op, r.goal, r.unit))
}

func (r floorRow) text(v *float64) string {
	if v == nil {
		return "-"
	}
	return strings.TrimSpace(fmt.Sprintf(r.format+" %s", *v, r.unit))
}

// verdict says whether the goal is within the floor and how close berth
// got to the floor.
func (r floorRow) verdict() string {
	if r.floor == nil || *r.floor <= 0 {
		return "floor not measured"
	}
	v := fmt.Sprintf("within reach: the floor is %.2f × the goal", *r.floor/r.goal)
	if r.outOfReach() {
		v = fmt.Sprintf("OUT OF REACH: the floor is %.2f × the goal", *r.floor/r.goal)
	}
	if r.berth != nil {
		v += fmt.Sprintf("; berth is %.2f × the floor", *r.berth/(*r.floor))
	}
	if g, ok := r.scaledGoal(); ok {
		reach := "within reach"
		if *r.floor > g {
			reach = "out of reach"
		}
		v += fmt.Sprintf("; scaled by this run's handshake (%.3f ms, the issue's %.1f ms) the goal is "+r.format+" ms and the floor %.2f × it: %s",
			r.hsCPU, issueHandshakeCPUMs, g, *r.floor/g, reach)
	}
	return v
}

func ptr(v float64) *float64 { return &v }

// numPtr reads a JSON number of r, nil when absent or null.
func numPtr(r map[string]any, key string) *float64 {
	if r == nil || r[key] == nil {
		return nil
	}
	return ptr(num(r[key]))
}

// floorRows pairs the issue's figures out of reach of gRPC itself with
// their floors: Resume throughput as a share of the ceiling and its
// server CPU (the storm against grpc-floor, and against boot-floor with
// the 10,000-boot storm), heartbeat CPU per beat and memory per connected
// node (heartbeat against stream-floor).
func floorRows(byName map[string]map[string]any, ceiling float64) []floorRow {
	storm, hb := byName[ScenarioStorm], byName[ScenarioHeartbeat]
	gf, sf, bf := byName[ScenarioGRPCFloor], byName[ScenarioStreamFloor], byName[ScenarioBootFloor]
	hsCPU := num(byName[ScenarioCeiling]["cpu_ms_per_handshake"]) / 2 // the server's half
	share := func(r map[string]any, key string) *float64 {
		if r == nil || ceiling <= 0 {
			return nil
		}
		return ptr(round(num(r[key])/ceiling, 3))
	}
	resume := floorRow{key: "resume_ceiling_ratio", figure: "Resume throughput / ceiling", berth: share(storm, "throughput_per_s"),
		floor: share(gf, "ops_per_s"), goal: goalResumeShare, format: "%.3f"}
	if gf != nil {
		resume.floorNote = fmt.Sprintf("%.1f calls/s", num(gf["ops_per_s"]))
	}
	// The same share with every core busy, from both ends' CPU per
	// operation and per handshake, which the machine's other load moves
	// far less than it moves rates; berth's storm counts PostgreSQL's CPU
	// too (cpuBoundRate).
	boundOf := func(key, figure string, f map[string]any, what string) floorRow {
		r := floorRow{key: key, figure: figure, goal: goalResumeShare, format: "%.3f"}
		c := byName[ScenarioCeiling]
		if c == nil || num(c["cpu_bound_handshakes_per_s"]) <= 0 {
			return r
		}
		if f != nil && f["cpu_bound_ops_per_s"] != nil {
			r.floor = ptr(round(num(f["cpu_bound_ops_per_s"])/num(c["cpu_bound_handshakes_per_s"]), 3))
			r.floorNote = fmt.Sprintf("%.1f %s/s against %.1f handshakes/s", num(f["cpu_bound_ops_per_s"]), what, num(c["cpu_bound_handshakes_per_s"]))
		}
		if b, ok := cpuBoundRate(ScenarioStorm, storm, num(c["cores"])); ok {
			r.berth = ptr(round(b/num(c["cpu_bound_handshakes_per_s"]), 3))
		}
		return r
	}
	bound := boundOf("resume_cpu_bound_ceiling_ratio", "Resume throughput / ceiling, all cores busy (CPU of both ends, and PostgreSQL's for berth)", gf, "calls")
	// The same against a node's least boot: what the design requires of
	// every boot besides the call itself (boot-floor).
	boot := floorRow{key: "resume_ceiling_ratio_boot", figure: "Resume throughput / ceiling, against a node's least boot", berth: share(storm, "throughput_per_s"),
		floor: share(bf, "ops_per_s"), goal: goalResumeShare, format: "%.3f"}
	bootBound := boundOf("resume_cpu_bound_ceiling_ratio_boot", "the same, all cores busy (CPU of both ends, and PostgreSQL's for berth)", bf, "boots")
	storm10k := floorRow{key: "storm_10000_s", figure: "storm of 10,000 boots, against a node's least boot", goal: goalStormS, atMost: true, unit: "s", format: "%.1f"}
	if r := storm; r != nil && num(r["throughput_per_s"]) > 0 {
		storm10k.berth = ptr(round(targetStormNodes/num(r["throughput_per_s"]), 1))
	}
	if bf != nil && num(bf["ops_per_s"]) > 0 {
		boot.floorNote = fmt.Sprintf("%.1f boots/s", num(bf["ops_per_s"]))
		storm10k.floor = ptr(round(targetStormNodes/num(bf["ops_per_s"]), 1))
	}
	mem := floorRow{key: "heartbeat_kb_per_node", figure: "heartbeat memory per connected node", berth: numPtr(hb, "heartbeat_kb_per_node"),
		floor: numPtr(sf, "server_kb_per_conn"), goal: goalHBKBPerNode, atMost: true, unit: "KiB", format: "%.1f"}
	if sf != nil && sf["server_heap_kb_per_conn"] != nil {
		heap, stack := num(sf["server_heap_kb_per_conn"]), num(sf["server_stack_kb_per_conn"])
		mem.floorNote = fmt.Sprintf("live heap %.1f KiB and stacks %.1f KiB: %.2f × the goal without any garbage", heap, stack, (heap+stack)/goalHBKBPerNode)
	}
	return append([]floorRow{
		resume,
		bound,
		boot,
		bootBound,
		storm10k,
		{key: "resume_server_cpu_ms", figure: "server CPU per Resume", berth: numPtr(storm, "server_cpu_ms_per_op"),
			floor: numPtr(gf, "server_cpu_ms_per_op"), goal: goalCPUPerBootMs, atMost: true, unit: "ms", format: "%.3f", hsCPU: hsCPU},
		{key: "resume_server_cpu_ms_boot", figure: "server CPU per Resume, against a node's least boot", berth: numPtr(storm, "server_cpu_ms_per_op"),
			floor: numPtr(bf, "server_cpu_ms_per_op"), goal: goalCPUPerBootMs, atMost: true, unit: "ms", format: "%.3f", hsCPU: hsCPU},
		{key: "heartbeat_cpu_ms_per_beat", figure: "heartbeat server CPU per beat", berth: numPtr(hb, "server_cpu_ms_per_op"),
			floor: numPtr(sf, "server_cpu_ms_per_op"), goal: goalHBCPUPerBeatMs, atMost: true, unit: "ms", format: "%.4f", hsCPU: hsCPU},
		mem,
	}, registerFloorRows(byName)...)
}

// registerFloorRows pairs first registration's goal, step-ca's /sign rate,
// with a node's least first registration (register-floor): as measured,
// and with every core busy, from both ends' CPU per operation (step-ca's
// and its client's), which the machine's other load moves less than
// rates.
func registerFloorRows(byName map[string]map[string]any) []floorRow {
	sc, rf, reg := byName[ScenarioStepCASign], byName[ScenarioRegisterFloor], byName[ScenarioRegister]
	if sc == nil || rf == nil || num(sc["throughput_per_s"]) <= 0 {
		return nil
	}
	rate := num(sc["throughput_per_s"])
	measured := floorRow{key: "register_per_stepca_sign", figure: "first registration / step-ca's /sign rate, against a node's least first registration",
		floor: ptr(round(num(rf["ops_per_s"])/rate, 3)), goal: 1, format: "%.2f",
		floorNote: fmt.Sprintf("%.1f registrations/s against %.1f signs/s", num(rf["ops_per_s"]), rate)}
	if reg != nil {
		measured.berth = ptr(round(num(reg["throughput_per_s"])/rate, 3))
	}
	bound := floorRow{key: "register_per_stepca_sign_cpu_bound", figure: "the same, all cores busy (CPU of both ends, and PostgreSQL's for berth)", goal: 1, format: "%.2f"}
	cores := num(byName[ScenarioCeiling]["cores"])
	if signs, ok := cpuBoundRate(ScenarioStepCASign, sc, cores); ok && rf["cpu_bound_ops_per_s"] != nil {
		bound.floor = ptr(round(num(rf["cpu_bound_ops_per_s"])/signs, 3))
		bound.floorNote = fmt.Sprintf("%.1f registrations/s against %.1f signs/s (%.3f ms per sign, step-ca and its client)", num(rf["cpu_bound_ops_per_s"]), signs, cores*1000/signs)
		if b, ok := cpuBoundRate(ScenarioRegister, reg, cores); ok {
			bound.berth = ptr(round(b/signs, 3))
		}
	}
	return []floorRow{measured, bound}
}

// floorFigures prints the figures next to their floors, when a floor was
// measured in this run, and adds them to summary ("floors", and each
// floor as KEY_floor).
func floorFigures(w io.Writer, summary map[string]any, byName map[string]map[string]any, ceiling float64) {
	if byName[ScenarioGRPCFloor] == nil && byName[ScenarioStreamFloor] == nil && byName[ScenarioBootFloor] == nil && byName[ScenarioRegisterFloor] == nil {
		return
	}
	fmt.Fprintln(w, "\nfloors: the same figures from a bare gRPC server with berthd's server options, doing nothing (grpc-floor, stream-floor),")
	fmt.Fprintln(w, "answering Resume from memory to nodes doing only what every boot must (boot-floor), or signing from memory for")
	fmt.Fprintln(w, "nodes doing only what a first registration must (register-floor), in this run:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  figure\tberth\tfloor\tgoal\t")
	var out []map[string]any
	for _, r := range floorRows(byName, ceiling) {
		if r.floor == nil {
			continue
		}
		floor := r.text(r.floor)
		if r.floorNote != "" {
			floor += " (" + r.floorNote + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.figure, r.text(r.berth), floor, r.want(), r.verdict())
		summary[r.key+"_floor"] = *r.floor
		row := map[string]any{"figure": r.figure, "floor": *r.floor, "goal": r.want(), "out_of_reach": r.outOfReach()}
		if r.berth != nil {
			row["berth"] = *r.berth
		}
		if g, ok := r.scaledGoal(); ok {
			row["goal_scaled_ms"] = round(g, 4)
			row["out_of_reach_scaled"] = *r.floor > g
		}
		out = append(out, row)
	}
	_ = tw.Flush()
	summary["floors"] = out
	for _, name := range []string{ScenarioGRPCFloor, ScenarioBootFloor, ScenarioRegisterFloor, ScenarioStreamFloor} {
		r := byName[name]
		m, ok := r["server_cpu_shares"].(map[string]any)
		if !ok || len(m) == 0 {
			continue
		}
		shares := map[string]float64{}
		for k, v := range m {
			shares[k] = num(v)
		}
		what := map[string]string{ScenarioGRPCFloor: "call", ScenarioBootFloor: "boot", ScenarioRegisterFloor: "registration", ScenarioStreamFloor: "message"}[name]
		fmt.Fprintf(w, "%s server CPU per %s by the profile: %s.\n", name, what, sharesText(shares, numPtr(r, "server_cpu_ms_per_op")))
	}
}
