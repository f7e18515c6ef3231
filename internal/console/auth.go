package console

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/apitoken"
)

// limited answers a source over the front door's limit on refused
// tokens (apitoken.Limited, shared with gRPC and REST): 429 with
// Retry-After, and the sign-in form again.
func (s *Console) limited(w http.ResponseWriter, r *http.Request, err error) bool {
	var le *apitoken.LimitError
	if !errors.As(err, &le) {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(le.RetryAfter.Seconds()))))
	s.render(w, r, http.StatusTooManyRequests, "signin", nil, signinData{Error: apitoken.MsgTooManyFailures + "."})
	return true
}

// maxTokenLen bounds what sign-in reads as a token.
const maxTokenLen = 512

type signinData struct {
	Error     string
	NoTokens  bool
	SignedOut bool
}

func (s *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	d := signinData{NoTokens: s.c.Tokens == nil, SignedOut: r.URL.Query().Has("out")}
	if r.URL.Query().Has("ended") {
		d.Error = msgEnded
	}
	s.render(w, r, http.StatusOK, "signin", nil, d)
}

// signin exchanges an API token for a session. A cross-site form cannot
// sign a browser in to someone else's session: its Origin is refused.
func (s *Console) signin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		s.fail(w, r, nil, http.StatusForbidden, msgOrigin)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	if s.c.Tokens == nil {
		s.render(w, r, http.StatusServiceUnavailable, "signin", nil, signinData{NoTokens: true, Error: msgNoTokens})
		return
	}
	if token == "" || len(token) > maxTokenLen {
		s.render(w, r, http.StatusUnauthorized, "signin", nil, signinData{Error: apitoken.MsgMalformed + "."})
		return
	}
	ctx, cancel := callContext(r)
	defer cancel()
	tp, err := s.c.Tokens.Authenticate(ctx, token)
	if s.limited(w, r, err) {
		return
	}
	if apitoken.Refused(err) {
		s.render(w, r, http.StatusUnauthorized, "signin", nil, signinData{Error: err.Error() + "."})
		return
	}
	if err != nil {
		s.c.Logger.Warn("console sign-in could not check a token", "error", err)
		s.render(w, r, http.StatusServiceUnavailable, "signin", nil, signinData{Error: "The token could not be checked now; try again shortly."})
		return
	}
	p := principalOf(tp.Identity())
	ss, err := s.sessions.create(ctx, p)
	if err != nil {
		s.c.Logger.Warn("console sign-in could not record a session", "error", err)
		s.render(w, r, http.StatusServiceUnavailable, "signin", nil, signinData{Error: msgNoSession})
		return
	}
	s.c.Logger.Info("console sign-in", "principal", p.Name, "role", p.Role, "by", "token")
	setSessionCookie(w, ss)
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

// msgNoSession: the session store could not record a session.
const msgNoSession = "The session could not be recorded now; try again shortly."

// useLink spends a one-time sign-in link. A GET, so that the link can be
// opened from a terminal; it is refused after its first use, on every
// front door.
func (s *Console) useLink(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := callContext(r)
	defer cancel()
	ss, err := s.sessions.use(ctx, r.PathValue("secret"))
	if err != nil {
		s.c.Logger.Warn("console could not spend a sign-in link", "error", err)
		s.render(w, r, http.StatusServiceUnavailable, "signin", nil, signinData{NoTokens: s.c.Tokens == nil, Error: msgNoSession})
		return
	}
	if ss == nil {
		s.render(w, r, http.StatusForbidden, "signin", nil, signinData{NoTokens: s.c.Tokens == nil, Error: msgBadLink})
		return
	}
	s.c.Logger.Info("console sign-in", "principal", ss.principal.Name, "role", ss.principal.Role, "by", "link")
	setSessionCookie(w, ss)
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

func (s *Console) signout(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := callContext(r)
	defer cancel()
	if err := s.sessions.end(ctx, ss.secret); err != nil {
		s.c.Logger.Warn("console sign-out could not end the session", "error", err)
		s.fail(w, r, ss, http.StatusServiceUnavailable, "Signing out failed: the session could not be ended now; try again shortly.")
		return
	}
	clearSessionCookie(w)
	http.Redirect(w, r, "/ui/signin?out", http.StatusSeeOther)
}
