package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
)

// healthCommand is a gRPC health check over mTLS, for container
// healthchecks: no extra probe binary is needed in the image.
func healthCommand(e env) *cobra.Command {
	cmd := subcommand("health", "Check a service's gRPC health over mutual TLS",
		"Check the gRPC health of the service at --addr over mutual TLS, presenting a\n"+
			"service certificate of the PKI, for container healthchecks. Exit status 0 when\n"+
			"it is SERVING.")
	fs := cmd.Flags()
	addr := fs.String("addr", "127.0.0.1:8443", "address of the service to check")
	pkiDir := fs.String("pki-dir", "", "PKI directory (its registration certificate is used as client identity)")
	as := fs.String("as", pki.ServiceRegistration, "which service certificate of the PKI to present")
	service := fs.String("service", "", `gRPC service name to check ("" = the whole server)`)
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := e.load(cmd, ""); err != nil {
			return err
		}
		if *pkiDir == "" {
			return cmdline.Usagef(cmd, "--pki-dir is required")
		}
		layout, err := pki.Load(*pkiDir)
		if err != nil {
			return err
		}
		cert, err := layout.ServiceCertificate(*as)
		if err != nil {
			return err
		}
		host, _, err := net.SplitHostPort(*addr)
		if err != nil {
			return cmdline.Usagef(cmd, "--addr %q: %v", *addr, err)
		}
		tlsCfg := mtls.ClientConfig(cert, layout.RootPool())
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
