// Package console is berth's web console, served at /ui/ on the admin
// front door: server-rendered html/template pages embedded in the binary,
// with a little plain JavaScript for live updates (server-sent events)
// and nothing fetched from elsewhere. The basic views work without
// JavaScript.
//
// The console holds no authority of its own. It signs people in (an API
// token, or a one-time sign-in link an admin minted) to a server-side
// session, and makes every call to the admin API over gRPC as the front
// door's api service naming the signed-in principal
// (rpc.ForwardedCallerKey), exactly as the REST gateway does; the
// services' authorisation matrix decides, and a refusal is shown as the
// server's error. Which buttons a page shows follows the principal's
// role, but that is a courtesy: a forged form post meets the same matrix.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/apitoken"
	"github.com/berth-dev/berth/internal/clock"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Path is where the console is served on the front door.
const Path = "/ui/"

// Defaults of Config.
const (
	DefaultSessionTTL = 8 * time.Hour
	DefaultLinkTTL    = 5 * time.Minute
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the console needs.
type Config struct {
	// Connections to the services, made with the front door's own (api)
	// service certificate, as the REST gateway's.
	Registration, Bundles, Heartbeat *grpc.ClientConn
	// Tokens authenticates API tokens at sign-in (the front door's one
	// check under its one limit: apitoken.Limited); nil leaves sign-in
	// links only.
	Tokens apitoken.Authenticator
	// Sessions keeps sessions and sign-in links for every front door:
	// the registration service's ConsoleSessionService on Registration
	// when nil.
	Sessions berthv1.ConsoleSessionServiceClient
	// SessionTTL is how long a session lasts (DefaultSessionTTL when 0, at
	// most 24h); LinkTTL how long a sign-in link may wait to be used
	// (DefaultLinkTTL).
	SessionTTL, LinkTTL time.Duration
	Clock               clock.Clock
	Logger              *slog.Logger
}

// Console serves the web console.
type Console struct {
	c        Config
	api      api
	sessions *sessions
	pages    map[string]*template.Template
	handler  http.Handler
	counts   *countCache
}

// New builds the console.
func New(c Config) (*Console, error) {
	if c.Registration == nil || c.Bundles == nil || c.Heartbeat == nil {
		return nil, errors.New("console: a connection to every service is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Sessions == nil {
		c.Sessions = berthv1.NewConsoleSessionServiceClient(c.Registration)
	}
	c.Clock = clock.Or(c.Clock)
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.LinkTTL <= 0 {
		c.LinkTTL = DefaultLinkTTL
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Console{
		c: c,
		api: api{
			nodes:   berthv1.NewNodeAdminServiceClient(c.Registration),
			bundles: berthv1.NewBundleAdminServiceClient(c.Bundles),
			health:  berthv1.NewHeartbeatAdminServiceClient(c.Heartbeat),
		},
		sessions: &sessions{c: c.Sessions, ttl: c.SessionTTL, linkTTL: c.LinkTTL},
		pages:    pages,
		counts:   newCountCache(c.Clock),
	}
	s.handler = s.routes()
	return s, nil
}

// Handler serves everything under Path; it expects requests that came
// over TLS (the session cookie is Secure).
func (s *Console) Handler() http.Handler { return s.handler }

func (s *Console) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ui/signin", s.signinPage)
	mux.HandleFunc("POST /ui/signin", s.signin)
	mux.HandleFunc("GET /ui/link/{secret}", s.useLink)
	mux.Handle("POST /ui/signout", s.session(s.signout))

	mux.Handle("GET /ui/{$}", s.session(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/ui/fleet", http.StatusSeeOther)
	}))
	mux.Handle("GET /ui/pending", s.session(s.pendingPage))
	mux.Handle("GET /ui/fleet", s.session(s.fleetPage))
	mux.Handle("GET /ui/fleet/counts", s.session(s.fleetCounts))
	mux.Handle("GET /ui/nodes/{id}", s.session(s.nodePage))
	mux.Handle("GET /ui/events", s.session(s.eventsPage))
	mux.Handle("GET /ui/stream", s.session(s.stream))
	mux.Handle("GET /ui/settings", s.session(s.settingsPage))

	for path, act := range map[string]action{
		"/ui/nodes/{id}/approve":           s.approve,
		"/ui/nodes/{id}/reject":            s.reject,
		"/ui/nodes/{id}/revoke":            s.revoke,
		"/ui/nodes/{id}/allow-replacement": s.allowReplacement,
		"/ui/nodes/{id}/labels":            s.label,
		"/ui/nodes/{id}/bundle/approve":    s.approveBundle,
		"/ui/nodes/{id}/bundle/reset":      s.resetBundle,
		"/ui/settings/heartbeat":           s.setHeartbeat,
		"/ui/settings/bundles":             s.setBundleApproval,
	} {
		mux.Handle("POST "+path, s.session(s.act(act)))
	}
	return secureHeaders(mux)
}

// secureHeaders sets what every answer of the console carries: no
// script, style or frame from anywhere else, nothing cached, and no
// Referer to other sites (a sign-in link's secret is in its URL). The
// console's own origin still gets one, since with no-referrer browsers
// send "Origin: null" on form posts, which the origin check refuses.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// callTimeout bounds one page's calls to the services.
const callTimeout = 30 * time.Second

func callContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), callTimeout)
}
