package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkLive measures how long a running node takes to see a change,
// as an engine and a host daemon see it, through the real binaries on
// berthd dev at the default heartbeat interval: from the start of
// berthctl bundles put until berth-agent status shows the version applied,
// and from the start of berth-agent report set until berthctl nodes get
// shows the value. Both are measured on a quiet server and with 1,000
// simulated nodes (berth-loadgen heartbeat) beating on it. Each wait polls
// every 50 ms with a fresh process, so figures carry about 0.1 s of
// polling. Run: go test -run '^$' -bench BenchmarkLive -benchtime 5x ./tests/
func BenchmarkLive(b *testing.B) {
	// One address registers the whole simulated fleet: its failed token
	// attempts (retries under load) must not trip the per-address limit.
	d := startDev(b, "--token-failure-burst", "100000")
	m := newMachine(b, "hv-40", "4c4c4544-0042-3510-8051-b2c04f4e4d40")
	first, _, err := m.boot(b, d, createToken(b, d, "--auto-approve"))
	if err != nil {
		b.Fatal(err)
	}
	a := startAgent(b, d, m)
	src := b.TempDir()
	version := int64(0)

	measure := func(b *testing.B) {
		var toApplied, toVisible []time.Duration
		for i := 0; i < b.N; i++ {
			version++
			f := filepath.Join(src, "conf")
			if err := os.WriteFile(f, []byte(fmt.Sprintf("v=%d\n", version)), 0o644); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			mustRun(b, d.env, "berthctl", "bundles", "put", first.NodeID, "--file", f+"=etc/conf")
			want := version
			waitFor(b, "the bundle applied", 2*time.Minute, func() bool { return a.status(b).BundleVersion == want })
			toApplied = append(toApplied, time.Since(t0))

			value := strconv.FormatInt(time.Now().UnixNano(), 10)
			t0 = time.Now()
			mustRun(b, nil, "berth-agent", "report", "set", "mark="+value, "--socket", a.socket)
			waitFor(b, "the report in nodes get", 2*time.Minute, func() bool {
				out, err := run(b, d.env, "berthctl", "nodes", "get", first.NodeID, "-o", "json")
				var n struct {
					Reported map[string]string `json:"reported"`
				}
				if err == nil {
					mustJSON(b, out, &n)
				}
				return n.Reported["mark"] == value
			})
			toVisible = append(toVisible, time.Since(t0))
		}
		report(b, "put_to_applied", toApplied)
		report(b, "report_to_visible", toVisible)
	}

	b.Run("quiet", measure)
	b.Run("1000_agents", func(b *testing.B) {
		start(b, d.env, "berth-loadgen", "heartbeat", "--nodes", "1000", "--duration", "30m", "--seed", "bench-live",
			"--concurrency", "32", "--wait", "10m")
		waitFor(b, "1,000 simulated nodes healthy", 10*time.Minute, func() bool {
			out, err := run(b, d.env, "berthctl", "nodes", "list", "-o", "json")
			var nodes []struct {
				Health string `json:"health"`
			}
			if err != nil {
				return false
			}
			mustJSON(b, out, &nodes)
			healthy := 0
			for _, n := range nodes {
				if n.Health == "healthy" {
					healthy++
				}
			}
			return healthy >= 1001
		})
		measure(b)
	})
}

// report adds the median and the worst of ds, in milliseconds.
func report(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Milliseconds()), name+"_p50_ms")
	b.ReportMetric(float64(ds[len(ds)-1].Milliseconds()), name+"_max_ms")
	b.Logf("MEASURE %s: %v", name, ds)
}
