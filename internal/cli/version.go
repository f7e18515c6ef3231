package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/buildinfo"
	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// versionJSON is a build in the JSON output of berthctl version.
type versionJSON struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"build_date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	// Address is the server's, for the server's build.
	Address string `json:"address,omitempty"`
}

// versionsJSON is the output of berthctl version -o json. Server is
// missing with --client.
type versionsJSON struct {
	Client versionJSON  `json:"client"`
	Server *versionJSON `json:"server,omitempty"`
}

// versionCommand is berthctl version: berthctl's build and, unless
// --client, the registration server's (berth.v1.VersionService).
func (c Config) versionCommand(g *globals) *cobra.Command {
	cc := &cobra.Command{
		Use:   "version",
		Short: "Show the version of berthctl and of the server",
		Long: "Show berthctl's version and that of the server at --server: module version,\n" +
			"commit, build date and Go version. --version shows berthctl's alone.",
		Args: cobra.ArbitraryArgs,
	}
	clientOnly := cc.Flags().Bool("client", false, "show berthctl's version only, without calling the server")
	config.NoEnv(cc.Flags())
	cc.RunE = func(cc *cobra.Command, args []string) error {
		return c.runLeaf(cc.Context(), cc, false, g, func(ctx context.Context, s *session) error {
			if err := s.exactArgs(args); err != nil {
				return err
			}
			return s.printVersions(ctx, *clientOnly)
		})
	}
	return cc
}

func (s *session) printVersions(ctx context.Context, clientOnly bool) error {
	info := buildinfo.Get()
	out := versionsJSON{Client: versionJSON{Version: info.Version, Commit: info.Commit, BuildDate: info.Date,
		GoVersion: info.GoVersion, Platform: info.Platform}}
	if !clientOnly {
		v, err := s.serverVersion(ctx)
		if err != nil {
			if _, usage := cmdline.AsUsage(err); !usage && !s.structured() {
				// The client's own version is known; show it before failing.
				fmt.Fprintf(s.cfg.Stdout, "berthctl %s\n", info)
			}
			return err
		}
		out.Server = v
	}
	return s.emit(out, func(w io.Writer) {
		fmt.Fprintf(w, "berthctl %s\n", info)
		if v := out.Server; v != nil {
			fmt.Fprintf(w, "server   %s (commit %s, built %s, %s %s) at %s\n", v.Version, v.Commit, v.BuildDate, v.GoVersion, v.Platform, v.Address)
		}
	})
}

// serverVersion asks the registration server for its build.
func (s *session) serverVersion(ctx context.Context) (*versionJSON, error) {
	if missing := s.set.missingConnection(); missing != "" {
		return nil, usagef(s.path, "missing connection settings: set %s", missing)
	}
	conn, err := s.dial(s.set.server, mtls.ServiceRegistration)
	if err != nil {
		return nil, err
	}
	resp, err := berthv1.NewVersionServiceClient(conn).GetVersion(ctx, &berthv1.GetVersionRequest{})
	if err != nil {
		return nil, s.callError("server version", err)
	}
	return &versionJSON{Version: resp.GetVersion(), Commit: resp.GetCommit(), BuildDate: resp.GetBuildDate(),
		GoVersion: resp.GetGoVersion(), Platform: resp.GetPlatform(), Address: s.set.server}, nil
}
