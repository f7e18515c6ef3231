package console

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// LinkPrefix is the path of sign-in links; the secret follows it.
const LinkPrefix = "/ui/link/"

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
// certificate's holder, or an admin API token's principal, whose session
// ends when that token is revoked or expires. The link is kept with the
// sessions, so any front door takes it, once.
func (s *Service) CreateSignInLink(ctx context.Context, _ *berthv1.CreateSignInLinkRequest) (*berthv1.CreateSignInLinkResponse, error) {
	id, verifyErr, ok := mtls.PeerIdentity(ctx)
	if !ok || verifyErr != nil || (id.Kind != mtls.KindAdmin && id.Kind != mtls.KindToken) {
		return nil, status.Error(codes.PermissionDenied, msgNoAdmin)
	}
	secret, exp, err := s.console.sessions.mint(ctx, principalOf(id))
	if err != nil {
		s.console.c.Logger.Warn("console could not record a sign-in link", "error", err)
		return nil, status.Error(codes.Unavailable, msgLinkUnrecorded)
	}
	return &berthv1.CreateSignInLinkResponse{Path: LinkPrefix + secret, ExpiresAt: timestamppb.New(exp)}, nil
}

// msgLinkUnrecorded answers CreateSignInLink when the session store (the
// registration service) could not record the link.
const msgLinkUnrecorded = "the sign-in link could not be recorded now; retry later"
