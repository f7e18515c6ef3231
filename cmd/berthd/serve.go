package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/services/registration"
)

// listenerOff is the --metrics-listen and --crl-listen value that turns
// the listener off, for the environment and files, where an empty value
// counts as unset.
const listenerOff = "off"

// serveFlags binds the flags shared by serve and dev to a daemon.Config.
// Call the returned function after loading the settings: it resolves
// those that need it.
func serveFlags(fs *pflag.FlagSet, c *daemon.Config, listen string) func() error {
	fs.StringVar(&c.Listen, "listen", listen, "gRPC listen address")
	// Metrics tell an outsider how busy the fleet is and which version
	// runs; they stay on this host unless the operator says otherwise.
	fs.StringVar(&c.MetricsListen, "metrics-listen", "127.0.0.1:9090", `Prometheus /metrics listen address ("" or off disables)`)
	fs.StringVar(&c.CRLListen, "crl-listen", "", `plain HTTP address serving the CA's revocation list at /crl (DER), for libvirt, nginx and other outside checkers (CA role; "" or off disables)`)
	fs.StringVar(&c.PprofListen, "pprof-listen", "", `plain HTTP address serving Go's profiles at /debug/pprof/, for benchmarks and debugging; keep it on loopback ("" or off disables)`)
	var limits limitFlags
	limits.register(fs)
	fs.DurationVar(&c.CertLifetime, "cert-lifetime", 30*24*time.Hour, "lifetime of node certificates")
	fs.IntVar(&c.TokenFailureBurst, "token-failure-burst", registration.DefaultTokenFailureBurst, "failed bootstrap-token attempts one IP address may make in a row before it is slowed to one a minute; registrations in flight from one address count until they succeed")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight calls may finish on shutdown")
	fs.StringVar(&c.AdvertiseRegistration, "advertise-registration", "", "registration address handed to nodes (default: this listener)")
	fs.StringVar(&c.AdvertiseBundles, "advertise-bundles", "", "bundle store address handed to nodes (default: --bundles-addr)")
	fs.StringVar(&c.AdvertiseHeartbeat, "advertise-heartbeat", "", "heartbeat address handed to nodes")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "heartbeat interval the server tells nodes, unless one is stored (berthctl settings set heartbeat-interval)")
	fs.DurationVar(&c.HeartbeatGrace, "heartbeat-grace", 40*time.Second, "silence after which a node is unreachable (more than two intervals), unless one is stored (berthctl settings set heartbeat-grace)")
	fs.Float64Var(&c.HeartbeatMaxConnectRate, "heartbeat-max-connect-rate", liveness.DefaultMaxConnectRate, "new heartbeat streams per second all heartbeat replicas together should see after a mass boot; while the nodes booted in the last minute would open theirs faster, the fleet's interval is stretched so that they spread out, and while a replica records boots faster than that, it defers nodes' new streams (0 disables both)")
	fs.Float64Var(&c.HeartbeatMaxRate, "heartbeat-max-rate", liveness.DefaultMaxBeatRate, "beats per second all heartbeat replicas together should receive; above it the fleet's interval is stretched (0 disables)")
	fs.IntVar(&c.BundleMaxSize, "bundle-max-size", 1<<20, "largest sealed bundle the bundle store accepts, in bytes")
	fs.IntVar(&c.BundleHistory, "bundle-history", 10, "bundle versions kept per node")
	fs.BoolVar(&c.BundleRequireApproval, "bundle-require-approval", false, "hold bundles uploaded by nodes until an admin approves them, unless a policy is stored (berthctl settings set bundle-approval)")
	fs.StringVar(&c.EKCA, "ek-ca", "", "PEM `file` of TPM manufacturer CAs: a TPM node's EK certificate is trusted when it chains to one (registration role)")
	fs.BoolVar(&c.EKCAAutoApprove, "ek-ca-auto-approve", false, "approve, without a token, TPM nodes whose EK certificate chains to --ek-ca (enrolled EKs are approved in any case)")
	return func() error {
		// off is how the environment and files, where an empty value
		// counts as unset, turn a listener off.
		if c.MetricsListen == listenerOff {
			c.MetricsListen = ""
		}
		if c.CRLListen == listenerOff {
			c.CRLListen = ""
		}
		if c.PprofListen == listenerOff {
			c.PprofListen = ""
		}
		for _, r := range []struct {
			name string
			v    float64
		}{{"--heartbeat-max-rate", c.HeartbeatMaxRate}, {"--heartbeat-max-connect-rate", c.HeartbeatMaxConnectRate}} {
			if err := liveness.CheckRate(r.v); err != nil {
				return fmt.Errorf("%s %w", r.name, err)
			}
		}
		var err error
		c.Limits, err = limits.limits()
		return err
	}
}

func serveCommand(e env) *cobra.Command {
	cmd := subcommand("serve", "Run one service, or all of them, on PostgreSQL or SQLite",
		"Run one of berth's services (--role), or all of them in one process, with the\n"+
			"PKI made by berthd init. Settings come from flags, BERTH_* variables and the YAML\n"+
			"file of --config (keys are flag names), in that order.")
	fs := cmd.Flags()
	var c daemon.Config
	fs.StringVar(&c.Role, "role", daemon.RoleAll, "service to run: registration, ca, bundles, heartbeat, api (the front door: the whole admin API, gRPC and REST, forwarded to the others) or all")
	fs.StringVar(&c.PKIDir, "pki-dir", "", "directory written by berthd init (required)")
	fs.StringVar(&c.DB, "db", "", "PostgreSQL URL, e.g. postgres://berth@db:5432/berth (default: SQLite under --data-dir)")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory for SQLite databases when --db is not set (not used by the api role, which keeps no data)")
	fs.StringVar(&c.CAAddr, "ca-addr", "", "address of the CA service (every role but ca; default in role all: this process)")
	fs.StringVar(&c.BundlesAddr, "bundles-addr", "", "address of the bundle store, so Resume can return a node's bundle inline (registration role), running nodes hear of new bundles at once (heartbeat role) and the front door forwards bundle calls (api role, required); default in role all: this process")
	fs.StringVar(&c.RegistrationAddr, "registration-addr", "", "address of the registration service, to which the front door forwards node and token calls (api role, required)")
	fs.StringVar(&c.HeartbeatAddr, "heartbeat-addr", "", "address of the heartbeat service, to which the registration service hands the boots it serves, so that a node's Resume counts as its first heartbeat (registration role; without it nodes open their heartbeat stream at once), and the front door forwards health calls (api role, required); default in role all: this process")
	resolve := serveFlags(fs, &c, ":8443")
	logger := logFlags(fs)
	fs.String("config", "", "YAML file of settings, keyed by flag name")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := e.load(cmd, "config"); err != nil {
			return err
		}
		if err := resolve(); err != nil {
			return cmdline.Usagef(cmd, "%v", err)
		}
		log, err := logger(cmd, e.stderr)
		if err != nil {
			return err
		}
		c.Logger = log
		setGCPercent(c.Role, e.lookup)
		return daemon.Run(cmd.Context(), c)
	}
	return cmd
}
