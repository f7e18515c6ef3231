package loadgen

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// writeStepCAText prints a stepca-sign result for people.
func writeStepCAText(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(tw, "%s of %d fresh keys (concurrency %d)\n", r.Scenario, r.Nodes, r.Concurrency)
	row("ok", "%d of %d", r.OK, r.Nodes)
	row("errors", "%s", errorText(r.Errors))
	row("throughput", "%.1f signs/s; all done in %.2f s", r.ThroughputPerS, r.ElapsedS)
	row("latency", "p50 %.1f ms   p90 %.1f ms   p99 %.1f ms   max %.1f ms (one-time token, TLS handshake, POST /1.0/sign)", r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
	if r.HandshakesPerBoot != nil {
		row("handshakes", "%.2f full TLS handshakes per sign", *r.HandshakesPerBoot)
	}
	if r.ServerCPUMsPerOp != nil {
		row("step-ca CPU", "%.3f ms per sign (%.1f ms in all)", *r.ServerCPUMsPerOp, *r.ServerCPUMsTotal)
	} else {
		row("step-ca CPU", "not measured (give --server-pids)")
	}
	if r.ServerPeakRSSMB != nil {
		row("step-ca peak RSS", "%.1f MB", *r.ServerPeakRSSMB)
	}
	row("load generator", "peak RSS %.1f MB, fd limit %d, keys and CSRs (untimed) %.1f s", r.LoadgenPeakRSSMB, r.FDLimit, r.SetupS)
	for _, k := range sortedKeys(r.ErrorSamples) {
		row("  e.g. "+k, "%s", r.ErrorSamples[k])
	}
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	return tw.Flush()
}

// registerNames are the first-registration results of byName: register
// against the split services and against other deployments (register_dev).
func registerNames(byName map[string]map[string]any) []string {
	var out []string
	for _, name := range throughputNames(byName) {
		if r := byName[name]; r != nil && str(r["scenario"]) == ScenarioRegister {
			out = append(out, name)
		}
	}
	return out
}

// stepCAChecks adds the targets that need step-ca measured in the same run:
// every sign succeeded, and each first registration is at least as fast
// as step-ca signs.
func stepCAChecks(byName map[string]map[string]any, check func(name, target, measured string, met bool, note string)) {
	sc := byName[ScenarioStepCASign]
	if sc == nil {
		return
	}
	check("stepca-sign: every sign succeeded", intText(sc["nodes"]), intText(sc["ok"]), errCount(sc) == "0" && num(sc["ok"]) == num(sc["nodes"]), "")
	rate := num(sc["throughput_per_s"])
	for _, name := range registerNames(byName) {
		r := byName[name]
		reg := num(r["throughput_per_s"])
		note := ""
		if n, m := num(r["nodes"]), num(sc["nodes"]); n != m {
			note = fmt.Sprintf("%.0f registrations against %.0f signs", n, m)
		}
		check(name+": first registrations at least as fast as step-ca signs", fmt.Sprintf(">= %.1f/s (step-ca, this run)", rate),
			fmt.Sprintf("%.1f/s (%.2f × step-ca)", reg, ratio(reg, rate)), rate > 0 && reg >= rate, note)
	}
}

// stepCAFigures prints step-ca's /sign against the ceiling and each first
// registration against it, and adds them to summary. row and inHandshakes
// are figures' own.
func stepCAFigures(summary map[string]any, byName map[string]map[string]any, ceiling float64,
	row func(key, name, measured, ratio, goal string), inHandshakes func(ms float64) string) {
	sc := byName[ScenarioStepCASign]
	if sc == nil {
		return
	}
	rate := num(sc["throughput_per_s"])
	summary["stepca_sign_per_s"] = rate
	share := "-"
	if ceiling > 0 {
		summary["stepca_sign_per_ceiling_handshake"] = round(rate/ceiling, 3)
		share = fmt.Sprintf("%.3f of the ceiling", rate/ceiling)
	}
	row("stepca", "step-ca /sign throughput (one-time token, fresh TLS connection)", fmt.Sprintf("%.1f signs/s (%s keys)", rate, intText(sc["nodes"])), share, "the yardstick of first registration")
	cpu, hasCPU := sc["server_cpu_ms_per_op"]
	if hasCPU && cpu != nil {
		summary["stepca_server_cpu_ms_per_sign"] = num(cpu)
		row("stepca", "step-ca server CPU per sign", fmt.Sprintf("%.3f ms", num(cpu)), inHandshakes(num(cpu)), "-")
	}
	for _, name := range registerNames(byName) {
		r := byName[name]
		reg := num(r["throughput_per_s"])
		summary[name+"_per_stepca_sign"] = round(ratio(reg, rate), 3)
		row(name, "first registration vs step-ca /sign ("+name+")", fmt.Sprintf("%.2f × step-ca's rate", ratio(reg, rate)),
			fmt.Sprintf("%.1f boots/s against %.1f signs/s", reg, rate), ">= 1.00")
		if v, ok := r["server_cpu_ms_per_op"]; ok && v != nil && hasCPU && cpu != nil && num(cpu) > 0 {
			summary[name+"_server_cpu_per_stepca_sign"] = round(num(v)/num(cpu), 3)
			row(name, "server CPU per registration vs per step-ca sign ("+name+")", fmt.Sprintf("%.2f ×", num(v)/num(cpu)),
				fmt.Sprintf("%.3f ms against %.3f ms", num(v), num(cpu)), "-")
		}
	}
}

// registerGoal is the goal of a first registration's throughput: step-ca's
// /sign rate measured in this run when sc is there, else the issue's.
func registerGoal(sc map[string]any, ceiling float64) string {
	if sc == nil || ceiling <= 0 {
		return fmt.Sprintf(">= step-ca's /sign rate, %.2f of the ceiling in the issue's run (not measured here)", stepCASignShare)
	}
	rate := num(sc["throughput_per_s"])
	return fmt.Sprintf(">= step-ca's /sign rate, %.3f of the ceiling (%.1f/s, this run)", rate/ceiling, rate)
}

// ratio is a/b, 0 when b is.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
