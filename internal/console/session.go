package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
)

// CookieName is the session cookie's name. The __Host- prefix makes
// browsers refuse it unless it is Secure, for path / and without a
// Domain, so no other host or path can set or read it.
const CookieName = "__Host-berth-session"

// Principal is who a session acts for.
type Principal struct {
	// Name is shown to the person signed in and in the console's logs:
	// "admin:NAME" or "token:ID/NAME", as events name the actor.
	Name string
	Role mtls.Role
	// Forward is the value of rpc.ForwardedCallerKey with which the
	// console names the principal to the services.
	Forward string
}

// principalOf is the principal of an admin API caller: the admin
// certificate's holder (role admin) or an API token's.
func principalOf(id mtls.Identity) Principal {
	role := id.Role
	if id.Kind == mtls.KindAdmin {
		role = mtls.RoleAdmin
	}
	return Principal{Name: id.String(), Role: role, Forward: rpc.ForwardedCaller(id)}
}

// CanAct reports whether the principal's role may approve, reject, revoke
// and manage bundles; CanAdminister whether it may change settings. They
// decide which controls a page shows; the services decide what happens.
func (p Principal) CanAct() bool        { return p.Role >= mtls.RoleOperator }
func (p Principal) CanAdminister() bool { return p.Role >= mtls.RoleAdmin }

// session is one signed-in browser. Sessions live in the front door's
// memory: a restart signs everyone out, and several front doors need a
// load balancer that keeps a browser on one (the cookie names a session
// only the front door that made it knows).
type session struct {
	id        string
	principal Principal
	csrf      string
	expires   time.Time
	// token is the API token the session signed in with, kept here in
	// memory only (never in the cookie), so that every request checks it
	// again: a revoked or expired token ends its sessions at once, since
	// the services trust the front door's word for a forwarded caller.
	// Empty for an admin certificate holder's link.
	token string
}

type sessions struct {
	clock clock.Clock
	ttl   time.Duration
	mu    sync.Mutex
	byID  map[string]*session
}

func newSessions(c clock.Clock, ttl time.Duration) *sessions {
	return &sessions{clock: c, ttl: ttl, byID: map[string]*session{}}
}

// randomID returns 32 random bytes, URL-safe.
func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(p Principal, token string) *session {
	now := s.clock.Now()
	ss := &session{id: randomID(), principal: p, csrf: randomID(), expires: now.Add(s.ttl), token: token}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Expired sessions go whenever one is made, so the map stays bounded
	// by the sessions made within one lifetime.
	for id, old := range s.byID {
		if !now.Before(old.expires) {
			delete(s.byID, id)
		}
	}
	s.byID[ss.id] = ss
	return ss
}

func (s *sessions) get(id string) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	if !s.clock.Now().Before(ss.expires) {
		delete(s.byID, id)
		return nil, false
	}
	return ss, true
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

func setSessionCookie(w http.ResponseWriter, ss *session) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: ss.id, Path: "/", Expires: ss.expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

// handlerFunc is a handler of a signed-in request.
type handlerFunc func(http.ResponseWriter, *http.Request, *session)

// session lets through requests of a live session; others go to the
// sign-in page (or get 401, for the console's scripts). Every POST must
// also carry the session's CSRF token and, when the browser says where
// it comes from, come from the console's own origin.
func (s *Console) session(next handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ss *session
		if c, err := r.Cookie(CookieName); err == nil {
			ss, _ = s.sessions.get(c.Value)
		}
		if ss != nil && ss.token != "" {
			if err := s.recheck(r, ss); err != nil {
				s.fail(w, r, nil, http.StatusUnauthorized, err.Error()+". Sign in again.")
				return
			}
		}
		if ss == nil {
			if r.Method != http.MethodGet || r.Header.Get("Accept") == "text/event-stream" || r.URL.Path == "/ui/fleet/counts" {
				s.fail(w, r, nil, http.StatusUnauthorized, msgSignedOut)
				return
			}
			http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) {
				s.fail(w, r, ss, http.StatusForbidden, msgOrigin)
				return
			}
			if !validCSRF(r, ss) {
				s.fail(w, r, ss, http.StatusForbidden, msgCSRF)
				return
			}
		}
		next(w, r, ss)
	})
}

// Public messages of the console's own refusals.
const (
	msgSignedOut = "You are not signed in, or your session has ended. Sign in again."
	msgCSRF      = "This form did not come from this console page (missing or wrong CSRF token). Reload the page and try again."
	msgOrigin    = "This request came from another site and was refused."
	msgNoTokens  = "This deployment does not accept API tokens yet; ask an admin for a sign-in link (berthctl ui link)."
	msgBadLink   = "This sign-in link is not valid: it is unknown, expired or was already used. Ask for a new one (berthctl ui link)."
)

// recheck authenticates a token session's token again; a refusal ends
// the session.
func (s *Console) recheck(r *http.Request, ss *session) error {
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	_, err := s.c.Tokens.Authenticate(ctx, ss.token)
	if refused(err) {
		s.sessions.end(ss.id)
		return err
	}
	if err != nil {
		// Could not tell now: the call goes on to the services, and a
		// token that cannot be checked does not act.
		s.c.Logger.Warn("console could not check a session's API token", "principal", ss.principal.Name, "error", err)
		return errors.New("the API token could not be checked now; try again shortly")
	}
	return nil
}

func validCSRF(r *http.Request, ss *session) bool {
	got := r.PostFormValue("csrf")
	if got == "" {
		got = r.Header.Get("X-CSRF-Token")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}

// sameOrigin refuses a POST whose Origin (sent by every browser on a
// POST) names another site. Requests without Origin (curl) must still
// carry the CSRF token.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == "https://"+r.Host
}
