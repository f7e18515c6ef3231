package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func apiTokensCommand() *command {
	return &command{
		name:    "api-tokens",
		summary: "Create, list and revoke API tokens",
		help: "Manage API tokens: bearer credentials of the admin API (REST and gRPC, " +
			`"Authorization: Bearer TOKEN"` + "), each with a role: viewer reads; operator also approves, " +
			"rejects, revokes and deletes nodes and manages bundles; admin also manages tokens and settings. " +
			"Managing API tokens needs the admin role.",
		subs: []*command{
			{name: "create", summary: "Create an API token", setup: setupAPITokensCreate,
				help: "Create an API token with a role. The token is shown once only; berth keeps only its hash."},
			{name: "list", summary: "List API tokens", setup: setupAPITokensList,
				help: "List API tokens with their role and last use, without their secrets. Only usable ones unless --all."},
			{name: "revoke", args: "ID", summary: "Revoke an API token", setup: setupAPITokensRevoke,
				help: "Revoke an API token: every call that presents it from now on is refused."},
		},
	}
}

// apiTokenJSON is an API token in the JSON output contract, without its
// secret. Keep the field names.
type apiTokenJSON struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Role       string `json:"role"`
	State      string `json:"state"`
	CreatedAt  string `json:"created_at"`
	CreatedBy  string `json:"created_by"`
	ExpiresAt  string `json:"expires_at"`
	LastUsedAt string `json:"last_used_at"`
	Revoked    bool   `json:"revoked"`
	RevokedAt  string `json:"revoked_at"`
}

// createdAPITokenJSON is the output of api-tokens create: the token and,
// once only, the whole secret token.
type createdAPITokenJSON struct {
	Token string `json:"token"`
	apiTokenJSON
}

func apiTokenView(t *berthv1.APIToken, now time.Time) apiTokenJSON {
	state := tokenActive
	switch {
	case t.GetRevoked():
		state = tokenRevoked
	case isSet(t.GetExpiresAt()) && !now.Before(t.GetExpiresAt().AsTime()):
		state = tokenExpired
	}
	return apiTokenJSON{
		ID: t.GetId(), Name: t.GetName(), Role: t.GetRole(), State: state,
		CreatedAt: rfc3339(t.GetCreatedAt()), CreatedBy: t.GetCreatedBy(), ExpiresAt: rfc3339(t.GetExpiresAt()),
		LastUsedAt: rfc3339(t.GetLastUsedAt()), Revoked: t.GetRevoked(), RevokedAt: rfc3339(t.GetRevokedAt()),
	}
}

// apiTokenClient is the registration service's API token service.
func (s *session) apiTokenClient() (berthv1.APITokenServiceClient, error) {
	if missing := s.set.missingConnection(); missing != "" {
		return nil, usagef(s.path, "missing connection settings: set %s", missing)
	}
	conn, err := s.dial(s.set.server, mtls.ServiceRegistration)
	if err != nil {
		return nil, err
	}
	return berthv1.NewAPITokenServiceClient(conn), nil
}

// optionalTTL is --ttl of a token that may also never expire.
type optionalTTL struct{ d time.Duration }

func (f *optionalTTL) String() string {
	if f == nil || f.d == 0 {
		return ""
	}
	return shortGoDuration(f.d)
}

func (f *optionalTTL) Type() string { return "duration" }

func (f *optionalTTL) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		return errors.New("want a Go duration of at least 1s, such as 720h or 90m")
	}
	f.d = d
	return nil
}

func setupAPITokensCreate(fs *pflag.FlagSet) action {
	role := fs.String("role", "", "what the token may do: `viewer`, operator or admin (required)")
	name := fs.String("name", "", "a `name` for the token, shown in lists and in the event log (letters, digits, . _ @ -)")
	ttl := &optionalTTL{}
	fs.Var(ttl, "ttl", "how long the token is valid, as a Go `duration` such as 720h (default: it never expires)")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		if _, ok := mtls.ParseRole(*role); !ok {
			return s.usagef("--role must be viewer, operator or admin, not %q", *role)
		}
		c, err := s.apiTokenClient()
		if err != nil {
			return err
		}
		resp, err := c.CreateAPIToken(ctx, &berthv1.CreateAPITokenRequest{Role: *role, Name: *name, TtlSeconds: int64(ttl.d / time.Second)})
		if err != nil {
			return s.callError("create API token", err)
		}
		now := s.cfg.Now()
		t := resp.GetToken()
		v := createdAPITokenJSON{Token: resp.GetSecretToken(), apiTokenJSON: apiTokenView(t, now)}
		return s.emit(v, func(w io.Writer) {
			fmt.Fprintf(w, "Token:\t%s\n", v.Token)
			fmt.Fprintf(w, "ID:\t%s\n", v.ID)
			fmt.Fprintf(w, "Name:\t%s\n", dash(v.Name))
			fmt.Fprintf(w, "Role:\t%s\n", v.Role)
			fmt.Fprintf(w, "Expires:\t%s\n", neverIfUnset(humanTime(t.GetExpiresAt(), now)))
			fmt.Fprintf(w, "\nThe token is shown only once: keep it now. Present it as \"Authorization: Bearer TOKEN\".\n")
		})
	}
}

func neverIfUnset(s string) string {
	if s == "-" {
		return "never"
	}
	return s
}

func setupAPITokensList(fs *pflag.FlagSet) action {
	all := fs.Bool("all", false, "also list expired and revoked tokens")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		c, err := s.apiTokenClient()
		if err != nil {
			return err
		}
		resp, err := c.ListAPITokens(ctx, &berthv1.ListAPITokensRequest{IncludeInactive: *all})
		if err != nil {
			return s.callError("list API tokens", err)
		}
		now := s.cfg.Now()
		views := make([]apiTokenJSON, len(resp.GetTokens()))
		for i, t := range resp.GetTokens() {
			views[i] = apiTokenView(t, now)
		}
		return s.emit(views, func(w io.Writer) {
			if len(views) == 0 {
				if *all {
					fmt.Fprintln(w, "No API tokens found.")
				} else {
					fmt.Fprintln(w, "No usable API tokens found (--all also lists expired and revoked ones).")
				}
				return
			}
			fmt.Fprintln(w, "ID\tNAME\tROLE\tSTATE\tCREATED\tEXPIRES\tLAST USED\tCREATED BY")
			for i, t := range resp.GetTokens() {
				v := views[i]
				expires := relTime(t.GetExpiresAt(), now)
				if expires == "-" {
					expires = "never"
				}
				lastUsed := relTime(t.GetLastUsedAt(), now)
				if lastUsed == "-" {
					lastUsed = "never"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, dash(v.Name), v.Role, v.State,
					relTime(t.GetCreatedAt(), now), expires, lastUsed, dash(v.CreatedBy))
			}
		})
	}
}

func setupAPITokensRevoke(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "API token ID"); err != nil {
			return err
		}
		c, err := s.apiTokenClient()
		if err != nil {
			return err
		}
		id := args[0]
		resp, err := c.RevokeAPIToken(ctx, &berthv1.RevokeAPITokenRequest{Id: id})
		if err != nil {
			return s.callError("revoke API token "+id, err)
		}
		return s.emit(apiTokenView(resp.GetToken(), s.cfg.Now()), func(w io.Writer) {
			fmt.Fprintf(w, "Revoked API token %s.\n", id)
		})
	}
}
