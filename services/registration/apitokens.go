package registration

import (
	"context"
	"errors"
	"regexp"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/apitoken"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// maxAPITokenTTL bounds a token's lifetime when it has one.
const maxAPITokenTTL = 10 * 365 * 24 * time.Hour

// apiTokenNameRE is what a token's name may be: safe in logs, events
// ("token:ID/NAME") and the forwarded-caller header.
var apiTokenNameRE = regexp.MustCompile(`^[A-Za-z0-9._@-]{0,64}$`)

// apiTokens is the APITokenService, on the registration service's store.
type apiTokens struct {
	berthv1.UnsafeAPITokenServiceServer
	s *Service
}

var _ berthv1.APITokenServiceServer = apiTokens{}

// CreateAPIToken makes a token; only the hash of its secret is kept.
func (a apiTokens) CreateAPIToken(ctx context.Context, req *berthv1.CreateAPITokenRequest) (*berthv1.CreateAPITokenResponse, error) {
	s := a.s
	log := rpc.Logger(ctx, s.log)
	t, err := s.newAPIToken(ctx, req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	id, secret, hash := apitoken.Generate()
	t.ID, t.SecretHash = id, hash
	if err := s.store.CreateAPIToken(ctx, t); err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log.Info("API token created", "api_token", t.ID, "name", t.Name, "role", t.Role, "expires_at", t.ExpiresAt, "actor", t.CreatedBy)
	return &berthv1.CreateAPITokenResponse{Token: apiTokenToProto(t), SecretToken: secret}, nil
}

func (s *Service) newAPIToken(ctx context.Context, req *berthv1.CreateAPITokenRequest) (regstore.APIToken, error) {
	role, ok := mtls.ParseRole(req.GetRole())
	if !ok {
		return regstore.APIToken{}, rpcerr.Invalid("role", ruleRole)
	}
	if !apiTokenNameRE.MatchString(req.GetName()) {
		return regstore.APIToken{}, rpcerr.Invalid("name", ruleAPITokenName)
	}
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if req.GetTtlSeconds() < 0 || ttl > maxAPITokenTTL {
		return regstore.APIToken{}, rpcerr.Invalid("ttl_seconds", ruleAPITokenTTL)
	}
	now := s.clock.Now()
	t := regstore.APIToken{Name: req.GetName(), Role: role.String(), CreatedAt: now, CreatedBy: caller(ctx).String()}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	return t, nil
}

// ListAPITokens lists tokens without their secrets, with the last use
// this process saw even before it is written.
func (a apiTokens) ListAPITokens(ctx context.Context, req *berthv1.ListAPITokensRequest) (*berthv1.ListAPITokensResponse, error) {
	s := a.s
	toks, err := s.store.ListAPITokens(ctx, req.GetIncludeInactive(), s.clock.Now())
	if err != nil {
		return nil, errorTable.Status(ctx, rpc.Logger(ctx, s.log), err)
	}
	resp := &berthv1.ListAPITokensResponse{}
	for _, t := range toks {
		if seen := s.tokens.LastUsed(t.ID); seen.After(t.LastUsedAt) {
			t.LastUsedAt = seen
		}
		resp.Tokens = append(resp.Tokens, apiTokenToProto(t))
	}
	return resp, nil
}

// RevokeAPIToken revokes a token: the next call that presents it is
// refused, on every replica, since every call reads the token.
func (a apiTokens) RevokeAPIToken(ctx context.Context, req *berthv1.RevokeAPITokenRequest) (*berthv1.RevokeAPITokenResponse, error) {
	s := a.s
	log := rpc.Logger(ctx, s.log)
	if !apitoken.IsID(req.GetId()) {
		return nil, errorTable.Status(ctx, log, rpcerr.Invalid("id", ruleAPITokenID))
	}
	t, err := s.store.RevokeAPIToken(ctx, req.GetId(), s.clock.Now(), caller(ctx).String())
	if errors.Is(err, regstore.ErrNotFound) {
		err = errAPITokenNotFound
	}
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log.Info("API token revoked", "api_token", t.ID, "name", t.Name, "actor", caller(ctx).String())
	return &berthv1.RevokeAPITokenResponse{Token: apiTokenToProto(t)}, nil
}

// AuthenticateAPIToken checks a token for the front door.
func (a apiTokens) AuthenticateAPIToken(ctx context.Context, req *berthv1.AuthenticateAPITokenRequest) (*berthv1.AuthenticateAPITokenResponse, error) {
	p, err := a.s.tokens.Authenticate(ctx, req.GetToken())
	if err != nil {
		return nil, errorTable.Status(ctx, rpc.Logger(ctx, a.s.log), err)
	}
	return &berthv1.AuthenticateAPITokenResponse{Id: p.ID, Name: p.Name, Role: p.Role.String()}, nil
}

// TokenError maps a failure to check an API token in this process (the
// store's, not a refusal) through the service's error table, for
// apitoken.BearerAuth: a database that is down is Unavailable.
func (s *Service) TokenError(ctx context.Context, err error) error {
	return errorTable.Status(ctx, rpc.Logger(ctx, s.log), err)
}

// APITokens is the check of API tokens, for the front door in this
// process (which puts it under its limit: apitoken.Limited).
func (s *Service) APITokens() *apitoken.Checker { return s.tokens }

func apiTokenToProto(t regstore.APIToken) *berthv1.APIToken {
	ts := func(t time.Time) *timestamppb.Timestamp {
		if t.IsZero() {
			return nil
		}
		return timestamppb.New(t)
	}
	return &berthv1.APIToken{
		Id: t.ID, Name: t.Name, Role: t.Role, CreatedAt: ts(t.CreatedAt), ExpiresAt: ts(t.ExpiresAt),
		LastUsedAt: ts(t.LastUsedAt), Revoked: t.Revoked(), RevokedAt: ts(t.RevokedAt), CreatedBy: t.CreatedBy,
	}
}
