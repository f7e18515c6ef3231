package loadgen

import (
	"errors"
	"fmt"
	"strings"
)

// Combine adds up the results of load generators that ran one scenario in
// parallel, each with its own nodes (--seed), against services of their
// own or shared, as one result of all their nodes: nodes, ok, errors,
// beats, throughput and health events are summed (each counts only its own nodes); latency
// percentiles are the largest of the processes' (an upper bound: the
// percentiles of the union are not known from the parts); the window,
// connect and setup times the longest; certificates issued, server memory
// and the store's write rates, which each process measures for all
// servers together, the largest reading.
func Combine(rs []*Result) (*Result, error) {
	if len(rs) == 0 {
		return nil, errors.New("no results to combine")
	}
	out := &Result{Scenario: rs[0].Scenario, Errors: map[string]int{}, Processes: len(rs)}
	var seeds []string
	var hbGrowthKB float64
	maxPtr := func(dst **float64, v *float64) {
		if v != nil && (*dst == nil || **dst < *v) {
			x := *v
			*dst = &x
		}
	}
	sumInt := func(dst **int, v *int) {
		if v != nil {
			x := *v
			if *dst != nil {
				x += **dst
			}
			*dst = &x
		}
	}
	for i, r := range rs {
		if r.Scenario != out.Scenario {
			return nil, fmt.Errorf("cannot combine %s with %s results", out.Scenario, r.Scenario)
		}
		seeds = append(seeds, r.Seed)
		out.Nodes += r.Nodes
		out.Concurrency += r.Concurrency
		out.OK += r.OK
		for k, v := range r.Errors {
			out.Errors[k] += v
		}
		for k, v := range r.ErrorSamples {
			if out.ErrorSamples == nil {
				out.ErrorSamples = map[string]string{}
			}
			if _, ok := out.ErrorSamples[k]; !ok {
				out.ErrorSamples[k] = v
			}
		}
		out.ThroughputPerS = round(out.ThroughputPerS+r.ThroughputPerS, 1)
		out.P50Ms, out.P90Ms = max(out.P50Ms, r.P50Ms), max(out.P90Ms, r.P90Ms)
		out.P99Ms, out.MaxMs = max(out.P99Ms, r.P99Ms), max(out.MaxMs, r.MaxMs)
		out.ElapsedS = max(out.ElapsedS, r.ElapsedS)
		out.ConnectS = max(out.ConnectS, r.ConnectS)
		out.SetupS = max(out.SetupS, r.SetupS)
		out.IntervalS = max(out.IntervalS, r.IntervalS)
		if r.CertsIssued != nil && (out.CertsIssued == nil || *out.CertsIssued < *r.CertsIssued) {
			c := *r.CertsIssued
			out.CertsIssued = &c
		}
		maxPtr(&out.ServerPeakRSSMB, r.ServerPeakRSSMB)
		// Each process measured every server, and the database, over
		// windows lined up: the largest is the servers' CPU, and the
		// heartbeat processes' growth is shared by all the nodes together.
		maxPtr(&out.ServerCPUMsTotal, r.ServerCPUMsTotal)
		maxPtr(&out.DBCPUMs, r.DBCPUMs)
		if r.HeartbeatKBPerNode != nil {
			hbGrowthKB = max(hbGrowthKB, *r.HeartbeatKBPerNode*float64(r.OK))
		}
		for _, m := range []struct {
			dst *map[string]float64
			src map[string]float64
		}{{&out.ServerRSSMB, r.ServerRSSMB}, {&out.ServerHWMMB, r.ServerHWMMB}, {&out.ServerCPUMs, r.ServerCPUMs}} {
			for k, v := range m.src {
				if *m.dst == nil {
					*m.dst = map[string]float64{}
				}
				(*m.dst)[k] = max((*m.dst)[k], v)
			}
		}
		out.LoadgenPeakRSSMB = round(out.LoadgenPeakRSSMB+r.LoadgenPeakRSSMB, 1)
		if out.FDLimit == 0 || (r.FDLimit > 0 && r.FDLimit < out.FDLimit) {
			out.FDLimit = r.FDLimit
		}
		for k, v := range r.Actions {
			if out.Actions == nil {
				out.Actions = map[string]int{}
			}
			out.Actions[k] += v
		}
		for k, v := range r.BundleSources {
			if out.BundleSources == nil {
				out.BundleSources = map[string]int{}
			}
			out.BundleSources[k] += v
		}
		out.Renewed += r.Renewed
		out.BundlesApplied += r.BundlesApplied
		out.HeartbeatsAcked += r.HeartbeatsAcked
		out.BeatsSent += r.BeatsSent
		out.BeatsAcked += r.BeatsAcked
		sumInt(&out.SuspectEvents, r.SuspectEvents)
		sumInt(&out.UnreachableEvents, r.UnreachableEvents)
		sumInt(&out.CertsLinted, r.CertsLinted)
		sumInt(&out.LintFailures, r.LintFailures)
		sumInt(&out.DuplicateNodes, r.DuplicateNodes)
		sumInt(&out.FleetNodes, r.FleetNodes)
		for _, s := range r.LintFailureSamples {
			if len(out.LintFailureSamples) < maxLintSamples {
				out.LintFailureSamples = append(out.LintFailureSamples, s)
			}
		}
		if out.WindowStart == "" || (r.WindowStart != "" && r.WindowStart < out.WindowStart) {
			out.WindowStart = r.WindowStart
		}
		out.WindowEnd = max(out.WindowEnd, r.WindowEnd)
		maxPtr(&out.StoreXactsPerS, r.StoreXactsPerS)
		maxPtr(&out.StoreRowsPerS, r.StoreRowsPerS)
		for _, n := range r.Notes {
			out.Notes = append(out.Notes, fmt.Sprintf("[process %d] %s", i+1, n))
		}
	}
	if len(out.Errors) == 0 {
		out.Errors = map[string]int{}
	}
	if beats := out.ThroughputPerS * out.ElapsedS; out.ServerCPUMsTotal != nil && beats > 0 {
		v := round(*out.ServerCPUMsTotal/beats, 4)
		out.ServerCPUMsPerOp = &v
	}
	if hbGrowthKB > 0 && out.OK > 0 {
		v := round(hbGrowthKB/float64(out.OK), 1)
		out.HeartbeatKBPerNode = &v
	}
	out.Seed = strings.Join(seeds, ",")
	out.Notes = append([]string{fmt.Sprintf("combined from %d load generators in parallel, each with its own nodes: "+
		"counts, throughput and health events summed; latency percentiles the largest of the processes' (an upper bound); "+
		"certificates issued, server memory, CPU and store rates, measured for all servers together by each, the largest", len(rs))}, out.Notes...)
	return out, nil
}
