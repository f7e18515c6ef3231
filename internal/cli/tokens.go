package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/keys"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// defaultTokenTTL is how long a new bootstrap token is valid.
const defaultTokenTTL = 24 * time.Hour

func tokensCommand() *command {
	return &command{
		name:    "tokens",
		summary: "Create, list and revoke bootstrap tokens",
		help:    "Manage bootstrap tokens, which let new nodes register (id.secret).",
		subs: []*command{
			{name: "create", summary: "Create a bootstrap token", setup: setupTokensCreate,
				help: "Create a bootstrap token. Its secret (the full id.secret) is shown once only."},
			{name: "list", summary: "List bootstrap tokens", setup: setupTokensList,
				help: "List bootstrap tokens, without their secrets. Only usable ones unless --all."},
			{name: "revoke", args: "ID", summary: "Revoke a bootstrap token", setup: setupTokensRevoke,
				help: "Revoke a bootstrap token so that no more nodes can register with it."},
		},
	}
}

// Token states, worked out from the token and the clock.
const (
	tokenActive  = "active"
	tokenExpired = "expired"
	tokenUsedUp  = "used"
	tokenRevoked = "revoked"
)

// tokenJSON is a token in the JSON output contract, without its secret.
// Keep the field names.
type tokenJSON struct {
	ID          string            `json:"id"`
	ExpiresAt   string            `json:"expires_at"`
	UsesLeft    int32             `json:"uses_left"`
	AutoApprove bool              `json:"auto_approve"`
	Labels      map[string]string `json:"labels"`
	Description string            `json:"description"`
	CreatedAt   string            `json:"created_at"`
	Revoked     bool              `json:"revoked"`
	State       string            `json:"state"`
	// MinIdentity is the weakest identity source the token auto-approves
	// ("" = any); AllowSiteSecret lets it auto-approve site-secret ones.
	MinIdentity     string `json:"min_identity"`
	AllowSiteSecret bool   `json:"allow_site_secret"`
}

// createdTokenJSON is the output of tokens create: the token and, once
// only, the full "id.secret".
type createdTokenJSON struct {
	ID    string `json:"id"`
	Token string `json:"token"`
	tokenJSON
}

func tokenView(t *berthv1.Token, now time.Time) tokenJSON {
	v := tokenJSON{
		ID:          t.GetId(),
		ExpiresAt:   rfc3339(t.GetExpiresAt()),
		UsesLeft:    t.GetUsesLeft(),
		AutoApprove: t.GetAutoApprove(),
		Labels:      t.GetLabels(),
		Description: t.GetDescription(),
		CreatedAt:   rfc3339(t.GetCreatedAt()),
		Revoked:     t.GetRevoked(),
		State:       tokenState(t, now),

		MinIdentity:     t.GetMinIdentity(),
		AllowSiteSecret: t.GetAllowSiteSecret(),
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	return v
}

// autoApproval is the AUTO-APPROVE column: yes, no, or yes with site
// secrets included.
func autoApproval(v tokenJSON) string {
	if v.AllowSiteSecret {
		return "yes, site-secret too"
	}
	return yesNo(v.AutoApprove)
}

// siteSecretPolicy says whether the token auto-approves site-secret
// identities.
func siteSecretPolicy(v tokenJSON) string {
	if v.AllowSiteSecret {
		return "auto-approved"
	}
	return "held for approval"
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func tokenState(t *berthv1.Token, now time.Time) string {
	switch {
	case t.GetRevoked():
		return tokenRevoked
	case isSet(t.GetExpiresAt()) && !now.Before(t.GetExpiresAt().AsTime()):
		return tokenExpired
	case t.GetUsesLeft() <= 0:
		return tokenUsedUp
	}
	return tokenActive
}

func setupTokensCreate(fs *pflag.FlagSet) action {
	autoApprove := fs.Bool("auto-approve", false, "approve nodes registering with this token without waiting for the engine")
	uses := fs.Int("uses", 1, "number `N` of nodes that may register with the token")
	ttl := &ttlFlag{d: defaultTokenTTL}
	fs.Var(ttl, "ttl", "how long the token is valid, as a Go `duration` such as 90m or 72h")
	labels := labelFlag{}
	fs.Var(labels, "label", "put label `k=v` on every node registering with the token (repeatable)")
	description := fs.String("description", "", "free `text` describing the token")
	minIdentity := fs.String("min-identity", "", "auto-approve only nodes whose identity `source` is at least this: tpm > seed-file > file > site-secret (default: any)")
	allowSiteSecret := fs.Bool("allow-site-secret", false, "let --auto-approve approve site-secret identities, which it never does otherwise")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		if *uses < 1 || *uses > math.MaxInt32 {
			return s.usagef("invalid --uses %d: want 1 or more", *uses)
		}
		if *minIdentity != "" {
			if _, err := keys.ParseAssurance(*minIdentity); err != nil {
				return s.usagef("invalid --min-identity %q: want tpm, seed-file, file or site-secret", *minIdentity)
			}
		}
		if *allowSiteSecret && !*autoApprove {
			return s.usagef("--allow-site-secret needs --auto-approve")
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		resp, err := c.CreateToken(ctx, &berthv1.CreateTokenRequest{
			TtlSeconds:  ttl.seconds(),
			Uses:        int32(*uses),
			AutoApprove: *autoApprove,
			Labels:      labels,
			Description: *description,

			MinIdentity:     *minIdentity,
			AllowSiteSecret: *allowSiteSecret,
		})
		if err != nil {
			return s.callError("create token", err)
		}
		now := s.cfg.Now()
		t := resp.GetToken()
		v := createdTokenJSON{ID: t.GetId(), Token: resp.GetSecretToken(), tokenJSON: tokenView(t, now)}
		return s.emit(v, func(w io.Writer) {
			fmt.Fprintf(w, "Token:\t%s\n", v.Token)
			fmt.Fprintf(w, "ID:\t%s\n", v.ID)
			fmt.Fprintf(w, "Expires:\t%s\n", humanTime(t.GetExpiresAt(), now))
			fmt.Fprintf(w, "Uses left:\t%d\n", v.UsesLeft)
			fmt.Fprintf(w, "Auto-approve:\t%s\n", yesNo(v.AutoApprove))
			fmt.Fprintf(w, "Minimum identity:\t%s\n", or(v.MinIdentity, "any"))
			fmt.Fprintf(w, "Site secrets:\t%s\n", siteSecretPolicy(v.tokenJSON))
			fmt.Fprintf(w, "Labels:\t%s\n", dash(formatLabels(v.Labels)))
			fmt.Fprintf(w, "Description:\t%s\n", dash(v.Description))
			fmt.Fprintf(w, "\nThe token is shown only once: keep it now.\n")
		})
	}
}

func setupTokensList(fs *pflag.FlagSet) action {
	all := fs.Bool("all", false, "also list expired, used-up and revoked tokens")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		resp, err := c.ListTokens(ctx, &berthv1.ListTokensRequest{IncludeInactive: *all})
		if err != nil {
			return s.callError("list tokens", err)
		}
		now := s.cfg.Now()
		views := make([]tokenJSON, len(resp.GetTokens()))
		for i, t := range resp.GetTokens() {
			views[i] = tokenView(t, now)
		}
		return s.emit(views, func(w io.Writer) {
			if len(views) == 0 {
				if *all {
					fmt.Fprintln(w, "No tokens found.")
				} else {
					fmt.Fprintln(w, "No usable tokens found (--all also lists expired, used-up and revoked ones).")
				}
				return
			}
			fmt.Fprintln(w, "ID\tSTATE\tUSES LEFT\tAUTO-APPROVE\tMIN IDENTITY\tEXPIRES\tLABELS\tDESCRIPTION")
			for i, t := range resp.GetTokens() {
				v := views[i]
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.State, v.UsesLeft, autoApproval(v), or(v.MinIdentity, "any"),
					relTime(t.GetExpiresAt(), now), dash(formatLabels(v.Labels)), dash(v.Description))
			}
		})
	}
}

func setupTokensRevoke(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "token ID"); err != nil {
			return err
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		id := args[0]
		resp, err := c.RevokeToken(ctx, &berthv1.RevokeTokenRequest{Id: id})
		if err != nil {
			return s.callError("revoke token "+id, err)
		}
		return s.emit(tokenView(resp.GetToken(), s.cfg.Now()), func(w io.Writer) {
			fmt.Fprintf(w, "Revoked token %s.\n", id)
		})
	}
}
