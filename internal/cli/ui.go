package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func uiCommand() *command {
	return &command{
		name:    "ui",
		summary: "Sign in to the web console",
		help:    "The web console is served at https://SERVER/ui/ by the front door (berthd dev,\nor berthd serve --role all).",
		subs: []*command{
			{name: "link", summary: "Print a one-time sign-in link to the web console", setup: setupUILink,
				help: "Ask the front door at --server (BERTH_SERVER) for a sign-in link that signs\n" +
					"the holder of the admin certificate in to the web console. The link works\n" +
					"once, within a few minutes; opening it sets the session cookie and shows\n" +
					"the console. Treat it as a password until it is used.\n\n" +
					"With -o json: url and expires_at."},
		},
	}
}

// linkJSON is the JSON output contract of berthctl ui link.
type linkJSON struct {
	URL       string `json:"url"`
	ExpiresAt string `json:"expires_at"`
}

func setupUILink(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		if missing := s.set.missingConnection(); missing != "" {
			return s.usagef("missing connection settings: set %s", missing)
		}
		// The front door presents the registration service's identity
		// in a process that serves every role.
		conn, err := s.dial(s.set.server, mtls.ServiceRegistration)
		if err != nil {
			return err
		}
		resp, err := berthv1.NewConsoleAdminServiceClient(conn).CreateSignInLink(ctx, &berthv1.CreateSignInLinkRequest{})
		if err != nil {
			return s.callError("create a sign-in link", err)
		}
		out := linkJSON{URL: "https://" + s.set.server + resp.GetPath(), ExpiresAt: rfc3339(resp.GetExpiresAt())}
		return s.emit(out, func(w io.Writer) {
			fmt.Fprintf(w, "%s\n(valid once, until %s)\n", out.URL, out.ExpiresAt)
		})
	}
}
