package console

import (
	"context"
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// LinkPrefix is the path of sign-in links; the secret follows it.
const LinkPrefix = "/ui/link/"

// links are one-time sign-in links. They live in the front door's memory
// beside the sessions they turn into: a link minted on one front door
// works there only, as the session it makes would, so keeping links in a
// database would buy nothing until sessions are shared too. Only the
// SHA-256 of each secret is kept.
type links struct {
	clock clock.Clock
	ttl   time.Duration
	mu    sync.Mutex
	byKey map[[32]byte]link
}

type link struct {
	principal Principal
	// token is the API token of an admin who asked with one, so that the
	// session checks it as a token session does.
	token   string
	expires time.Time
}

func newLinks(c clock.Clock, ttl time.Duration) *links {
	return &links{clock: c, ttl: ttl, byKey: map[[32]byte]link{}}
}

// mint returns a new link's secret and expiry.
func (l *links) mint(p Principal, token string) (string, time.Time) {
	secret := randomID()
	now := l.clock.Now()
	exp := now.Add(l.ttl)
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, old := range l.byKey {
		if !now.Before(old.expires) {
			delete(l.byKey, k)
		}
	}
	l.byKey[sha256.Sum256([]byte(secret))] = link{principal: p, token: token, expires: exp}
	return secret, exp
}

// use spends a link: it works once, before it expires.
func (l *links) use(secret string) (link, bool) {
	k := sha256.Sum256([]byte(secret))
	l.mu.Lock()
	defer l.mu.Unlock()
	lk, ok := l.byKey[k]
	if !ok {
		return link{}, false
	}
	delete(l.byKey, k)
	if !l.clock.Now().Before(lk.expires) {
		return link{}, false
	}
	return lk, true
}

// SignInLink mints a one-time sign-in link for an admin certificate's
// holder named name. It returns the link's path.
func (s *Console) SignInLink(name string) (string, time.Time) {
	secret, exp := s.links.mint(principalOf(mtls.Identity{Kind: mtls.KindAdmin, Name: name}), "")
	return LinkPrefix + secret, exp
}

// Service is the console's gRPC administration (ConsoleAdminService),
// served by the process that serves the console.
type Service struct {
	berthv1.UnsafeConsoleAdminServiceServer
	console *Console
}

var _ berthv1.ConsoleAdminServiceServer = (*Service)(nil)

// Service returns the console's gRPC service.
func (s *Console) Service() *Service { return &Service{console: s} }

// Register adds the service to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	berthv1.RegisterConsoleAdminServiceServer(r, s)
}

// msgNoAdmin answers a caller the matrix let through that is neither an
// admin certificate nor an API token; it cannot happen while the matrix
// row is admins only.
const msgNoAdmin = "sign-in links are made for admins only"

// CreateSignInLink mints a link that signs the caller in: the admin
// certificate's holder, or an admin API token's principal, whose token
// the session then checks on every request.
func (s *Service) CreateSignInLink(ctx context.Context, _ *berthv1.CreateSignInLinkRequest) (*berthv1.CreateSignInLinkResponse, error) {
	id, verifyErr, ok := mtls.PeerIdentity(ctx)
	if !ok || verifyErr != nil || (id.Kind != mtls.KindAdmin && id.Kind != mtls.KindToken) {
		return nil, status.Error(codes.PermissionDenied, msgNoAdmin)
	}
	token := ""
	if id.Kind == mtls.KindToken {
		token = bearerOf(ctx)
	}
	secret, exp := s.console.links.mint(principalOf(id), token)
	return &berthv1.CreateSignInLinkResponse{Path: LinkPrefix + secret, ExpiresAt: timestamppb.New(exp)}, nil
}

// bearerOf is the API token of a call authenticated by one.
func bearerOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return ""
}
