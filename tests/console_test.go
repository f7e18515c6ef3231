package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/berth-dev/berth/internal/testutil/freeport"
)

// consoleDev is berthd dev with the web console: its address, its
// environment and the sign-in link it printed at start.
type consoleDev struct {
	deployment
	base, link string
	proc       *proc
}

var signInLink = regexp.MustCompile(`https://\S+/ui/link/\S+`)

// startConsoleDev runs berthd dev with fast heartbeats and reads the
// one-time sign-in link it prints.
func startConsoleDev(t testing.TB, flags ...string) consoleDev {
	t.Helper()
	dir := t.TempDir()
	addr := freeport.Addr(t)
	if flags == nil {
		flags = hbFlags
	}
	p := start(t, nil, "berthd", append([]string{"dev", "--data-dir", dir, "--listen", addr, "--metrics-listen", ""}, flags...)...)
	var link string
	waitFor(t, "berthd dev to print a sign-in link", 60*time.Second, func() bool {
		link = signInLink.FindString(p.output())
		return link != ""
	})
	return consoleDev{deployment: deployment{env: readEnvFile(t, filepath.Join(dir, "env")), dataDir: dir}, base: "https://" + addr, link: link, proc: p}
}

// httpClient is a Go HTTPS client of the front door that trusts the
// deployment's CA and follows no redirects, for the requests a browser
// would not make (forged posts, a reused link).
func (d consoleDev) httpClient(t testing.TB) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(envValue(t, d.env, "BERTH_CA"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in BERTH_CA")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func envValue(t testing.TB, env []string, key string) string {
	t.Helper()
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	t.Fatalf("%s not in %v", key, env)
	return ""
}

// newBrowser starts Debian's chromium headless. A machine without it
// fails the test: tools/provision.sh (make test) installs it.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the console's browser tests need chromium (apt-get install chromium, or tools/provision.sh): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.DisableGPU,
		chromedp.WindowSize(1366, 900),
		chromedp.UserDataDir(t.TempDir()),
		// The deployment's CA is made at run time; the browser is not
		// told to trust it, only to go on (the TLS itself is still
		// checked by the Go client in these tests).
		chromedp.Flag("ignore-certificate-errors", true),
	)
	if os.Geteuid() == 0 {
		// Chromium's sandbox refuses to run as root.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshotDir is where the page screenshots go: $BERTH_UI_SCREENSHOTS,
// else the test's artifact directory (kept with go test -artifacts).
func screenshotDir(t testing.TB) string {
	if d := os.Getenv("BERTH_UI_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

func screenshot(t testing.TB, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

// within runs a browser step with a deadline; events arrive in seconds,
// the deadline only ends a test that would otherwise hang.
func within(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v (the page: %s)", what, err, pageState(ctx))
	}
}

// navigate is chromedp.Navigate, tried again (at most navTries times in
// all) when chromium answers net::ERR_NETWORK_CHANGED: chromium reports
// that when it sees the machine's interfaces change, as it once did under
// load, and the loopback deployment did not fail. Only the navigation is
// retried; every assertion runs once, after it.
func navigate(u string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		var err error
		for range navTries {
			if _, err = chromedp.Navigate(u)(ctx, tg); err == nil || !strings.Contains(err.Error(), "net::ERR_NETWORK_CHANGED") {
				return chromedp.Void{}, err
			}
		}
		return chromedp.Void{}, err
	}
}

// navTries bounds navigate's attempts.
const navTries = 3

// pageState describes the page a failed step left, for the failure
// message.
func pageState(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerText"))
	if err != nil {
		return loc + ": " + err.Error()
	}
	return loc + ":\n" + body
}

// pollTrue waits until a JavaScript expression holds in the page.
func pollTrue(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(80*time.Second))); err != nil {
		t.Fatalf("%s (%s): %v", what, expr, err)
	}
}

// text is an element's text, read by the page's own script.
func text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	return strings.TrimSpace(evaluate[string](t, ctx, fmt.Sprintf(`(document.querySelector(%q) || {innerText: "<no %s>"}).innerText`, sel, strings.ReplaceAll(sel, `"`, `'`))))
}

func evaluate[T any](t testing.TB, ctx context.Context, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func location(t testing.TB, ctx context.Context) string {
	t.Helper()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestConsole drives the web console in a real browser against berthd
// dev and real agents: sign-in with the printed link and its cookie, a
// node registered by an agent appearing under Pending live, approval by
// a click finishing the waiting agent, the node turning healthy on an
// open Fleet page without a reload, the node and event pages, a failed
// action showing the server's error, forged posts refused, and sign-out.
func TestConsole(t *testing.T) {
	d := startConsoleDev(t)
	shots := screenshotDir(t)
	browser := newBrowser(t)
	client := d.httpClient(t)

	// Not signed in: every page leads to sign-in.
	within(t, browser, "open the console signed out", navigate(d.base+"/ui/fleet"), chromedp.WaitVisible(chromedp.CSS("form.signin")))
	if loc := location(t, browser); loc != d.base+"/ui/signin" {
		t.Fatalf("signed out, /ui/fleet went to %s, want the sign-in page", loc)
	}
	screenshot(t, browser, shots, "signin")

	// The printed link signs the admin in, once.
	within(t, browser, "open the sign-in link", navigate(d.link), chromedp.WaitVisible(chromedp.CSS("#fleet")))
	if loc := location(t, browser); loc != d.base+"/ui/fleet" {
		t.Fatalf("the sign-in link led to %s, want the Fleet page", loc)
	}
	if who := text(t, browser, "#principal"); who != "admin:admin" {
		t.Errorf("signed in as %q, want admin:admin", who)
	}
	cookies, err := chromedp.Call(browser, network.GetCookies, network.GetCookiesParams{URLs: []string{d.base + "/ui/"}})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == "__Host-berth-session" {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("no session cookie among %+v", cookies.Cookies)
	}
	if !session.HTTPOnly || !session.Secure || session.SameSite != network.CookieSameSiteStrict || session.Path != "/" || len(session.Value) < 40 {
		t.Errorf("session cookie %+v, want HttpOnly, Secure, SameSite=Strict, path /, a long random value", session)
	}
	if js := evaluate[string](t, browser, "document.cookie"); strings.Contains(js, session.Value) {
		t.Errorf("the page's script can read the session cookie: %q", js)
	}
	resp, err := client.Get(d.link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Set-Cookie") != "" || !strings.Contains(string(body), "already used") {
		t.Errorf("the sign-in link used again: HTTP %d, Set-Cookie %q, want 403 and no session", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}

	// A node registers while the Pending page is open: it appears
	// without a reload.
	within(t, browser, "open Pending", navigate(d.base+"/ui/pending"), chromedp.WaitVisible(chromedp.CSS("#none")))
	evaluate[bool](t, browser, "window.__notReloaded = true")
	m := newMachine(t, "console-node", "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f")
	dir := t.TempDir()
	agent := runningAgent{certDir: filepath.Join(dir, "run"), rootDir: filepath.Join(dir, "root"), socket: filepath.Join(dir, "agent.sock")}
	agent.p = start(t, d.env, "berth-agent", "--identity", "seed", "--seed-file", m.seedFile, "--hardware-uuid", m.uuid,
		"--hostname", m.hostname, "--cert-dir", agent.certDir, "--root", agent.rootDir, "--socket", agent.socket,
		"--kmsg", "off", "--cmdline", os.DevNull, "--wait", "5m", "--token", createToken(t, d.deployment))
	within(t, browser, "the registered node to appear under Pending", chromedp.WaitVisible(chromedp.CSS("article.pending")))
	if !evaluate[bool](t, browser, "window.__notReloaded === true") {
		t.Error("the Pending page reloaded to show the node")
	}
	attr, err := chromedp.Run(browser, chromedp.AttributeValue(chromedp.CSS("article.pending"), "data-node"))
	if err != nil || !attr.Exists {
		t.Fatalf("pending node's ID: %v", err)
	}
	id := attr.Value
	evidence := text(t, browser, "#pending-"+id)
	for _, want := range []string{"console-node", m.uuid, "seed-file", "Bootstrap token"} {
		if !strings.Contains(evidence, want) {
			t.Errorf("Pending evidence lacks %q:\n%s", want, evidence)
		}
	}
	screenshot(t, browser, shots, "pending")
	if agent.status(t).Connection == "connected" {
		t.Fatal("the agent is connected before approval")
	}

	// A viewer signs in with an API token in a browser of its own: it
	// sees the node but no action, and a post it makes anyway, with its
	// own valid CSRF token, is refused by the services' matrix, whose
	// error it is shown.
	var vt struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	mustJSON(t, mustRun(t, d.env, "berthctl", "api-tokens", "create", "--role", "viewer", "--name", "console-viewer", "-o", "json"), &vt)
	viewer := newBrowser(t)
	within(t, viewer, "sign in with a wrong token", navigate(d.base+"/ui/signin"),
		chromedp.SendKeys(chromedp.CSS("#token"), vt.Token[:len(vt.Token)-4]+"0000"), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#error")))
	if e := text(t, viewer, "#error"); !strings.Contains(e, "API token is unknown") {
		t.Errorf("a wrong token's sign-in says %q", e)
	}
	within(t, viewer, "sign in as a viewer", chromedp.SendKeys(chromedp.CSS("#token"), vt.Token), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#fleet")))
	if who, role := text(t, viewer, "#principal"), text(t, viewer, "#role"); who != "token:"+vt.ID+"/console-viewer" || role != "viewer" {
		t.Errorf("viewer signed in as %q (%q)", who, role)
	}
	within(t, viewer, "the viewer's Pending page", navigate(d.base+"/ui/pending"), chromedp.WaitVisible(chromedp.CSS("#pending-"+id)))
	if n := evaluate[int](t, viewer, `document.querySelectorAll('main button, main form[method=post]').length`); n != 0 {
		t.Errorf("the viewer's Pending page has %d buttons or forms that act", n)
	}
	screenshot(t, viewer, shots, "pending-viewer")
	forged := evaluate[string](t, viewer, fmt.Sprintf(`fetch('/ui/nodes/%s/approve', {method: 'POST', credentials: 'same-origin',
		headers: {'X-CSRF-Token': document.getElementById('main').dataset.csrf, 'Accept': 'application/json'}})
		.then(function (r) { return r.text().then(function (b) { return r.status + ' ' + b; }); })`, id))
	if !strings.HasPrefix(forged, "403 ") || !strings.Contains(forged, "PermissionDenied") {
		t.Errorf("a viewer's approve with a valid CSRF token: %s, want 403 PermissionDenied from the services", forged)
	}
	mustRun(t, d.env, "berthctl", "api-tokens", "revoke", vt.ID)
	within(t, viewer, "the revoked token's session", navigate(d.base+"/ui/fleet"), chromedp.WaitVisible(chromedp.CSS("#error")))
	if e, loc := text(t, viewer, "#error"), location(t, viewer); !strings.Contains(e, "API token was revoked") || !strings.HasPrefix(loc, d.base+"/ui/signin") {
		t.Errorf("after revoking its token the viewer's session shows %q at %s, want the sign-in page saying the session ended", e, loc)
	}

	// A second browser, signed in with a link from berthctl ui link,
	// keeps the Fleet page open: it shows the node pending.
	var link struct {
		URL       string `json:"url"`
		ExpiresAt string `json:"expires_at"`
	}
	mustJSON(t, mustRun(t, d.env, "berthctl", "ui", "link", "-o", "json"), &link)
	if !strings.HasPrefix(link.URL, d.base+"/ui/link/") || link.ExpiresAt == "" {
		t.Fatalf("berthctl ui link printed %+v", link)
	}
	fleet := newBrowser(t)
	row := fmt.Sprintf(`#fleet tr[data-node=%q]`, id)
	within(t, fleet, "sign in with berthctl's link", navigate(link.URL), chromedp.WaitVisible(chromedp.CSS(row)))
	if st, h := text(t, fleet, row+" td.status"), text(t, fleet, row+" td.health"); st != "pending" || h != "unknown" {
		t.Fatalf("Fleet row before approval: status %q health %q", st, h)
	}
	evaluate[bool](t, fleet, "window.__notReloaded = true")

	// A forged post, without the CSRF token or from another origin, is
	// refused and approves nothing.
	for _, tc := range []struct {
		name   string
		form   url.Values
		origin string
	}{
		{"no CSRF token", url.Values{"back": {"/ui/pending"}}, ""},
		{"wrong CSRF token", url.Values{"csrf": {"forged"}}, ""},
		{"another origin", url.Values{"csrf": {evaluate[string](t, browser, "document.getElementById('main').dataset.csrf")}}, "https://evil.example"},
	} {
		req, _ := http.NewRequest("POST", d.base+"/ui/nodes/"+id+"/approve", strings.NewReader(tc.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "refused") && !strings.Contains(string(body), "CSRF") {
			t.Errorf("forged approve (%s): HTTP %d, want 403 with the reason:\n%s", tc.name, resp.StatusCode, body)
		}
	}
	if st := text(t, fleet, row+" td.status"); st != "pending" {
		t.Fatalf("after forged posts the node is %q", st)
	}

	// Approving by a click finishes the waiting agent, and the open
	// Fleet page shows the node approved and healthy without a reload.
	within(t, browser, "approve", chromedp.Click(chromedp.CSS("#pending-"+id+" button.approve")), chromedp.WaitVisible(chromedp.CSS("p.done")))
	if done := text(t, browser, "p.done"); done != "Node approved." {
		t.Errorf("after approve the page says %q", done)
	}
	waitFor(t, "the approved agent to connect", 90*time.Second, func() bool { return agent.status(t).Connection == "connected" })
	if _, err := os.Stat(filepath.Join(agent.certDir, "node.crt")); err != nil {
		t.Errorf("the approved agent wrote no certificate: %v", err)
	}
	within(t, fleet, "the node to turn healthy on Fleet", chromedp.WaitVisible(chromedp.CSS(row+" td.h-healthy")))
	if st := text(t, fleet, row+" td.status"); st != "approved" {
		t.Errorf("Fleet row status %q after approval, want approved", st)
	}
	if !evaluate[bool](t, fleet, "window.__notReloaded === true") {
		t.Error("the Fleet page reloaded to show the change")
	}
	lag := evaluate[float64](t, fleet, fmt.Sprintf(`(function(){var r=document.querySelector(%q);return Number(r.dataset.updated)-Date.parse(r.dataset.eventTime);})()`, row))
	t.Logf("MEASURE console: heartbeat state change (healthy event recorded) to the Fleet row updated in the browser: %.0f ms", lag)
	pollTrue(t, fleet, "counts to follow", `document.querySelector('[data-count="health:healthy"]').textContent === "1"`)
	screenshot(t, fleet, shots, "fleet")

	// The node page: facts, certificate history, reported status, events.
	within(t, browser, "open the node page", navigate(d.base+"/ui/nodes/"+id), chromedp.WaitVisible(chromedp.CSS("#certs")))
	if h := text(t, browser, "#node-health"); h != "healthy" {
		t.Errorf("node page health %q", h)
	}
	if n := evaluate[int](t, browser, `document.querySelectorAll('#certs tbody tr').length`); n != 1 || !strings.Contains(text(t, browser, "#certs"), "no") {
		t.Errorf("certificate history has %d rows:\n%s", n, text(t, browser, "#certs"))
	}
	evs := text(t, browser, "table.events")
	for _, want := range []string{"registered", "approved", "certificate_issued", "healthy"} {
		if !strings.Contains(evs, want) {
			t.Errorf("node events lack %s:\n%s", want, evs)
		}
	}
	within(t, browser, "set labels", chromedp.SendKeys(chromedp.CSS("#label-set"), "rack=r7, role=hv"),
		chromedp.Submit(chromedp.CSS("#label-set")), chromedp.WaitVisible(chromedp.CSS("p.done")))
	if l := text(t, browser, "#labels"); !strings.Contains(l, "rack=r7") || !strings.Contains(l, "role=hv") {
		t.Errorf("labels after setting: %q", l)
	}
	screenshot(t, browser, shots, "node")
	// RunResponse waits for the page the form's post leads to.
	if _, err := chromedp.RunResponse(browser, chromedp.Click(chromedp.CSS(`#labels button[aria-label="Remove label rack"]`))); err != nil {
		t.Fatalf("remove a label: %v", err)
	}
	if l := text(t, browser, "#labels"); strings.Contains(l, "rack=") || !strings.Contains(l, "role=hv") {
		t.Errorf("labels after removing rack: %q", l)
	}
	within(t, browser, "a bad label", chromedp.SendKeys(chromedp.CSS("#label-set"), "no-equals-sign"),
		chromedp.Submit(chromedp.CSS("#label-set")), chromedp.WaitVisible(chromedp.CSS("#error")))
	if e := text(t, browser, "#error"); !strings.Contains(e, `HTTP 400: InvalidArgument: label "no-equals-sign" is not key=value`) {
		t.Errorf("a bad label shows %q", e)
	}

	// Events: filtered by node and type, and following live.
	within(t, browser, "open Events filtered", navigate(d.base+"/ui/events?type=approved&node="+id), chromedp.WaitVisible(chromedp.CSS("table.events")))
	if n := evaluate[int](t, browser, `document.querySelectorAll('table.events tbody tr').length`); n != 1 || !strings.Contains(text(t, browser, "table.events tbody"), "approved") {
		t.Errorf("events of type approved for the node: %d rows:\n%s", n, text(t, browser, "table.events tbody"))
	}
	within(t, browser, "open Events", navigate(d.base+"/ui/events"), chromedp.WaitVisible(chromedp.CSS("table.events")))
	evaluate[bool](t, browser, "window.__notReloaded = true")
	mustRun(t, d.env, "berthctl", "nodes", "revoke", id, "--reason", "console test")
	within(t, browser, "the revocation to appear live", chromedp.WaitVisible(chromedp.CSS("table.events tbody tr.fresh td.ev-revoked")))
	if !evaluate[bool](t, browser, "window.__notReloaded === true") {
		t.Error("the Events page reloaded")
	}
	screenshot(t, browser, shots, "events")
	pollTrue(t, fleet, "the revocation on Fleet", fmt.Sprintf(`document.querySelector(%q).textContent === "revoked"`, row+" td.status"))

	// A failed action shows the server's own error.
	within(t, browser, "open Settings", navigate(d.base+"/ui/settings"), chromedp.WaitVisible(chromedp.CSS("#hb-interval")))
	screenshot(t, browser, shots, "settings")
	within(t, browser, "require bundle approval",
		chromedp.SetValue(chromedp.CSS("#bs-approval"), "required"),
		chromedp.Submit(chromedp.CSS("#bs-approval")),
		chromedp.WaitVisible(chromedp.CSS("p.done")))
	if got, set := text(t, browser, "#bundle-approval"), text(t, browser, "#bs-h + dl"); got != "required" || !strings.Contains(set, "by admin:admin") {
		t.Errorf("after setting bundle approval the page shows %q, %q", got, set)
	}
	within(t, browser, "submit a bad interval",
		chromedp.SetValue(chromedp.CSS("#hb-interval"), "100ms"),
		chromedp.Submit(chromedp.CSS("#hb-interval")),
		chromedp.WaitVisible(chromedp.CSS("#error")))
	if e := text(t, browser, "#error"); !strings.Contains(e, "HTTP 400") || !strings.Contains(e, "InvalidArgument: interval") {
		t.Errorf("a refused setting shows %q, want the server's InvalidArgument", e)
	}
	screenshot(t, browser, shots, "error")

	// Sign-out ends the session on the server, not only in the browser.
	within(t, browser, "sign out", navigate(d.base+"/ui/fleet"), chromedp.WaitVisible(chromedp.CSS(".who button")),
		chromedp.Click(chromedp.CSS(".who button")), chromedp.WaitVisible(chromedp.CSS("form.signin")))
	req, _ := http.NewRequest("GET", d.base+"/ui/fleet", nil)
	req.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/signin?ended" {
		t.Errorf("the signed-out session still works: HTTP %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
