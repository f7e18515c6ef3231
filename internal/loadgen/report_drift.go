package loadgen

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// This machine's speed drifts: one afternoon's ceilings were 1,163, 1,043
// and 832 handshakes/s within twenty minutes, a third apart. A scenario's
// share of a ceiling measured minutes before it, or its ratio to another
// scenario measured minutes apart, moves with that drift as much as with
// anything berth does. So make bench measures a short ceiling just before
// each scenario it compares (berth-loadgen ceiling --probe-for NAME), and
// the report judges each against its own probe as well: the issue's
// comparisons then hold whatever the machine did between them.

// probedNames are the results a probe may be for, in the report's order,
// with the key of each one's rate.
var probedNames = []struct{ name, rateKey string }{
	{ScenarioGRPCFloor, "ops_per_s"},
	{ScenarioBootFloor, "ops_per_s"},
	{ScenarioRegisterFloor, "ops_per_s"},
	{ScenarioRegister, "throughput_per_s"},
	{ScenarioRegister + "_dev", "throughput_per_s"},
	{ScenarioStepCASign, "throughput_per_s"},
	{ScenarioStorm, "throughput_per_s"},
	{ScenarioStorm + "_restarted", "throughput_per_s"},
}

// probedShares is each result's rate as a share of the ceiling measured
// just before it, for the results that have both; and the same with every
// core busy: the rate the CPU of both ends (and PostgreSQL's, where the
// result has it) allows, against the rate the probe's CPU per handshake
// allows.
func probedShares(byName, probes map[string]map[string]any) (measured, cpuBound map[string]float64) {
	measured, cpuBound = map[string]float64{}, map[string]float64{}
	for _, p := range probedNames {
		r, c := byName[p.name], probes[p.name]
		if r == nil || c == nil || num(c["handshakes_per_s"]) <= 0 {
			continue
		}
		measured[p.name] = num(r[p.rateKey]) / num(c["handshakes_per_s"])
		if b, ok := cpuBoundRate(p.name, r, num(c["cores"])); ok && num(c["cpu_bound_handshakes_per_s"]) > 0 {
			cpuBound[p.name] = b / num(c["cpu_bound_handshakes_per_s"])
		}
	}
	return measured, cpuBound
}

// cpuBoundRate is the rate result r would reach if every core did
// nothing else, from the CPU per operation of both ends (and PostgreSQL's):
// a floor's own figure, step-ca's from its CPU and its client's per sign,
// a boot scenario's from the servers', the agents' and PostgreSQL's.
// Without such figures (or without r) there is none.
func cpuBoundRate(name string, r map[string]any, cores float64) (float64, bool) {
	if cores <= 0 {
		return 0, false
	}
	var ms float64
	switch {
	case r["cpu_bound_ops_per_s"] != nil:
		return num(r["cpu_bound_ops_per_s"]), num(r["cpu_bound_ops_per_s"]) > 0
	case name == ScenarioStepCASign:
		// Both ends, or no figure: step-ca's CPU alone would flatter it.
		if num(r["ok"]) <= 0 || r["server_cpu_ms_per_op"] == nil || num(r["loadgen_cpu_ms"]) <= 0 {
			return 0, false
		}
		ms = num(r["server_cpu_ms_per_op"]) + num(r["loadgen_cpu_ms"])/num(r["ok"])
	case r["server_cpu_ms_per_op"] != nil && r["loadgen_cpu_ms_per_op"] != nil:
		ms = num(r["server_cpu_ms_per_op"]) + num(r["loadgen_cpu_ms_per_op"]) + num(r["db_cpu_ms_per_op"])
	}
	if ms <= 0 {
		return 0, false
	}
	return cores * 1000 / ms, true
}

// probedRows are the comparisons made with each side against its
// own probe, as measured and with every core busy: Resume against the boot
// floor, and first registration (and its floor) against step-ca's /sign.
// A row of another deployment comes only with its result.
func probedRows(measured, cpuBound map[string]float64) []floorRow {
	share := func(shares map[string]float64, name string) *float64 {
		if v, ok := shares[name]; ok {
			return ptr(round(v, 3))
		}
		return nil
	}
	perSign := func(shares map[string]float64, name string) *float64 {
		v, ok := shares[name]
		sign, signed := shares[ScenarioStepCASign]
		if !ok || !signed || sign <= 0 {
			return nil
		}
		return ptr(round(v/sign, 3))
	}
	var rows []floorRow
	add := func(r floorRow, always bool) {
		if r.berth != nil || (always && r.floor != nil) {
			rows = append(rows, r)
		}
	}
	for _, s := range []struct {
		shares     map[string]float64
		key, label string
	}{
		{measured, "", ""},
		{cpuBound, "_cpu_bound", ", all cores busy (CPU of both ends and PostgreSQL)"},
	} {
		add(floorRow{key: "resume_probed_ratio" + s.key, figure: "Resume throughput / the ceiling just before it" + s.label + ", against a node's least boot",
			berth: share(s.shares, ScenarioStorm), floor: share(s.shares, ScenarioBootFloor), goal: goalResumeShare, format: "%.3f"}, true)
		add(floorRow{key: "resume_restarted_probed_ratio" + s.key, figure: "the same after a restart (storm_restarted)",
			berth: share(s.shares, ScenarioStorm+"_restarted"), floor: share(s.shares, ScenarioBootFloor), goal: goalResumeShare, format: "%.3f"}, false)
		add(floorRow{key: "register_per_stepca_sign_probed" + s.key, figure: "first registration / step-ca's /sign, each against the ceiling just before it" + s.label + ", against a node's least first registration",
			berth: perSign(s.shares, ScenarioRegister), floor: perSign(s.shares, ScenarioRegisterFloor), goal: 1, format: "%.2f"}, true)
		add(floorRow{key: "register_dev_per_stepca_sign_probed" + s.key, figure: "the same for berthd dev (register_dev)",
			berth: perSign(s.shares, ScenarioRegister+"_dev"), floor: perSign(s.shares, ScenarioRegisterFloor), goal: 1, format: "%.2f"}, false)
	}
	return rows
}

// driftFigures prints every probed result against the ceiling measured
// just before it, then the comparisons made that way, and adds
// them to summary ("probes", and each comparison as KEY and KEY_floor).
func driftFigures(w io.Writer, summary map[string]any, byName, probes map[string]map[string]any, ceiling float64) {
	if len(probes) == 0 {
		return
	}
	fmt.Fprintln(w, "\nagainst the ceiling measured just before each (berth-loadgen ceiling --probe-for): the machine's speed drifts")
	fmt.Fprintln(w, "between scenarios, so each is also judged against its own probe, and two scenarios compared through theirs:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  result\trate/s\tceiling just before\tshare of it\tthat ceiling / the run's\t")
	shares, cpuBound := probedShares(byName, probes)
	var out []map[string]any
	for _, p := range probedNames {
		share, ok := shares[p.name]
		if !ok {
			continue
		}
		c := num(probes[p.name]["handshakes_per_s"])
		drift := "-"
		if ceiling > 0 {
			drift = fmt.Sprintf("%.2f", c/ceiling)
		}
		rate := num(byName[p.name][p.rateKey])
		fmt.Fprintf(tw, "  %s\t%.1f\t%.1f handshakes/s\t%.3f\t%s\t\n", p.name, rate, c, share, drift)
		out = append(out, map[string]any{"result": p.name, "rate_per_s": rate, "ceiling_before_per_s": c, "share": round(share, 3)})
	}
	for _, name := range sortedKeys(probes) {
		if _, ok := shares[name]; ok {
			continue
		}
		why := "no result of that name in this run"
		if byName[name] != nil {
			why = "the probe measured no handshakes: no share"
		}
		fmt.Fprintf(tw, "  %s\t-\t%.1f handshakes/s\t%s\t\t\n", name, num(probes[name]["handshakes_per_s"]), why)
	}
	fmt.Fprintln(tw, "\n  figure\tberth\tfloor\tgoal\t")
	for _, r := range probedRows(shares, cpuBound) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.figure, r.text(r.berth), r.text(r.floor), r.want(), r.verdict())
		if r.berth != nil {
			summary[r.key] = *r.berth
		}
		if r.floor != nil {
			summary[r.key+"_floor"] = *r.floor
		}
	}
	_ = tw.Flush()
	summary["probes"] = out
}
