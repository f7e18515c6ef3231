package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/berth-dev/berth/internal/testutil/freeport"
)

// startFrontDoor adds berthd serve --role api in front of a split
// deployment and returns berthctl's environment for it.
func startFrontDoor(t testing.TB, d deployment) (base string, env []string) {
	t.Helper()
	addr := freeport.Addr(t)
	start(t, nil, "berthd", "serve", "--role", "api", "--listen", addr, "--metrics-listen", "",
		"--pki-dir", filepath.Join(d.pkiDir, "api"), "--ca-addr", d.caAddr,
		"--registration-addr", envValue(t, d.env, "BERTH_SERVER"),
		"--bundles-addr", envValue(t, d.env, "BERTH_BUNDLES_SERVER"),
		"--heartbeat-addr", envValue(t, d.env, "BERTH_HEARTBEAT_SERVER"))
	waitFor(t, "the front door healthy", 60*time.Second, healthy(t, addr, d.pkiDir))
	env = slices.DeleteFunc(slices.Clone(d.env), func(kv string) bool { return strings.HasPrefix(kv, "BERTH_SERVER=") })
	return "https://" + addr, append(env, "BERTH_SERVER="+addr)
}

// TestConsoleFrontDoor drives the web console in chromium against the
// front door of a split deployment (berthd serve --role api before the
// four services on PostgreSQL), its sessions kept by the registration
// service: sign-in with berthctl's link, a node registered by a real agent
// appearing under Pending live, another rejected with a reason from the
// Pending page (shown there and by berthctl), approval by a click
// finishing the waiting agent, and the node turning healthy on an open
// Fleet page, its last sighting filled in, without a reload.
func TestConsoleFrontDoor(t *testing.T) {
	d := startServe(t)
	base, env := startFrontDoor(t, d)
	front := consoleDev{deployment: deployment{env: env}, base: base}
	shots := screenshotDir(t)
	link := func() string {
		t.Helper()
		var l struct {
			URL string `json:"url"`
		}
		mustJSON(t, mustRun(t, env, "berthctl", "ui", "link", "-o", "json"), &l)
		if !strings.HasPrefix(l.URL, base+"/ui/link/") {
			t.Fatalf("berthctl ui link printed %q, want a link to the front door %s", l.URL, base)
		}
		return l.URL
	}

	// Sign-in with a link, which the front door spends once.
	browser := newBrowser(t)
	first := link()
	within(t, browser, "sign in with berthctl's link", navigate(first), chromedp.WaitVisible(chromedp.CSS("#fleet")))
	if who := text(t, browser, "#principal"); who != "admin:admin" {
		t.Errorf("signed in as %q, want admin:admin", who)
	}
	resp, err := front.httpClient(t).Get(first)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("the spent link again: HTTP %d, want 403", resp.StatusCode)
	}
	screenshot(t, browser, shots, "front-fleet-empty")

	// Two nodes register while Pending is open; both appear live.
	within(t, browser, "open Pending", navigate(base+"/ui/pending"), chromedp.WaitVisible(chromedp.CSS("#none")))
	evaluate[bool](t, browser, "window.__notReloaded = true")
	boot := func(m machine) runningAgent {
		dir := t.TempDir()
		a := runningAgent{certDir: filepath.Join(dir, "run"), rootDir: filepath.Join(dir, "root"), socket: filepath.Join(dir, "agent.sock")}
		a.p = start(t, d.env, "berth-agent", "--identity", "seed", "--seed-file", m.seedFile, "--hardware-uuid", m.uuid,
			"--hostname", m.hostname, "--cert-dir", a.certDir, "--root", a.rootDir, "--socket", a.socket,
			"--kmsg", "off", "--cmdline", os.DevNull, "--wait", "5m", "--token", createToken(t, d))
		return a
	}
	good := boot(newMachine(t, "front-good", "7a1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e51"))
	boot(newMachine(t, "front-odd", "7a1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e52"))
	pollTrue(t, browser, "both nodes to appear under Pending", `document.querySelectorAll('article.pending').length === 2`)
	if !evaluate[bool](t, browser, "window.__notReloaded === true") {
		t.Error("the Pending page reloaded to show the nodes")
	}
	ids := map[string]string{}
	for _, host := range []string{"front-good", "front-odd"} {
		ids[host] = evaluate[string](t, browser, fmt.Sprintf(`Array.from(document.querySelectorAll('article.pending')).find(function (a) { return a.innerText.indexOf(%q) >= 0; }).dataset.node`, host))
	}
	screenshot(t, browser, shots, "front-pending")

	// A second browser keeps Fleet open, signed in on its own link.
	fleet := newBrowser(t)
	row := fmt.Sprintf(`#fleet tr[data-node=%q]`, ids["front-good"])
	within(t, fleet, "open Fleet", navigate(link()), chromedp.WaitVisible(chromedp.CSS(row)))
	if st, h, seen := text(t, fleet, row+" td.status"), text(t, fleet, row+" td.health"), text(t, fleet, row+" td.seen"); st != "pending" || h != "unknown" || seen != "—" {
		t.Fatalf("Fleet row before approval: status %q health %q last seen %q", st, h, seen)
	}
	evaluate[bool](t, fleet, "window.__notReloaded = true")

	// Reject one with a reason; the page says why it was rejected.
	odd := "#pending-" + ids["front-odd"]
	within(t, browser, "reject with a reason", chromedp.SendKeys(chromedp.CSS(odd+" input.reject-reason"), "unknown rack"),
		chromedp.Click(chromedp.CSS(odd+" button.reject")), chromedp.WaitVisible(chromedp.CSS("p.done")))
	if done, reason := text(t, browser, "p.done"), text(t, browser, fmt.Sprintf(`#rejected tr[data-node=%q] td.reason`, ids["front-odd"])); done != "Node rejected." || reason != "unknown rack" {
		t.Errorf("after rejecting: %q, the rejected list's reason %q", done, reason)
	}
	var got struct {
		Status          string `json:"status"`
		RejectionReason string `json:"rejection_reason"`
	}
	mustJSON(t, mustRun(t, env, "berthctl", "nodes", "get", ids["front-odd"], "-o", "json"), &got)
	if got.Status != "rejected" || got.RejectionReason != "unknown rack" {
		t.Errorf("berthctl nodes get of the rejected node: %+v", got)
	}
	// A reason over the limit is the server's error, shown.
	within(t, browser, "reject with an oversized reason", navigate(base+"/ui/nodes/"+ids["front-good"]),
		chromedp.SetValue(chromedp.CSS("#reject-reason"), strings.Repeat("x", 300)),
		chromedp.Click(chromedp.CSS("form.reject button.reject")), chromedp.WaitVisible(chromedp.CSS("#error")))
	if e := text(t, browser, "#error"); !strings.Contains(e, "HTTP 400: InvalidArgument: reason must be at most 256") {
		t.Errorf("an oversized reason shows %q", e)
	}
	screenshot(t, browser, shots, "front-error")

	// Approve by a click: the agent finishes, Fleet follows live.
	within(t, browser, "approve", navigate(base+"/ui/pending"), chromedp.Click(chromedp.CSS("#pending-"+ids["front-good"]+" button.approve")),
		chromedp.WaitVisible(chromedp.CSS("p.done")))
	waitFor(t, "the approved agent to connect", 90*time.Second, func() bool { return good.status(t).Connection == "connected" })
	within(t, fleet, "the node to turn healthy on Fleet", chromedp.WaitVisible(chromedp.CSS(row+" td.h-healthy")))
	if st, seen := text(t, fleet, row+" td.status"), text(t, fleet, row+" td.seen"); st != "approved" || !strings.HasSuffix(seen, "Z") {
		t.Errorf("Fleet row after approval: status %q, last seen %q", st, seen)
	}
	if !evaluate[bool](t, fleet, "window.__notReloaded === true") {
		t.Error("the Fleet page reloaded to show the change")
	}
	screenshot(t, fleet, shots, "front-fleet")
	within(t, browser, "the Pending page's rejected list", navigate(base+"/ui/pending"), chromedp.WaitVisible(chromedp.CSS("#rejected")))
	screenshot(t, browser, shots, "front-pending-rejected")
}
