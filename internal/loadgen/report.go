package loadgen

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteText prints a result for people.
func WriteText(w io.Writer, r *Result) error {
	if r.Scenario == ScenarioStepCASign {
		return writeStepCAText(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(tw, "%s of %d nodes (seed %q, concurrency %d)\n", r.Scenario, r.Nodes, r.Seed, r.Concurrency)
	lat := fmt.Sprintf("p50 %.1f ms   p90 %.1f ms   p99 %.1f ms   max %.1f ms", r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
	if r.Scenario == ScenarioHeartbeat {
		row("ok", "%d of %d kept beating for %.1f s (all connected in %.1f s)", r.OK, r.Nodes, r.ElapsedS, r.ConnectS)
		row("errors", "%s", errorText(r.Errors))
		row("throughput", "%.1f beats/s acknowledged (%d of %d beats sent; fleet interval %g s)", r.ThroughputPerS, r.BeatsAcked, r.BeatsSent, r.IntervalS)
		row("latency", "%s (beat to acknowledgement)", lat)
		if r.SuspectEvents != nil && r.UnreachableEvents != nil {
			row("health events", "%d suspect, %d unreachable", *r.SuspectEvents, *r.UnreachableEvents)
		}
		if r.StoreXactsPerS != nil && r.StoreRowsPerS != nil {
			row("store writes", "%.1f transactions/s (reads included), %.1f rows written/s, against %.1f beats/s", *r.StoreXactsPerS, *r.StoreRowsPerS, r.ThroughputPerS)
		}
		if r.Processes > 1 {
			row("processes", "%d load generators in parallel, combined", r.Processes)
		}
	} else {
		row("ok", "%d of %d", r.OK, r.Nodes)
		row("errors", "%s", errorText(r.Errors))
		row("throughput", "%.1f boots/s; all done in %.2f s", r.ThroughputPerS, r.ElapsedS)
		row("latency", "%s (one boot)", lat)
	}
	if r.CertsLinted != nil && r.LintFailures != nil {
		lint := fmt.Sprintf("%d linted (zlint RFC 5280), %d failing", *r.CertsLinted, *r.LintFailures)
		if len(r.LintFailureSamples) > 0 {
			lint += " (" + strings.Join(r.LintFailureSamples, ", ") + ")"
		}
		row("lint", "%s", lint)
	}
	if r.DuplicateNodes != nil {
		dup := fmt.Sprintf("%d", *r.DuplicateNodes)
		if r.FleetNodes != nil {
			dup += fmt.Sprintf(" (registry lists %d nodes of the fleet)", *r.FleetNodes)
		}
		row("duplicate nodes", "%s", dup)
	}
	if r.CertsIssued != nil {
		row("certificates", "%d issued during the timed phase", *r.CertsIssued)
	} else {
		row("certificates", "unknown")
	}
	var agents []string
	for _, k := range sortedKeys(r.Actions) {
		agents = append(agents, fmt.Sprintf("%s %d", k, r.Actions[k]))
	}
	agents = append(agents, fmt.Sprintf("given a new certificate %d", r.Renewed))
	if r.Scenario != ScenarioHeartbeat {
		applied := fmt.Sprintf("bundles applied %d", r.BundlesApplied)
		if len(r.BundleSources) > 0 {
			var src []string
			for _, k := range sortedKeys(r.BundleSources) {
				src = append(src, fmt.Sprintf("%s %d", k, r.BundleSources[k]))
			}
			applied += " (" + strings.Join(src, ", ") + ")"
		}
		agents = append(agents, applied, fmt.Sprintf("heartbeats acked %d", r.HeartbeatsAcked))
	}
	row("agents", "%s", strings.Join(agents, ", "))
	if r.ServerPeakRSSMB != nil {
		var each []string
		for _, k := range sortedKeys(r.ServerRSSMB) {
			each = append(each, fmt.Sprintf("%s %.1f", k, r.ServerRSSMB[k]))
		}
		row("server peak RSS", "%.1f MB (%s)", *r.ServerPeakRSSMB, strings.Join(each, ", "))
	} else {
		row("server peak RSS", "not measured (give --server-pids)")
	}
	row("load generator", "peak RSS %.1f MB, fd limit %d, setup (untimed) %.1f s", r.LoadgenPeakRSSMB, r.FDLimit, r.SetupS)
	for _, k := range sortedKeys(r.ErrorSamples) {
		row("  e.g. "+k, "%s", r.ErrorSamples[k])
	}
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	return tw.Flush()
}

// WriteCeilingText prints a ceiling result for people.
func WriteCeilingText(w io.Writer, r *CeilingResult) error {
	name := "ceiling"
	if r.ProbeFor != "" {
		name += " just before " + r.ProbeFor
	}
	_, err := fmt.Fprintf(w, "%s: %.1f full mTLS handshakes/s (%d in parallel on %d cores, %s, p50 %.1f ms, p99 %.1f ms, %d handshakes in %.1f s, errors: %s)\n",
		name, r.HandshakesPerS, r.Parallel, r.Cores, r.KeyExchange, r.P50Ms, r.P99Ms, r.Handshakes, r.ElapsedS, errorText(r.Errors))
	if err == nil && r.CPUMsPerHandshake > 0 {
		_, err = fmt.Fprintf(w, "  CPU per handshake, both ends: %.3f ms; all cores busy would make %.1f handshakes/s\n", r.CPUMsPerHandshake, r.CPUBoundPerS)
	}
	return err
}

func errorText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ReadResults reads JSON results: objects one after the other (as
// -o json prints them, one per run) or arrays of them.
func ReadResults(r io.Reader) ([]map[string]any, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var out []map[string]any
	for {
		var v any
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		switch v := v.(type) {
		case map[string]any:
			out = append(out, v)
		case []any:
			for _, e := range v {
				if m, ok := e.(map[string]any); ok {
					out = append(out, m)
				}
			}
		}
	}
}

// Targets of the issue "The power-restore storm", at the sizes it states.
const (
	targetStormNodes     = 10_000
	targetRegisterNodes  = 10_000
	targetHeartbeatNodes = 20_000
	targetStormP99Ms     = 5000
	targetCeilingShare   = 0.25
)

// ReportName is the name Report gives r: its scenario, with its
// deployment when it has one (register_dev, storm_restarted).
func (r *Result) ReportName() string { return reportName(r.Scenario, r.Deployment) }

func reportName(scenario, deployment string) string {
	if deployment == "" {
		return scenario
	}
	return scenario + "_" + deployment
}

// Report prints the results as one table, with the storm's and the
// registration's boots per second as a share of the handshake ceiling and
// the targets next to what was measured. It adds the ratios to the
// results and returns a summary object for the JSON array.
func Report(w io.Writer, results []map[string]any) (map[string]any, error) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tnodes\tok\terrors\trate/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tcerts\tserver RSS MB\t")
	var ceiling, cpuBound float64
	byName := map[string]map[string]any{}
	probes := map[string]map[string]any{} // ceilings measured just before a result, by its name
	for _, r := range results {
		name := str(r["scenario"])
		if p := str(r["probe_for"]); name == ScenarioCeiling && p != "" {
			probes[p] = r // reported with the figures (driftFigures)
			continue
		}
		if name == ScenarioGRPCFloor || name == ScenarioBootFloor || name == ScenarioRegisterFloor || name == ScenarioStreamFloor {
			byName[name] = r // reported with the figures (floorFigures)
			continue
		}
		if name != ScenarioCeiling && name != ScenarioStepCASign && !slices.Contains(Scenarios, name) {
			continue // an earlier summary
		}
		// The same scenario against other servers: its own row and
		// figures, and no targets.
		name = reportName(name, str(r["deployment"]))
		byName[name] = r
		if name == ScenarioCeiling {
			ceiling, cpuBound = num(r["handshakes_per_s"]), num(r["cpu_bound_handshakes_per_s"])
			fmt.Fprintf(tw, "%s\t-\t-\t%s\t%s\t%s\t-\t%s\t%s\t-\t-\t\n", name, errCount(r), f1(r["handshakes_per_s"]), f1(r["p50_ms"]), f1(r["p99_ms"]), f1(r["max_ms"]))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, intText(r["nodes"]), intText(r["ok"]), errCount(r),
			f1(r["throughput_per_s"]), f1(r["p50_ms"]), f1(r["p90_ms"]), f1(r["p99_ms"]), f1(r["max_ms"]), intText(r["certs_issued"]), f1(r["server_peak_rss_mb"]))
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	fmt.Fprintln(w, "\nrate/s: ceiling = full mTLS handshakes/s; register, storm = boots/s; heartbeat = acknowledged beats/s; stepca-sign = step-ca's certificates signed/s.")
	if r := byName[ScenarioRegister]; r != nil && r["certs_linted"] != nil {
		fmt.Fprintf(w, "register: %s certificates linted (zlint v3.6.1, RFC 5280 lints), %s failing%s; duplicate nodes %s (registry lists %s nodes of the fleet).\n",
			intText(r["certs_linted"]), intText(r["lint_failures"]), samplesText(r["lint_failure_samples"]), intText(r["duplicate_nodes"]), intText(r["fleet_nodes"]))
	}
	if r := byName[ScenarioHeartbeat]; r != nil {
		procs := ""
		if p := num(r["processes"]); p > 1 {
			procs = fmt.Sprintf(" (%.0f load generators against %s, combined; latencies are the largest of the processes')", p, heartbeatInstances(r))
		}
		fmt.Fprintf(w, "heartbeat: %s beats/s acknowledged from %s nodes at %s s%s; %s suspect, %s unreachable events.\n",
			f1(r["throughput_per_s"]), intText(r["nodes"]), f1(r["interval_s"]), procs, intText(r["suspect_events"]), intText(r["unreachable_events"]))
		if r["store_xacts_per_s"] != nil {
			fmt.Fprintf(w, "heartbeat: store %s transactions/s (all services, reads included) and %s rows written/s, against %s beats/s.\n",
				f1(r["store_xacts_per_s"]), f1(r["store_rows_written_per_s"]), f1(r["throughput_per_s"]))
		}
	}

	summary := map[string]any{"scenario": "summary", "ceiling_handshakes_per_s": ceiling}
	if cpuBound > 0 {
		summary["ceiling_cpu_bound_handshakes_per_s"] = cpuBound
	}
	var checks []map[string]any
	check := func(name, target, measured string, met bool, note string) {
		c := map[string]any{"target": name, "want": target, "measured": measured, "met": met}
		if note != "" {
			c["note"] = note
		}
		checks = append(checks, c)
	}
	sizeNote := func(r map[string]any, want int) string {
		if n := int(num(r["nodes"])); n != want {
			return fmt.Sprintf("measured with %d nodes; the target is for %d", n, want)
		}
		return ""
	}
	for _, name := range throughputNames(byName) {
		r := byName[name]
		if r == nil || ceiling <= 0 {
			continue
		}
		ratio := round(num(r["throughput_per_s"])/ceiling, 3)
		r["ceiling_ratio"] = ratio
		summary[name+"_boots_per_ceiling_handshake"] = ratio
		if cpuBound > 0 {
			summary[name+"_boots_per_cpu_bound_handshake"] = round(num(r["throughput_per_s"])/cpuBound, 3)
		}
	}
	if r := byName[ScenarioStorm]; r != nil {
		note := sizeNote(r, targetStormNodes)
		check("storm: no errors", "0", errCount(r), errCount(r) == "0", note)
		check("storm: no new certificates", "0", intText(r["certs_issued"]), intText(r["certs_issued"]) == "0", note)
		if ceiling > 0 {
			ratio := num(r["ceiling_ratio"])
			check("storm: boots/s vs the handshake ceiling", fmt.Sprintf(">= %.2f", targetCeilingShare), fmt.Sprintf("%.3f", ratio), ratio >= targetCeilingShare, note)
		}
		check("storm: p99 boot latency", fmt.Sprintf("< %d ms", targetStormP99Ms), f1(r["p99_ms"]), num(r["p99_ms"]) < targetStormP99Ms, note)
	}
	if r := byName[ScenarioRegister]; r != nil {
		note := sizeNote(r, targetRegisterNodes)
		check("register: every node registered", intText(r["nodes"]), intText(r["ok"]), errCount(r) == "0" && num(r["ok"]) == num(r["nodes"]), note)
		if r["certs_linted"] != nil {
			check("register: every certificate passes zlint (RFC 5280)", intText(r["nodes"])+" linted, 0 failing",
				intText(r["certs_linted"])+" linted, "+intText(r["lint_failures"])+" failing",
				num(r["certs_linted"]) == num(r["nodes"]) && intText(r["lint_failures"]) == "0", note)
		}
		if r["duplicate_nodes"] != nil {
			check("register: no duplicate nodes", "0", intText(r["duplicate_nodes"]), intText(r["duplicate_nodes"]) == "0", note)
		}
	}
	stepCAChecks(byName, check)
	if r := byName[ScenarioHeartbeat]; r != nil {
		note := sizeNote(r, targetHeartbeatNodes)
		if iv := num(r["interval_s"]); iv != 5 {
			note = strings.TrimPrefix(note+fmt.Sprintf("; interval %g s (the target is at 5 s)", iv), "; ")
		}
		check("heartbeat: no unreachable events", "0", intText(r["unreachable_events"]), intText(r["unreachable_events"]) == "0", note)
		check("heartbeat: every node kept beating", intText(r["nodes"]), intText(r["ok"]), errCount(r) == "0" && num(r["ok"]) == num(r["nodes"]), note)
		if r["store_xacts_per_s"] != nil {
			x, b := num(r["store_xacts_per_s"]), num(r["throughput_per_s"])
			check("heartbeat: batched store writes", "transactions/s << beats/s",
				fmt.Sprintf("%.1f/s vs %.1f beats/s", x, b), b > 0 && x < b/10, note)
		}
	}
	summary["targets"] = checks
	if len(checks) > 0 {
		fmt.Fprintln(w, "\ntargets (reported, not asserted):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range checks {
			met := "met"
			if c["met"] != true {
				met = "NOT MET"
			}
			note, _ := c["note"].(string)
			fmt.Fprintf(tw, "  %s\twant %s\tmeasured %s\t%s\t%s\n", c["target"], c["want"], c["measured"], met, note)
		}
		if err := tw.Flush(); err != nil {
			return nil, err
		}
	}
	for _, name := range throughputNames(byName) {
		if v, ok := summary[name+"_boots_per_ceiling_handshake"]; ok {
			fmt.Fprintf(w, "%s: %.3f boots/s per handshake/s of the ceiling", name, v)
			if b, ok := summary[name+"_boots_per_cpu_bound_handshake"]; ok {
				fmt.Fprintf(w, " (%.3f of the CPU-bound %.1f/s)", b, cpuBound)
			}
			fmt.Fprintln(w)
		}
	}
	figures(w, summary, byName, ceiling)
	floorFigures(w, summary, byName, ceiling)
	driftFigures(w, summary, byName, probes, ceiling)
	fmt.Fprintln(w, "not measured here: storm latency with 100,000 registered nodes against 1,000 (register 100,000 with one seed, then storm a subset: berth-loadgen storm --nodes 1000).")
	return summary, nil
}

// throughputNames are the boot scenarios of byName in report order: the
// storm, the registration, then each against other deployments.
func throughputNames(byName map[string]map[string]any) []string {
	names := []string{ScenarioStorm, ScenarioRegister}
	var others []string
	for k, r := range byName {
		if str(r["deployment"]) != "" && k != ScenarioCeiling {
			others = append(others, k)
		}
	}
	slices.Sort(others)
	return append(names, others...)
}

// samplesText lists a result's lint failure samples, if any.
func samplesText(v any) string {
	l, _ := v.([]any)
	if len(l) == 0 {
		return ""
	}
	var parts []string
	for _, e := range l {
		parts = append(parts, fmt.Sprint(e))
	}
	return " (e.g. " + strings.Join(parts, ", ") + ")"
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// num reads a JSON number; 0 when absent or null.
// heartbeatInstances says how many heartbeat services a result measured:
// the servers it read are named heartbeat, heartbeat2 and so on.
func heartbeatInstances(r map[string]any) string {
	rss, _ := r["server_rss_mb"].(map[string]any)
	n := 0
	for name := range rss {
		if strings.HasPrefix(name, "heartbeat") {
			n++
		}
	}
	switch n {
	case 0:
		return "the heartbeat service"
	case 1:
		return "one heartbeat instance"
	}
	return fmt.Sprintf("%d heartbeat replicas", n)
}

func num(v any) float64 {
	switch v := v.(type) {
	case json.Number:
		f, _ := v.Float64()
		return f
	case float64:
		return v
	case int:
		return float64(v)
	}
	return 0
}

func f1(v any) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", num(v))
}

func intText(v any) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", num(v))
}

// errCount sums a result's errors object.
func errCount(r map[string]any) string {
	m, _ := r["errors"].(map[string]any)
	var n float64
	for _, v := range m {
		n += num(v)
	}
	return fmt.Sprintf("%.0f", n)
}

// Goals of the issue "One handshake per boot and lean connections".
const (
	goalResumeShare = 0.85
	// stepCASignShare is step-ca v0.30.2's /sign with one-time tokens in
	// the run, as a share of the same run's ceiling (689/s): the
	// goal when a run does not measure it (stepca-sign).
	stepCASignShare    = 0.45
	goalCPUPerBootMs   = 0.8
	goalStormS         = 15
	goalHBKBPerNode    = 16
	goalHBCPUPerBeatMs = 0.05
	projectHBNodes     = 100_000
)

// loadgenFigures prints the load generator's own CPU per boot (the
// simulated agents' side, on the same cores as the servers) and the boots
// per second the CPU of both sides allows with every core busy: the most
// this machine can show, whatever the servers do.
func loadgenFigures(summary map[string]any, name string, r map[string]any, ceiling, cores float64,
	row func(key, name, measured, ratio, goal string), inHandshakes func(float64) string) {
	v, ok := r["loadgen_cpu_ms_per_op"]
	if !ok || v == nil {
		return
	}
	ms := num(v)
	summary[name+"_loadgen_cpu_ms_per_boot"] = ms
	row(name, "load generator CPU per boot ("+name+")", fmt.Sprintf("%.3f ms", ms), inHandshakes(ms), "-")
	srv, ok := r["server_cpu_ms_per_op"]
	if !ok || srv == nil || cores <= 0 || ceiling <= 0 {
		return
	}
	boundRow := func(key, who string, perBoot float64) {
		bound := cores * 1000 / perBoot
		summary[name+key] = round(bound, 1)
		row(name, "boots/s the CPU of "+who+" allows ("+name+")", fmt.Sprintf("%.1f boots/s on %.0f cores", bound, cores),
			fmt.Sprintf("%.3f of the ceiling; 10,000 boots in %.1f s", bound/ceiling, targetStormNodes/bound), "-")
	}
	boundRow("_cpu_bound_boots_per_s", "both sides", ms+num(srv))
	if db, ok := r["db_cpu_ms_per_op"]; ok && db != nil {
		boundRow("_cpu_bound_with_db_boots_per_s", "both sides and PostgreSQL", ms+num(srv)+num(db))
	}
}

// figures prints the figures from this one run, each with the
// handshake ceiling as its yardstick: throughputs as a share of the
// ceiling's handshakes/s, CPU times in handshakes' worth of server CPU
// (half the ceiling's CPU per handshake, which counts both ends), and
// the heartbeat projected to 100,000 nodes per instance. It adds them to
// summary.
func figures(w io.Writer, summary map[string]any, byName map[string]map[string]any, ceiling float64) {
	c := byName[ScenarioCeiling]
	hsCPU, cores := 0.0, 0.0
	if c != nil {
		cores = num(c["cores"])
	}
	if c != nil && ceiling > 0 {
		hsCPU = num(c["cpu_ms_per_handshake"]) / 2
		fmt.Fprintf(w, "\nfigures against the handshake ceiling (%.1f handshakes/s", ceiling)
		if hsCPU > 0 {
			fmt.Fprintf(w, ", %.3f ms of server CPU each: half the CPU of both ends", hsCPU)
		}
		fmt.Fprintln(w, "):")
	} else {
		fmt.Fprintln(w, "\nfigures (no ceiling measured in this run: no ratios to it):")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(key, name, measured, ratio, goal string) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\tgoal %s\n", name, measured, ratio, goal)
	}
	inHandshakes := func(ms float64) string {
		if hsCPU <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f handshakes' CPU", ms/hsCPU)
	}
	stepCAFigures(summary, byName, ceiling, row, inHandshakes)
	for _, name := range throughputNames(byName) {
		r := byName[name]
		if r == nil || ceiling <= 0 {
			continue
		}
		register := str(r["scenario"]) == ScenarioRegister
		what := "Resume"
		if register {
			what = "first registration"
		}
		if d := str(r["deployment"]); d != "" {
			what += " (" + d + ")"
		}
		rate := num(r["throughput_per_s"])
		goal := fmt.Sprintf(">= %.2f", goalResumeShare)
		if register {
			goal = registerGoal(byName[ScenarioStepCASign], ceiling)
		}
		row(name, what+" throughput", fmt.Sprintf("%.1f boots/s", rate), fmt.Sprintf("%.3f of the ceiling", rate/ceiling), goal)
		if v, ok := r["server_cpu_ms_per_op"]; ok && v != nil {
			ms := num(v)
			summary[name+"_server_cpu_ms_per_boot"] = ms
			row(name, "server CPU per boot ("+name+")", fmt.Sprintf("%.3f ms", ms), inHandshakes(ms), fmt.Sprintf("<= %.1f ms", goalCPUPerBootMs))
		}
		if v, ok := r["db_cpu_ms_per_op"]; ok && v != nil {
			ms := num(v)
			summary[name+"_db_cpu_ms_per_boot"] = ms
			row(name, "PostgreSQL CPU per boot, not in the server CPU ("+name+")", fmt.Sprintf("%.3f ms", ms), inHandshakes(ms), "-")
		}
		loadgenFigures(summary, name, r, ceiling, cores, row, inHandshakes)
		if v, ok := r["server_cpu_ms_per_boot_total"]; ok && v != nil {
			ms := num(v)
			summary[name+"_server_cpu_ms_per_boot_total"] = ms
			row(name, "server CPU per boot with its later heartbeat stream ("+name+")", fmt.Sprintf("%.3f ms", ms), inHandshakes(ms), "-")
		}
		if v, ok := r["handshakes_per_boot"]; ok && v != nil {
			summary[name+"_handshakes_per_boot"] = num(v)
			row(name, "full handshakes per boot on the boot path ("+name+")", fmt.Sprintf("%.2f", num(v)), "-", "1 on the boot path")
		}
		if v, ok := r["handshakes_per_boot_total"]; ok && v != nil {
			summary[name+"_handshakes_per_boot_total"] = num(v)
			row(name, "full handshakes per boot in total ("+name+")", fmt.Sprintf("%.2f", num(v)),
				fmt.Sprintf("streams opened later, the last %.1f s after the release", num(r["follow_s"])), "-")
		}
		if v, ok := r["heartbeats_during_boots"]; ok && v != nil {
			n := num(v)
			summary[name+"_streams_during_boots"] = n
			row(name, "heartbeat streams connected while nodes still booted ("+name+")", intText(v),
				fmt.Sprintf("%.1f%% of the boots", 100*n/max(1, num(r["ok"]))), "0")
		}
		if v, ok := r["heartbeat_retries_during_boots"]; ok && v != nil {
			summary[name+"_stream_retries_during_boots"] = num(v)
			row(name, "heartbeat stream tries deferred (or failed) while nodes still booted ("+name+")", intText(v),
				"refused after the ClientHello, retried later", "-")
		}
		if name == ScenarioStorm && rate > 0 {
			s := targetStormNodes / rate
			summary["storm_10000_projected_s"] = round(s, 1)
			row(name, "storm of 10,000 boots", fmt.Sprintf("%.1f s (%s nodes measured)", s, intText(r["nodes"])),
				fmt.Sprintf("10,000 handshakes at the ceiling: %.1f s", targetStormNodes/ceiling), fmt.Sprintf("<= %d s", goalStormS))
		}
	}
	if r := byName[ScenarioHeartbeat]; r != nil {
		iv := num(r["interval_s"])
		if v, ok := r["heartbeat_kb_per_node"]; ok && v != nil {
			kb := num(v)
			summary["heartbeat_kb_per_node"] = kb
			summary["heartbeat_kb_per_node_goal_ratio"] = round(kb/goalHBKBPerNode, 2)
			row("hb", "heartbeat memory per connected node", fmt.Sprintf("%.1f KiB (%s nodes)", kb, intText(r["nodes"])),
				fmt.Sprintf("%.2f × the goal; %.1f GiB at %d nodes", kb/goalHBKBPerNode, kb*projectHBNodes/(1<<20), projectHBNodes), fmt.Sprintf("<= %d KiB", goalHBKBPerNode))
		}
		if v, ok := r["server_cpu_ms_per_op"]; ok && v != nil && iv > 0 {
			ms := num(v)
			summary["heartbeat_server_cpu_ms_per_beat"] = ms
			cores := func(iv float64) float64 { return ms / 1000 * projectHBNodes / iv }
			at := fmt.Sprintf("%.2f cores at %d nodes every %g s", cores(iv), projectHBNodes, iv)
			if iv != 5 {
				at += fmt.Sprintf(", %.2f every 5 s", cores(5))
			}
			summary["heartbeat_cpu_ms_per_beat_goal_ratio"] = round(ms/goalHBCPUPerBeatMs, 2)
			row("hb", "heartbeat server CPU per beat", fmt.Sprintf("%.4f ms", ms),
				fmt.Sprintf("%.2f × the goal; %s; %s", ms/goalHBCPUPerBeatMs, inHandshakes(ms), at), fmt.Sprintf("<= %.2f ms", goalHBCPUPerBeatMs))
		}
	}
	_ = tw.Flush()
}
