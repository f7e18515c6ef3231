package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkConsoleFleet measures the web console with 10,000 nodes
// registered by berth-loadgen on berthd dev (SQLite): the Fleet page's
// server time, cold (the counts read the whole fleet) and warm, its time
// to first paint in chromium, and, while the simulated nodes fall silent
// (they beat once, then suspect, then unreachable), the lag from each
// recorded health transition to the open Fleet page showing it.
func BenchmarkConsoleFleet(b *testing.B) {
	const nodes = 10000
	d := startConsoleDev(b, "--token-failure-burst", "100000", "--heartbeat-interval", "20s", "--heartbeat-grace", "90s")
	t0 := time.Now()
	// Registering 10,000 nodes takes minutes on a loaded machine: longer
	// than run's bound.
	lg := start(b, d.env, "berth-loadgen", "register", "--nodes", fmt.Sprint(nodes), "--seed", "bench-console", "--concurrency", "32")
	select {
	case <-lg.done:
	case <-time.After(30 * time.Minute):
		b.Fatal("berth-loadgen register did not finish in 30 minutes")
	}
	if !lg.cmd.ProcessState.Success() {
		b.Fatalf("berth-loadgen register: %v:\n%s", lg.cmd.ProcessState, lg.output())
	}
	b.Logf("MEASURE console bench: %d nodes registered by berth-loadgen in %v", nodes, time.Since(t0).Round(time.Second))

	// The link berthd dev printed expired while the fleet registered.
	newLink := func() string {
		var link struct {
			URL string `json:"url"`
		}
		mustJSON(b, mustRun(b, d.env, "berthctl", "ui", "link", "-o", "json"), &link)
		return link.URL
	}
	client := d.httpClient(b)
	var session string
	{
		resp, err := client.Get(newLink())
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == "__Host-berth-session" {
				session = c.Value
			}
		}
		if session == "" {
			b.Fatal("no session from the sign-in link")
		}
	}
	get := func(path string) (time.Duration, string) {
		req, _ := http.NewRequest("GET", d.base+path, nil)
		req.AddCookie(&http.Cookie{Name: "__Host-berth-session", Value: session})
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: HTTP %d", path, resp.StatusCode)
		}
		return took, string(body)
	}
	cold, page := get("/ui/fleet")
	if !strings.Contains(page, fmt.Sprintf(`data-count="total">%d<`, nodes+0)) {
		b.Fatalf("the Fleet page does not count %d nodes", nodes)
	}
	// A whole-fleet count, as the first load and each refresh of the
	// counts make it.
	var full []time.Duration
	for range 5 {
		took, _ := get("/ui/fleet/counts?fresh=1")
		full = append(full, took)
	}
	report(b, "counts_whole_fleet", full)
	browser := newBrowser(b)
	within(b, browser, "sign in", chromedp.Navigate(newLink()), chromedp.WaitVisible(chromedp.CSS("#fleet")))
	b.ReportMetric(float64(cold.Microseconds())/1000, "fleet_cold_ms")
	b.Logf("MEASURE fleet_cold (first load, counting the whole fleet): %v", cold)
	warm := []time.Duration{}
	for range 20 {
		d, _ := get("/ui/fleet")
		warm = append(warm, d)
	}
	last, _ := get("/ui/fleet?size=500")
	b.ReportMetric(float64(last.Microseconds())/1000, "fleet_500rows_ms")
	b.Logf("MEASURE fleet_500rows: %v", last)
	report(b, "fleet_server", warm)

	// The browser: from navigation start to the page's first paint (or,
	// where headless chromium records no paint entry, to the DOM being
	// ready, which is when the server-rendered table is on screen).
	var paints []time.Duration
	for range 5 {
		openPage(b, browser, d.base+"/ui/fleet", "#fleet")
		ms := evaluate[float64](b, browser, `(function () {
			var p = performance.getEntriesByName('first-contentful-paint')[0];
			if (p) { return p.startTime; }
			var n = performance.getEntriesByType('navigation')[0];
			return n ? n.domContentLoadedEventEnd : -1; })()`)
		if ms <= 0 {
			b.Fatal("no paint or navigation timing")
		}
		paints = append(paints, time.Duration(ms*float64(time.Millisecond)))
	}
	report(b, "fleet_first_render", paints)

	// Rows of suspect nodes turn unreachable while the page is open.
	openPage(b, browser, d.base+"/ui/fleet?health=suspect", "#fleet")
	rows := evaluate[int](b, browser, `document.querySelectorAll('#fleet tbody tr[data-node]').length`)
	if rows == 0 {
		b.Log("no suspect node on the page; the transition lag was not measured")
		return
	}
	pollTrue(b, browser, "every suspect row to turn unreachable", `document.querySelectorAll('#fleet tbody tr[data-node] td.h-unreachable').length === `+fmt.Sprint(rows))
	lags := evaluate[[]float64](b, browser, `Array.from(document.querySelectorAll('#fleet tbody tr[data-updated]')).map(function (r) { return Number(r.dataset.updated) - Date.parse(r.dataset.eventTime); })`)
	var ds []time.Duration
	for _, l := range lags {
		ds = append(ds, time.Duration(l*float64(time.Millisecond)))
	}
	slices.Sort(ds)
	b.Logf("MEASURE console bench: %d suspect rows on the page turned unreachable", len(ds))
	report(b, "transition_to_page", ds)
}

// openPage navigates to url and waits for sel, once more if chromium
// reports a network change (it watches the host's interfaces, which
// other processes on a shared machine add and remove).
func openPage(b *testing.B, ctx context.Context, url, sel string) {
	b.Helper()
	for try := 0; ; try++ {
		tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := chromedp.Do(tctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			return
		}
		if try > 0 || !strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
			b.Fatalf("open %s: %v", url, err)
		}
	}
}
