package main

import (
	"context"
	"flag"
	"io"
	"time"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/health"
)

// serveFlags binds the flags shared by serve and dev to a daemon.Config.
func serveFlags(fs *flag.FlagSet, c *daemon.Config, listen, metrics string) {
	fs.StringVar(&c.Listen, "listen", listen, "gRPC listen address")
	fs.StringVar(&c.MetricsListen, "metrics-listen", metrics, `Prometheus /metrics listen address ("" disables)`)
	fs.DurationVar(&c.CertLifetime, "cert-lifetime", 30*24*time.Hour, "lifetime of node certificates")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight calls may finish on shutdown")
	fs.StringVar(&c.AdvertiseRegistration, "advertise-registration", "", "registration address handed to nodes (default: this listener)")
	fs.StringVar(&c.AdvertiseBundles, "advertise-bundles", "", "bundle store address handed to nodes (default: --bundles-addr)")
	fs.StringVar(&c.AdvertiseHeartbeat, "advertise-heartbeat", "", "heartbeat address handed to nodes")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "heartbeat interval the server tells nodes")
	fs.DurationVar(&c.HeartbeatGrace, "heartbeat-grace", 40*time.Second, "silence after which a node is unreachable (more than two intervals)")
	fs.Float64Var(&c.HeartbeatMaxRate, "heartbeat-max-rate", health.DefaultMaxBeatRate, "beats per second all heartbeat replicas together should receive; above it the fleet's interval is stretched (0 disables)")
	fs.IntVar(&c.BundleMaxSize, "bundle-max-size", 1<<20, "largest sealed bundle the bundle store accepts, in bytes")
	fs.IntVar(&c.BundleHistory, "bundle-history", 10, "bundle versions kept per node")
	fs.BoolVar(&c.BundleRequireApproval, "bundle-require-approval", false, "hold bundles uploaded by nodes until an admin approves them")
}

func runServe(ctx context.Context, args []string, env config.Env, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	var c daemon.Config
	fs.StringVar(&c.Role, "role", daemon.RoleAll, "service to run: registration, ca, bundles, heartbeat or all")
	fs.StringVar(&c.PKIDir, "pki-dir", "", "directory written by berthd init (required)")
	fs.StringVar(&c.DB, "db", "", "PostgreSQL URL, e.g. postgres://berth@db:5432/berth (default: SQLite under --data-dir)")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory for SQLite databases when --db is not set")
	fs.StringVar(&c.CAAddr, "ca-addr", "", "address of the CA service (every role but ca; default in role all: this process)")
	fs.StringVar(&c.BundlesAddr, "bundles-addr", "", "address of the bundle store, so Resume can return a node's bundle inline (registration role; default in role all: this process)")
	serveFlags(fs, &c, ":8443", ":9090")
	logger := logFlags(fs)
	cfgFile := fs.String("config", "", "YAML file of settings, keyed by flag name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgFile == "" {
		*cfgFile, _ = env("BERTH_CONFIG")
	}
	if err := config.Apply(fs, env, *cfgFile); err != nil {
		return err
	}
	log, err := logger(stderr)
	if err != nil {
		return err
	}
	c.Logger = log
	return daemon.Run(ctx, c)
}
