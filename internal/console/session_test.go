package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
)

func admin(name string) Principal {
	return principalOf(mtls.Identity{Kind: mtls.KindAdmin, Name: name})
}

// TestLinksOnceAndExpire: a sign-in link works once, before it expires,
// and a guessed or altered secret never.
func TestLinksOnceAndExpire(t *testing.T) {
	c := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	l := newLinks(c, 5*time.Minute)
	secret, exp := l.mint(admin("ops"), "")
	if !exp.Equal(c.Now().Add(5 * time.Minute)) {
		t.Errorf("expires %v", exp)
	}
	for _, bad := range []string{"", "x", secret[:len(secret)-1], secret + "x", strings.ToUpper(secret)} {
		if _, ok := l.use(bad); ok {
			t.Errorf("secret %q signed in", bad)
		}
	}
	lk, ok := l.use(secret)
	if p := lk.principal; !ok || p.Role != mtls.RoleAdmin || p.Forward != "admin:ops" || p.Name != "admin:ops" || lk.token != "" {
		t.Fatalf("use = %+v, %v", lk, ok)
	}
	if _, ok := l.use(secret); ok {
		t.Error("a link worked twice")
	}
	late, _ := l.mint(admin("ops"), "")
	c.Advance(5 * time.Minute)
	if _, ok := l.use(late); ok {
		t.Error("an expired link worked")
	}
	if len(l.byKey) != 0 {
		t.Errorf("%d links kept after use and expiry", len(l.byKey))
	}
}

// TestSessionsExpire: a session ends at its expiry or at sign-out, and
// expired sessions are dropped when others are made.
func TestSessionsExpire(t *testing.T) {
	c := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s := newSessions(c, time.Hour)
	a := s.create(admin("a"), "")
	b := s.create(admin("b"), "")
	if a.id == b.id || a.csrf == b.csrf || a.id == a.csrf || len(a.id) < 40 {
		t.Fatalf("IDs and CSRF tokens not distinct random values: %+v %+v", a, b)
	}
	s.end(b.id)
	if _, ok := s.get(b.id); ok {
		t.Error("a signed-out session still works")
	}
	c.Advance(59 * time.Minute)
	if _, ok := s.get(a.id); !ok {
		t.Error("a session ended early")
	}
	c.Advance(time.Minute)
	if _, ok := s.get(a.id); ok {
		t.Error("an expired session works")
	}
	s.create(Principal{}, "")
	if len(s.byID) != 1 {
		t.Errorf("%d sessions kept, want the new one only", len(s.byID))
	}
}

// TestPostChecks: every state-changing request needs the session's CSRF
// token and, when the browser names one, the console's own origin.
func TestPostChecks(t *testing.T) {
	c := clock.NewFake(time.Now())
	con := &Console{c: Config{Clock: c}, sessions: newSessions(c, time.Hour)}
	var err error
	if con.pages, err = parsePages(); err != nil {
		t.Fatal(err)
	}
	ss := con.sessions.create(admin("ops"), "")
	reached := false
	h := con.session(func(w http.ResponseWriter, _ *http.Request, _ *session) { reached = true })
	for _, tc := range []struct {
		name, cookie, csrf, header, origin string
		want                               int
	}{
		{"good form", ss.id, ss.csrf, "", "https://console.test", http.StatusOK},
		{"good header, no origin", ss.id, "", ss.csrf, "", http.StatusOK},
		{"no CSRF", ss.id, "", "", "https://console.test", http.StatusForbidden},
		{"wrong CSRF", ss.id, "x" + ss.csrf[1:], "", "", http.StatusForbidden},
		{"another session's token", ss.id, con.sessions.create(admin("b"), "").csrf, "", "", http.StatusForbidden},
		{"other origin", ss.id, ss.csrf, "", "https://evil.test", http.StatusForbidden},
		{"origin null", ss.id, ss.csrf, "", "null", http.StatusForbidden},
		{"plain http origin", ss.id, ss.csrf, "", "http://console.test", http.StatusForbidden},
		{"no session", "", ss.csrf, "", "", http.StatusUnauthorized},
		{"unknown session", "nope", ss.csrf, "", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached = false
			form := url.Values{}
			if tc.csrf != "" {
				form.Set("csrf", tc.csrf)
			}
			r := httptest.NewRequest("POST", "https://console.test/ui/nodes/n1/approve", strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.cookie != "" {
				r.AddCookie(&http.Cookie{Name: CookieName, Value: tc.cookie})
			}
			if tc.header != "" {
				r.Header.Set("X-CSRF-Token", tc.header)
			}
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want || reached != (tc.want == http.StatusOK) {
				t.Errorf("HTTP %d, handler reached %v; want %d", w.Code, reached, tc.want)
			}
		})
	}
}
