package main

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
)

// expectAny is the --expect value that accepts any berth service.
const expectAny = "any"

// healthCommand is a gRPC health check over mTLS, for container
// healthchecks: no extra probe binary is needed in the image.
func healthCommand(e env) *cobra.Command {
	cmd := subcommand("health", "Check a service's gRPC health over mutual TLS",
		"Check the gRPC health of the service at --addr over mutual TLS, presenting a\n"+
			"certificate of the PKI, for container healthchecks. --pki-dir is a role's own\n"+
			"directory (its certificate is presented, and the server must be that service)\n"+
			"or the whole PKI directory (the registration certificate is presented, and any\n"+
			"berth service will do). Exit status 0 when it is SERVING.")
	fs := cmd.Flags()
	addr := fs.String("addr", "127.0.0.1:8443", "address of the service to check")
	pkiDir := fs.String("pki-dir", "", "PKI directory, or a role's own directory in it")
	as := fs.String("as", "", "which role's certificate to present (default: the role of --pki-dir, or registration)")
	expect := fs.String("expect", "", `which service the server must be, or "any" (default: the role of --pki-dir, or any)`)
	service := fs.String("service", "", `gRPC service name to check ("" = the whole server)`)
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := e.load(cmd, ""); err != nil {
			return err
		}
		if *pkiDir == "" {
			return cmdline.Usagef(cmd, "--pki-dir is required")
		}
		host, _, err := net.SplitHostPort(*addr)
		if err != nil {
			return cmdline.Usagef(cmd, "--addr %q: %v", *addr, err)
		}
		if *expect != "" && *expect != expectAny && !slices.Contains(pki.ServiceNames(), *expect) {
			return cmdline.Usagef(cmd, "--expect must be one of %s or %s", strings.Join(pki.ServiceNames(), ", "), expectAny)
		}
		own, err := pki.DirRole(*pkiDir)
		if err != nil {
			return err
		}
		role, want := *as, *expect
		if role == "" {
			role = cmp.Or(own, pki.ServiceRegistration)
		}
		if want == "" {
			want = cmp.Or(own, expectAny)
		}
		if own == pki.RoleAdmin && *expect == "" {
			want = expectAny
		}
		self, err := pki.OpenRole(*pkiDir, role)
		if err != nil {
			return err
		}
		services := []string{want}
		if want == expectAny {
			services = pki.ServiceNames()
		}
		tlsCfg := mtls.ExpectServer(mtls.ClientConfig(self.Cert, self.RootPool()), self.TrustDomain, services...)
		tlsCfg.ServerName = host
		conn, err := rpc.Dial(rpc.ClientConfig{Addr: *addr, TLS: tlsCfg})
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), *timeout)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
		if err != nil {
			return fmt.Errorf("health check of %s: %w", *addr, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			// NOT_SERVING: a dependency the service cannot work without
			// (its database, the CA, the revocation list) is down; the
			// service logs which.
			return fmt.Errorf("%s is %s: a dependency it needs is unavailable (its log says which)", *addr, resp.GetStatus())
		}
		fmt.Fprintf(e.stdout, "%s: SERVING\n", *addr)
		return nil
	}
	return cmd
}
