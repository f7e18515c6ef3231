package daemon

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/console"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// browser is an HTTPS client of one front door's console that keeps no
// cookies and follows no redirects, so that the test sees each answer.
type browser struct{ *restClient }

func newBrowser(t *testing.T, c *restClient) browser {
	t.Helper()
	h := *c.http
	h.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return browser{&restClient{base: c.base, http: &h}}
}

// get fetches path with the session cookie (if any) and returns the
// status, the session cookie the answer sets (if any) and the page.
func (b browser) get(t *testing.T, path, cookie string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest("GET", b.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: console.CookieName, Value: cookie})
	}
	return b.send(t, req)
}

func (b browser) send(t *testing.T, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	set := ""
	for _, c := range resp.Cookies() {
		if c.Name == console.CookieName {
			set = c.Value
		}
	}
	return resp.StatusCode, set, string(page)
}

func (b browser) signin(t *testing.T, token string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", b.base+"/ui/signin", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	code, cookie, page := b.send(t, req)
	if code != http.StatusSeeOther || cookie == "" {
		t.Fatalf("sign-in: %d, cookie %q: %s", code, cookie, page)
	}
	return cookie
}

// stop ends p as a crash or an upgrade would, keeping its result for the
// test's own cleanup.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	err := <-p.done
	p.done <- err
}

// TestConsoleSessionsAcrossFrontDoors: the web console's sessions and
// sign-in links are kept by the registration service on PostgreSQL, so
// that with two front doors (berthd serve --role api) a session made on
// one works on the other, a link used on one is refused on the other (and
// of two front doors racing for one link exactly one signs in), a front
// door's restart keeps its sessions, and revoking the token ends them on
// both.
func TestConsoleSessionsAcrossFrontDoors(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	l := newPKI(t, "")
	d := startSplit(t, l, cluster.DSN())
	frontB := start(t, Config{Role: RoleAPI, PKIDir: ownDir(t, l, pki.ServiceAPI), Listen: "127.0.0.1:0",
		RegistrationAddr: d.addrs[RoleRegistration], CAAddr: d.addrs[RoleCA],
		BundlesAddr: d.addrs[RoleBundles], HeartbeatAddr: d.addrs[RoleHeartbeat]})
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	admin := newRESTClient(t, l, d.front, adminCert)
	a := newBrowser(t, newRESTClient(t, l, d.front, tls.Certificate{}))
	b := newBrowser(t, newRESTClient(t, l, frontB.addr, tls.Certificate{}))
	tokID, tok := createAPIToken(t, admin, `{"role": "operator", "name": "console-user"}`)

	// Made on A, the session works on B.
	cookie := a.signin(t, tok)
	for name, br := range map[string]browser{"A": a, "B": b} {
		code, _, page := br.get(t, "/ui/pending", cookie)
		if code != http.StatusOK || !strings.Contains(page, "token:"+tokID+"/console-user") {
			t.Fatalf("the session on front door %s: %d\n%s", name, code, page)
		}
	}

	// A link used on A is refused on B; of two front doors racing for a
	// link, one signs in.
	link := func() string {
		t.Helper()
		resp, err := berthv1.NewConsoleAdminServiceClient(d.dialFront(t, pki.ServiceRegistration, adminCert)).
			CreateSignInLink(context.Background(), &berthv1.CreateSignInLinkRequest{})
		if err != nil {
			t.Fatalf("CreateSignInLink: %v", err)
		}
		return resp.GetPath()
	}
	first := link()
	if code, c, _ := a.get(t, first, ""); code != http.StatusSeeOther || c == "" {
		t.Fatalf("a fresh link on A: %d, cookie %q", code, c)
	}
	if code, c, page := b.get(t, first, ""); code != http.StatusForbidden || c != "" || !strings.Contains(page, "already used") {
		t.Errorf("the link used on A, on B: %d, cookie %q\n%s", code, c, page)
	}
	for round := range 5 {
		raced := link()
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i, br := range []browser{a, b} {
			wg.Go(func() { codes[i], _, _ = br.get(t, raced, "") })
		}
		wg.Wait()
		won := 0
		for _, c := range codes {
			if c == http.StatusSeeOther {
				won++
			} else if c != http.StatusForbidden {
				t.Errorf("round %d: a racer got %d", round, c)
			}
		}
		if won != 1 {
			t.Errorf("round %d: %d front doors signed in with one link (%v), want exactly one", round, won, codes)
		}
	}

	// A restarted front door keeps the session.
	d.procs[RoleAPI].stop(t)
	restarted := start(t, Config{Role: RoleAPI, PKIDir: ownDir(t, l, pki.ServiceAPI), Listen: "127.0.0.1:0",
		RegistrationAddr: d.addrs[RoleRegistration], CAAddr: d.addrs[RoleCA],
		BundlesAddr: d.addrs[RoleBundles], HeartbeatAddr: d.addrs[RoleHeartbeat]})
	again := newBrowser(t, newRESTClient(t, l, restarted.addr, tls.Certificate{}))
	if code, _, page := again.get(t, "/ui/pending", cookie); code != http.StatusOK || !strings.Contains(page, "console-user") {
		t.Fatalf("the session after its front door restarted: %d\n%s", code, page)
	}

	// Revoking the token ends its session on every front door.
	code, body := newRESTClient(t, l, restarted.addr, adminCert).do(t, "POST", "/v1/api-tokens/"+tokID+":revoke", "")
	if code != http.StatusOK {
		t.Fatalf("revoke: %d %v", code, body)
	}
	for name, br := range map[string]browser{"restarted A": again, "B": b} {
		if code, _, _ := br.get(t, "/ui/pending", cookie); code != http.StatusSeeOther {
			t.Errorf("the revoked token's session on %s: %d, want a redirect to sign-in", name, code)
		}
	}
}
