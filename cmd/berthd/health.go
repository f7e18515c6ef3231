package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
)

// runHealth is a gRPC health check over mTLS, for container healthchecks:
// no extra probe binary is needed in the image.
func runHealth(ctx context.Context, args []string, env config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet("health", stderr)
	addr := fs.String("addr", "127.0.0.1:8443", "address of the service to check")
	pkiDir := fs.String("pki-dir", "", "PKI directory (its registration certificate is used as client identity)")
	as := fs.String("as", pki.ServiceRegistration, "which service certificate of the PKI to present")
	service := fs.String("service", "", `gRPC service name to check ("" = the whole server)`)
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := config.Apply(fs, env, ""); err != nil {
		return err
	}
	if *pkiDir == "" {
		return fmt.Errorf("%w: --pki-dir is required", errUsage)
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
		return fmt.Errorf("%w: --addr %q: %v", errUsage, *addr, err)
	}
	tlsCfg := mtls.ClientConfig(cert, layout.RootPool())
	tlsCfg.ServerName = host
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: *addr, TLS: tlsCfg})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
	if err != nil {
		return fmt.Errorf("health check of %s: %w", *addr, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s is %s", *addr, resp.GetStatus())
	}
	fmt.Fprintf(stdout, "%s: SERVING\n", *addr)
	return nil
}
