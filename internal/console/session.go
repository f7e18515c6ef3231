package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
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

// session is one signed-in browser. Sessions are kept by the registration
// service (ConsoleSessionService), in its database beside the API tokens
// they may stand on, by the SHA-256 of their secret: every front door
// knows every session, a restart keeps them, and revoking or expiring a
// session's API token ends it at once (its lookup checks the token), so
// no token is kept anywhere to check again.
type session struct {
	// secret is the cookie's value, known to the browser and to nothing
	// kept anywhere.
	secret    string
	principal Principal
	// csrf is derived from the secret, so that it needs no storage: a
	// page that cannot read the HttpOnly cookie cannot make it.
	csrf    string
	expires time.Time
}

// sessions reach the session store.
type sessions struct {
	c            berthv1.ConsoleSessionServiceClient
	ttl, linkTTL time.Duration
}

// randomID returns 32 random bytes, URL-safe.
func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func secretSum(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// csrfOf is a session's CSRF token: a hash of its secret under its own
// label, so that neither reveals the other or what the store keeps.
func csrfOf(secret string) string {
	sum := sha256.Sum256([]byte("berth console csrf\x00" + secret))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// sessionOf is the session a stored one is, under secret.
func sessionOf(secret string, cs *berthv1.ConsoleSession) (*session, error) {
	id, ok := rpc.ParseForwardedCaller(cs.GetPrincipal())
	if !ok {
		return nil, fmt.Errorf("console session store answered an unknown principal %q", cs.GetPrincipal())
	}
	return &session{secret: secret, principal: principalOf(id), csrf: csrfOf(secret), expires: cs.GetExpiresAt().AsTime()}, nil
}

func (s *sessions) create(ctx context.Context, p Principal) (*session, error) {
	secret := randomID()
	resp, err := s.c.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{
		SecretSha256: secretSum(secret), Principal: p.Forward, Ttl: durationpb.New(s.ttl),
	})
	if err != nil {
		return nil, err
	}
	return sessionOf(secret, resp.GetSession())
}

// get returns the live session of a cookie's secret; nil when there is
// none (unknown, expired, ended, or its token is no longer good).
func (s *sessions) get(ctx context.Context, secret string) (*session, error) {
	if secret == "" || len(secret) > 64 {
		return nil, nil
	}
	resp, err := s.c.GetConsoleSession(ctx, &berthv1.GetConsoleSessionRequest{SecretSha256: secretSum(secret)})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return sessionOf(secret, resp.GetSession())
}

func (s *sessions) end(ctx context.Context, secret string) error {
	_, err := s.c.EndConsoleSession(ctx, &berthv1.EndConsoleSessionRequest{SecretSha256: secretSum(secret)})
	return err
}

// mint records a one-time sign-in link for p and returns its secret.
func (s *sessions) mint(ctx context.Context, p Principal) (string, time.Time, error) {
	secret := randomID()
	resp, err := s.c.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{
		SecretSha256: secretSum(secret), Link: true, Principal: p.Forward, Ttl: durationpb.New(s.linkTTL),
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return secret, resp.GetSession().GetExpiresAt().AsTime(), nil
}

// use spends a link into a new session; nil when the link is no good
// (unknown, expired, used on this or another front door).
func (s *sessions) use(ctx context.Context, link string) (*session, error) {
	if link == "" || len(link) > 64 {
		return nil, nil
	}
	secret := randomID()
	resp, err := s.c.UseSignInLink(ctx, &berthv1.UseSignInLinkRequest{
		LinkSha256: secretSum(link), SessionSha256: secretSum(secret), Ttl: durationpb.New(s.ttl),
	})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return sessionOf(secret, resp.GetSession())
}

func setSessionCookie(w http.ResponseWriter, ss *session) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: ss.secret, Path: "/", Expires: ss.expires,
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
		c, cerr := r.Cookie(CookieName)
		if cerr == nil {
			ctx, cancel := callContext(r)
			var err error
			ss, err = s.sessions.get(ctx, c.Value)
			cancel()
			if err != nil {
				s.c.Logger.Warn("console could not look a session up", "error", err)
				s.fail(w, r, nil, http.StatusServiceUnavailable, msgSessionUnchecked)
				return
			}
		}
		if ss == nil {
			if r.Method != http.MethodGet || r.Header.Get("Accept") == "text/event-stream" || r.URL.Path == "/ui/fleet/counts" {
				s.fail(w, r, nil, http.StatusUnauthorized, msgSignedOut)
				return
			}
			to := "/ui/signin"
			if cerr == nil {
				// A cookie whose session is gone: say so on the sign-in page.
				clearSessionCookie(w)
				to += "?ended"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
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
	msgEnded     = "Your session has ended: it expired, was signed out, or its API token was revoked or expired. Sign in again."
	msgCSRF      = "This form did not come from this console page (missing or wrong CSRF token). Reload the page and try again."
	msgOrigin    = "This request came from another site and was refused."
	msgNoTokens  = "This deployment does not accept API tokens yet; ask an admin for a sign-in link (berthctl ui link)."
	msgBadLink   = "This sign-in link is not valid: it is unknown, expired or was already used. Ask for a new one (berthctl ui link)."
	// msgSessionUnchecked: the session store could not be reached.
	msgSessionUnchecked = "Your session could not be checked now; try again shortly."
)

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
