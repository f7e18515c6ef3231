package console

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// TokenAuthenticator turns an API token into the principal it belongs to.
type TokenAuthenticator interface {
	// AuthenticateToken returns ErrBadToken for a token that is unknown,
	// expired or revoked, and other errors when it could not tell.
	AuthenticateToken(ctx context.Context, token string) (Principal, error)
}

// ErrBadToken is a token that does not sign anyone in.
var ErrBadToken = errors.New("console: token not accepted")

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
		s.render(w, r, http.StatusUnauthorized, "signin", nil, signinData{Error: msgBadToken})
		return
	}
	ctx, cancel := callContext(r)
	defer cancel()
	p, err := s.c.Tokens.AuthenticateToken(ctx, token)
	if errors.Is(err, ErrBadToken) {
		s.render(w, r, http.StatusUnauthorized, "signin", nil, signinData{Error: msgBadToken})
		return
	}
	if err != nil {
		s.c.Logger.Warn("console sign-in could not check a token", "error", err)
		s.render(w, r, http.StatusServiceUnavailable, "signin", nil, signinData{Error: "The token could not be checked now; try again shortly."})
		return
	}
	ss := s.sessions.create(p)
	s.c.Logger.Info("console sign-in", "principal", p.Name, "role", p.Role, "by", "token")
	setSessionCookie(w, ss)
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

// useLink spends a one-time sign-in link. A GET, so that the link can be
// opened from a terminal; it is refused after its first use.
func (s *Console) useLink(w http.ResponseWriter, r *http.Request) {
	p, ok := s.links.use(r.PathValue("secret"))
	if !ok {
		s.render(w, r, http.StatusForbidden, "signin", nil, signinData{NoTokens: s.c.Tokens == nil, Error: msgBadLink})
		return
	}
	ss := s.sessions.create(p)
	s.c.Logger.Info("console sign-in", "principal", p.Name, "role", p.Role, "by", "link")
	setSessionCookie(w, ss)
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

func (s *Console) signout(w http.ResponseWriter, r *http.Request, ss *session) {
	s.sessions.end(ss.id)
	clearSessionCookie(w)
	http.Redirect(w, r, "/ui/signin?out", http.StatusSeeOther)
}
