package registration

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// consoleSessions is the ConsoleSessionService: the web console's sessions
// and sign-in links, kept in this service's store beside the API tokens
// they may stand on, for every front door.
type consoleSessions struct {
	berthv1.UnsafeConsoleSessionServiceServer
	s *Service
}

var _ berthv1.ConsoleSessionServiceServer = consoleSessions{}

// maxConsoleTTL bounds a session's or link's lifetime.
const maxConsoleTTL = 24 * time.Hour

// Rules of the console session requests' fields.
const (
	ruleSHA256     = "must be a SHA-256 (32 bytes)"
	ruleConsoleTTL = "must be more than 0 and at most 24h"
	rulePrincipal  = "must name an admin (admin:NAME) or an API token (token:ID;role=ROLE;name=NAME)"
)

// Public messages of the console session errors.
const (
	msgNoConsoleSession = "no such console session: unknown, expired, ended, or its API token was revoked"
	msgNoSignInLink     = "no such sign-in link: unknown, expired, already used, or its API token was revoked"
	msgTokenNotLive     = "the principal's API token is unknown, revoked or expired"
)

var (
	errNoConsoleSession = errors.New(msgNoConsoleSession)
	errNoSignInLink     = errors.New(msgNoSignInLink)
	errTokenNotLive     = errors.New(msgTokenNotLive)
)

func validSHA256(field string, b []byte) error {
	if len(b) != 32 {
		return rpcerr.Invalid(field, ruleSHA256)
	}
	return nil
}

func consoleTTL(ttl *durationpb.Duration) (time.Duration, error) {
	d := ttl.AsDuration()
	if !ttl.IsValid() || d <= 0 || d > maxConsoleTTL {
		return 0, rpcerr.Invalid("ttl", ruleConsoleTTL)
	}
	return d, nil
}

func consoleToProto(c regstore.ConsoleSession) *berthv1.ConsoleSession {
	return &berthv1.ConsoleSession{Principal: c.Principal, ExpiresAt: timestamppb.New(c.ExpiresAt)}
}

// CreateConsoleSession records a session or link for the principal the
// front door names; an API token's must be live now.
func (c consoleSessions) CreateConsoleSession(ctx context.Context, req *berthv1.CreateConsoleSessionRequest) (*berthv1.CreateConsoleSessionResponse, error) {
	log := rpc.Logger(ctx, c.s.log)
	cs, err := c.s.newConsoleSession(ctx, req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	if err := c.s.store.CreateConsoleSession(ctx, cs); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.CreateConsoleSessionResponse{Session: consoleToProto(cs)}, nil
}

func (s *Service) newConsoleSession(ctx context.Context, req *berthv1.CreateConsoleSessionRequest) (regstore.ConsoleSession, error) {
	if err := validSHA256("secret_sha256", req.GetSecretSha256()); err != nil {
		return regstore.ConsoleSession{}, err
	}
	ttl, err := consoleTTL(req.GetTtl())
	if err != nil {
		return regstore.ConsoleSession{}, err
	}
	id, ok := rpc.ParseForwardedCaller(req.GetPrincipal())
	if !ok {
		return regstore.ConsoleSession{}, rpcerr.Invalid("principal", rulePrincipal)
	}
	now := s.clock.Now()
	cs := regstore.ConsoleSession{SecretSHA256: req.GetSecretSha256(), Link: req.GetLink(), Principal: req.GetPrincipal(),
		CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if id.Kind == mtls.KindToken {
		cs.TokenID = id.Name
		t, err := s.store.GetAPIToken(ctx, id.Name)
		if errors.Is(err, regstore.ErrNotFound) || err == nil && (t.Revoked() || t.Expired(now) || t.Role != id.Role.String()) {
			return regstore.ConsoleSession{}, errTokenNotLive
		}
		if err != nil {
			return regstore.ConsoleSession{}, fmt.Errorf("console session of API token %s: %w", id.Name, err)
		}
	}
	return cs, nil
}

// GetConsoleSession returns a live session.
func (c consoleSessions) GetConsoleSession(ctx context.Context, req *berthv1.GetConsoleSessionRequest) (*berthv1.GetConsoleSessionResponse, error) {
	log := rpc.Logger(ctx, c.s.log)
	if err := validSHA256("secret_sha256", req.GetSecretSha256()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	cs, err := c.s.store.ConsoleSession(ctx, req.GetSecretSha256(), c.s.clock.Now())
	if errors.Is(err, regstore.ErrNotFound) {
		err = errNoConsoleSession
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.GetConsoleSessionResponse{Session: consoleToProto(cs)}, nil
}

// UseSignInLink spends a link, once across every front door, into a
// session.
func (c consoleSessions) UseSignInLink(ctx context.Context, req *berthv1.UseSignInLinkRequest) (*berthv1.UseSignInLinkResponse, error) {
	log := rpc.Logger(ctx, c.s.log)
	ttl, err := consoleTTL(req.GetTtl())
	for _, e := range []error{validSHA256("link_sha256", req.GetLinkSha256()), validSHA256("session_sha256", req.GetSessionSha256()), err} {
		if e != nil {
			return nil, errorTable.Status(ctx, log, e)
		}
	}
	now := c.s.clock.Now()
	cs, err := c.s.store.UseConsoleLink(ctx, req.GetLinkSha256(), regstore.ConsoleSession{
		SecretSHA256: req.GetSessionSha256(), CreatedAt: now, ExpiresAt: now.Add(ttl),
	})
	if errors.Is(err, regstore.ErrNotFound) {
		err = errNoSignInLink
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.UseSignInLinkResponse{Session: consoleToProto(cs)}, nil
}

// EndConsoleSession ends a session.
func (c consoleSessions) EndConsoleSession(ctx context.Context, req *berthv1.EndConsoleSessionRequest) (*berthv1.EndConsoleSessionResponse, error) {
	log := rpc.Logger(ctx, c.s.log)
	if err := validSHA256("secret_sha256", req.GetSecretSha256()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	if err := c.s.store.EndConsoleSession(ctx, req.GetSecretSha256()); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.EndConsoleSessionResponse{}, nil
}
