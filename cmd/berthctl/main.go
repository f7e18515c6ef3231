// Command berthctl is the management engine's admin CLI for berth: it lists,
// approves, rejects, revokes and deletes nodes and manages bootstrap tokens
// through the registration service's NodeAdminService, and seals, puts,
// approves and resets nodes' configuration bundles through the bundles
// service's BundleAdminService, shows node health from the heartbeat
// service and follows the services' events (berthctl watch), over mutual
// TLS. An interrupt (SIGINT, SIGTERM) ends a watch with status 0.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/berth-dev/berth/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, args, os.Getenv, stdout, stderr)
}
