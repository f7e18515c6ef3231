package console

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func admin(name string) Principal {
	return principalOf(mtls.Identity{Kind: mtls.KindAdmin, Name: name})
}

// fakeSessions is the session store in memory, by the hash of each
// secret, as the registration service keeps it.
type fakeSessions struct {
	mu   sync.Mutex
	byID map[string]*berthv1.CreateConsoleSessionRequest
}

func newFakeSessions() *fakeSessions {
	return &fakeSessions{byID: map[string]*berthv1.CreateConsoleSessionRequest{}}
}

func (f *fakeSessions) CreateConsoleSession(_ context.Context, req *berthv1.CreateConsoleSessionRequest, _ ...grpc.CallOption) (*berthv1.CreateConsoleSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byID[string(req.GetSecretSha256())] = req
	return &berthv1.CreateConsoleSessionResponse{Session: &berthv1.ConsoleSession{Principal: req.GetPrincipal(), ExpiresAt: timestamppb.Now()}}, nil
}

func (f *fakeSessions) GetConsoleSession(_ context.Context, req *berthv1.GetConsoleSessionRequest, _ ...grpc.CallOption) (*berthv1.GetConsoleSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.byID[string(req.GetSecretSha256())]
	if !ok || c.GetLink() {
		return nil, status.Error(codes.NotFound, "no such console session")
	}
	return &berthv1.GetConsoleSessionResponse{Session: &berthv1.ConsoleSession{Principal: c.GetPrincipal(), ExpiresAt: timestamppb.Now()}}, nil
}

func (f *fakeSessions) UseSignInLink(context.Context, *berthv1.UseSignInLinkRequest, ...grpc.CallOption) (*berthv1.UseSignInLinkResponse, error) {
	return nil, status.Error(codes.Unimplemented, "not in this fake")
}

func (f *fakeSessions) EndConsoleSession(_ context.Context, req *berthv1.EndConsoleSessionRequest, _ ...grpc.CallOption) (*berthv1.EndConsoleSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byID, string(req.GetSecretSha256()))
	return &berthv1.EndConsoleSessionResponse{}, nil
}

// TestSessionSecrets: a session's secret, its CSRF token and what the
// store keeps are three different values, and two sessions share none.
func TestSessionSecrets(t *testing.T) {
	f := newFakeSessions()
	s := &sessions{c: f, ttl: time.Hour, linkTTL: time.Minute}
	a, err := s.create(t.Context(), admin("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.create(t.Context(), admin("b"))
	if a.secret == b.secret || a.csrf == b.csrf || a.secret == a.csrf || len(a.secret) < 40 {
		t.Fatalf("secrets and CSRF tokens not distinct random values: %+v %+v", a, b)
	}
	for stored := range f.byID {
		if strings.Contains(stored, a.secret) || stored == a.csrf || strings.Contains(a.csrf, stored) {
			t.Error("the store holds the secret or the CSRF token")
		}
	}
	got, err := s.get(t.Context(), a.secret)
	if err != nil || got == nil || got.principal != admin("a") || got.csrf != a.csrf {
		t.Fatalf("get = %+v, %v; want admin a's session with the same CSRF token", got, err)
	}
	if err := s.end(t.Context(), a.secret); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{a.secret, "", strings.Repeat("x", 65), b.secret + "x"} {
		if got, err := s.get(t.Context(), secret); got != nil || err != nil {
			t.Errorf("get(%q) after sign-out or guessed = %+v, %v", secret, got, err)
		}
	}
}

// TestPostChecks: every state-changing request needs the session's CSRF
// token and, when the browser names one, the console's own origin.
func TestPostChecks(t *testing.T) {
	con := &Console{c: Config{Logger: slog.New(slog.DiscardHandler)}, sessions: &sessions{c: newFakeSessions(), ttl: time.Hour}}
	var err error
	if con.pages, err = parsePages(); err != nil {
		t.Fatal(err)
	}
	ss, err := con.sessions.create(t.Context(), admin("ops"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := con.sessions.create(t.Context(), admin("b"))
	// The token with its first character changed: "x" unless it is one.
	wrong := "x" + ss.csrf[1:]
	if ss.csrf[0] == 'x' {
		wrong = "y" + ss.csrf[1:]
	}
	reached := false
	h := con.session(func(w http.ResponseWriter, _ *http.Request, _ *session) { reached = true })
	for _, tc := range []struct {
		name, cookie, csrf, header, origin string
		want                               int
	}{
		{"good form", ss.secret, ss.csrf, "", "https://console.test", http.StatusOK},
		{"good header, no origin", ss.secret, "", ss.csrf, "", http.StatusOK},
		{"no CSRF", ss.secret, "", "", "https://console.test", http.StatusForbidden},
		{"wrong CSRF", ss.secret, wrong, "", "", http.StatusForbidden},
		{"another session's token", ss.secret, other.csrf, "", "", http.StatusForbidden},
		{"other origin", ss.secret, ss.csrf, "", "https://evil.test", http.StatusForbidden},
		{"origin null", ss.secret, ss.csrf, "", "null", http.StatusForbidden},
		{"plain http origin", ss.secret, ss.csrf, "", "http://console.test", http.StatusForbidden},
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
