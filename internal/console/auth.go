package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/berth-dev/berth/internal/apitoken"
)

// refused reports whether err is a token refusal, whose message is
// public (apitoken's constants), rather than a failure to check.
func refused(err error) bool {
	return errors.Is(err, apitoken.ErrMalformed) || errors.Is(err, apitoken.ErrUnknown) ||
		errors.Is(err, apitoken.ErrRevoked) || errors.Is(err, apitoken.ErrExpired)
}

// maxTokenLen bounds what sign-in reads as a token.
const maxTokenLen = 512

type signinData struct {
	Error     string
	NoTokens  bool
	SignedOut bool
}

func (s *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "signin", nil, signinData{NoTokens: s.c.Tokens == nil, SignedOut: r.URL.Query().Has("out")})
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
	if refused(err) {
		s.render(w, r, http.StatusUnauthorized, "signin", nil, signinData{Error: err.Error() + "."})
		return
	}
	if err != nil {
		s.c.Logger.Warn("console sign-in could not check a token", "error", err)
		s.render(w, r, http.StatusServiceUnavailable, "signin", nil, signinData{Error: "The token could not be checked now; try again shortly."})
		return
	}
	p := principalOf(tp.Identity())
	ss := s.sessions.create(p, token)
	s.c.Logger.Info("console sign-in", "principal", p.Name, "role", p.Role, "by", "token")
	setSessionCookie(w, ss)
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

// useLink spends a one-time sign-in link. A GET, so that the link can be
// opened from a terminal; it is refused after its first use.
func (s *Console) useLink(w http.ResponseWriter, r *http.Request) {
	lk, ok := s.links.use(r.PathValue("secret"))
	p := lk.principal
	if !ok {
		s.render(w, r, http.StatusForbidden, "signin", nil, signinData{NoTokens: s.c.Tokens == nil, Error: msgBadLink})
		return
	}
	ss := s.sessions.create(p, lk.token)
	s.c.Logger.Info("console sign-in", "principal", p.Name, "role", p.Role, "by", "link")
	setSessionCookie(w, ss)
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

func (s *Console) signout(w http.ResponseWriter, r *http.Request, ss *session) {
	s.sessions.end(ss.id)
	clearSessionCookie(w)
	http.Redirect(w, r, "/ui/signin?out", http.StatusSeeOther)
}
