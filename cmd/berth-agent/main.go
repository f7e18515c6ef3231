// Command berth-agent gives a stateless machine its persistent berth
// identity on every boot. See berth-agent -h.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/sdnotify"
	"github.com/berth-dev/berth/internal/tpm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const long = `berth-agent gives this machine its persistent berth identity. On every boot
it derives (or loads) the node's identity and bundle keys, finds the
registration service, proves its key over a TLS session pinned to berth's
root CA, resumes the node (or registers it, the first time), waits for
approval, and writes node.crt, node.key and ca.crt to --cert-dir. It then
fetches the node's encrypted configuration bundle, opens it with the
node's bundle key and writes its files under --root. A node without a
bundle runs --configure, if given: the command writes the node's files
into the staging directory given as $1 (also BERTH_STAGING_DIR, with
BERTH_NODE_ID and BERTH_HOSTNAME), and the agent seals them to its own
bundle key, uploads them as the node's first bundle and applies them.
Without --once it then stays up, renews the certificate at two thirds of
its lifetime and reports heartbeats to the heartbeat service the
registration service names, at the interval that service sets,
reconnecting with backoff when the stream breaks; it applies the new
bundle versions the heartbeat service announces (then runs their hooks),
serves the local API on --socket for "berth-agent report" and "status",
and turns hardware errors of the kernel log (--kmsg) into node events.
With --once it sends
heartbeats only until the first is acknowledged. Heartbeats carry the boot
ID (--boot-id, default /proc/sys/kernel/random/boot_id; a new one is a
reboot to the server), the uptime and --status.

Every flag can also come from the environment as BERTH_<FLAG> (--ca-hash
from BERTH_CA_HASH, --seed-file from BERTH_SEED_FILE), but for --output,
which is BERTH_AGENT_OUTPUT (BERTH_OUTPUT is berthctl's); the command line
wins and an empty variable counts as unset. The server, CA hash, token
and DNS domain are also read from the kernel command line (berth.server=,
berth.ca_hash=, berth.token=, berth.domain=); with no server anywhere, DNS
SRV _berth._tcp.<domain> is looked up. The CA hash is never taken from
DNS.`

const tail = `Exit status: 0 success (also with no bundle, an upload held for approval,
or no heartbeat endpoint known); 1 failure (among others: bundle store or,
with --once, heartbeat service unreachable after --wait, a bundle that
does not open or would write outside --root, --configure failing); 2 bad
flags or configuration; 3 still pending approval after --wait; 4 rejected
or revoked (also when the heartbeat service refuses a revoked node).

Example:
  berth-agent --server berth.example.net:7443 --ca-hash sha256:<64 hex> \
      --token <id.secret> --seed-file /media/berth/node.seed --once -o json`

// Variables of --output. BERTH_OUTPUT is berthctl's table|json; the agent
// read it too until both had their own names, and still does when
// BERTH_AGENT_OUTPUT is unset and it holds text or json, which can only
// have been meant for the agent or mean the same to both.
const (
	outputEnv       = "BERTH_AGENT_OUTPUT"
	legacyOutputEnv = "BERTH_OUTPUT"
)

type options struct {
	server, caHash, token, domain              string
	identity, seedFile, siteSecretFile, keyDir string
	tpmDevice                                  string
	hardwareUUID, hostname, serial, macs       string
	root, certDir, output, cmdline, bundleKEM  string
	logLevel, resolvConf, configure            string
	bootID, status, onRenew                    string
	socket, socketGroup, kmsg, offline         string
	eventQueue                                 int
	wait                                       time.Duration
	once, noHeartbeat                          bool
	// legacyOutput says --output came from BERTH_OUTPUT.
	legacyOutput bool
	// socketSet says --socket was given, by flag or environment.
	socketSet bool
}

func addFlags(fs *pflag.FlagSet, o *options) {
	fs.StringVar(&o.server, "server", "", "registration service `host:port` (kernel: berth.server=)")
	fs.StringVar(&o.caHash, "ca-hash", "", "pin of berth's root CA: `sha256:HEX`, the SHA-256 of its public key (kernel: berth.ca_hash=)")
	fs.StringVar(&o.token, "token", "", "bootstrap `token` id.secret, needed on first boot only (kernel: berth.token=)")
	fs.StringVar(&o.domain, "domain", "", "`domain` for DNS SRV _berth._tcp lookup (kernel: berth.domain=; default: resolv.conf search domain)")
	fs.StringVar(&o.identity, "identity", string(keys.KindSeed), "where the node keys come from: `seed`, tpm (held in the TPM, nothing on disk) or file")
	fs.StringVar(&o.seedFile, "seed-file", "", "per-node seed `file` of at least 32 bytes (--identity seed)")
	fs.StringVar(&o.siteSecretFile, "site-secret-file", "", "site secret `file` of at least 32 bytes, combined with the hardware UUID (--identity seed)")
	fs.StringVar(&o.keyDir, "key-dir", keys.DefaultKeyDir, "`dir` holding the keys of --identity file")
	fs.StringVar(&o.tpmDevice, "tpm-device", tpm.DefaultDevice, "the TPM of --identity tpm: a device `path` or mssim://HOST:PORT (a software TPM)")
	fs.StringVar(&o.bundleKEM, "bundle-kem", keys.KEMMLKEM768X25519, "HPKE KEM of the bundle key, by `name`: mlkem768x25519 or dhkem-p256")
	fs.StringVar(&o.hardwareUUID, "hardware-uuid", "", "machine `uuid`, instead of "+agent.DefaultHardwareUUIDFile)
	fs.StringVar(&o.hostname, "hostname", "", "host `name` to register, instead of the system's")
	fs.StringVar(&o.serial, "serial", "", "machine `serial`, instead of "+agent.DefaultSerialFile)
	fs.StringVar(&o.macs, "macs", "", "comma-separated MAC `addresses`, instead of the network interfaces'")
	fs.StringVar(&o.root, "root", agent.DefaultRoot, "`dir` that bundle files are applied under; nothing is written outside it")
	fs.StringVar(&o.configure, "configure", "", "shell `command` that writes the node's first bundle into the staging dir $1 when it has none")
	fs.StringVar(&o.certDir, "cert-dir", agent.DefaultCertDir, "`dir` to write node.crt, node.key and ca.crt to")
	fs.DurationVar(&o.wait, "wait", agent.DefaultWait, "how long to wait for an unreachable server, for approval, for the bundle store, for --configure and, with --once, for the heartbeat service; 0 tries once")
	fs.BoolVar(&o.once, "once", false, "exit after writing the credentials, applying the bundle and a first acknowledged heartbeat instead of staying up")
	fs.BoolVar(&o.noHeartbeat, "no-heartbeat", false, "send no heartbeats (for boot-only tools)")
	fs.StringVar(&o.bootID, "boot-id", "", "boot `id` to report with heartbeats, instead of "+agent.DefaultBootIDFile)
	fs.StringVar(&o.onRenew, "on-renew", "", "shell `command` run after a renewed certificate was written to --cert-dir (BERTH_CERT_DIR and BERTH_NODE_ID set), e.g. to reload the services that read it")
	fs.StringVar(&o.offline, "offline", agent.OfflineWait, "while the registration server cannot be reached: `wait` (retry until --wait, saying so) or continue (boot on; a running agent keeps trying in the background, --once exits 0 with action offline)")
	fs.StringVar(&o.socket, "socket", agent.DefaultSocket, "unix `socket` of the local API for the host's daemons (default agent.sock in --cert-dir); \"off\" serves none")
	fs.StringVar(&o.socketGroup, "socket-group", "", "`group` allowed to use the local API socket (mode 0660); default the agent's own")
	fs.StringVar(&o.kmsg, "kmsg", agent.DefaultKmsg, "kernel log `file` whose machine check, EDAC and hardware error lines become node events; \"off\" reads none")
	fs.IntVar(&o.eventQueue, "event-queue", agent.DefaultEventQueue, "most node `events` kept while the heartbeat service is unreachable; the oldest are dropped beyond it")
	fs.StringVar(&o.status, "status", agent.StatusUp, "node `status` to report with heartbeats: up, degraded or maintenance")
	fs.StringVarP(&o.output, "output", "o", string(agent.OutputText), "output `format`: text or json")
	config.SetEnv(fs, "output", outputEnv)
	fs.StringVar(&o.cmdline, "cmdline", agent.DefaultCmdlineFile, "kernel command line `file`")
	fs.StringVar(&o.resolvConf, "resolv-conf", agent.DefaultResolvConf, "resolver configuration `file` giving the search domain for DNS SRV")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
}

// load reads the settings not given as flags from the environment, and
// the legacy BERTH_OUTPUT as described at legacyOutputEnv.
func (o *options) load(fs *pflag.FlagSet, env config.Env) error {
	src, err := config.Load(fs, env, "")
	if err != nil {
		return err
	}
	_, o.socketSet = src["socket"]
	if _, set := src["output"]; !set {
		if v, ok := env(legacyOutputEnv); ok {
			if out, err := agent.ParseOutput(v); err == nil && v != "" {
				o.output, o.legacyOutput = string(out), true
			}
		}
	}
	return nil
}

func newRoot(o *options, env config.Env, stdout io.Writer) *cobra.Command {
	root := cmdline.NewRoot("berth-agent", long, true)
	root.Example = tail
	root.Args = cmdline.NoArgs
	addFlags(root.Flags(), o)
	cmdline.Add(root, localCommands(env, stdout)...)
	return root
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	root := newRoot(&o, os.LookupEnv, stdout)
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		return o.run(cmd.Context(), cmd.Flags(), os.LookupEnv, stdout, stderr)
	}
	_, err := cmdline.Execute(ctx, root, args, stdout, stderr)
	code := agent.ExitCode(err)
	if ue, ok := cmdline.AsUsage(err); ok {
		code, err = agent.ExitUsage, fmt.Errorf("%s (see %s -h)", ue.Msg, ue.Path)
	}
	if err != nil {
		// One line, whatever the server put in its message.
		fmt.Fprintf(stderr, "berth-agent: %s\n", cmdline.OneLine(err.Error()))
	}
	return code
}

// run is the agent itself: settings, keys, then boot (and stay up unless
// --once). Bad settings are agent.ErrConfig errors (exit status 2).
func (o *options) run(ctx context.Context, fs *pflag.FlagSet, env config.Env, stdout, stderr io.Writer) error {
	if err := o.load(fs, env); err != nil {
		return agent.ConfigError(err)
	}
	if !o.socketSet && o.certDir != agent.DefaultCertDir {
		// Each agent's socket next to its own credentials.
		o.socket = filepath.Join(o.certDir, "agent.sock")
	}
	cfg, kcfg, err := o.config(stderr)
	if err != nil {
		return agent.ConfigError(err)
	}
	if o.legacyOutput {
		cfg.Logger.Warn("berth-agent reads its output format from " + legacyOutputEnv + ", which is berthctl's; set " + outputEnv + " instead")
	}
	src, err := keys.Open(ctx, kcfg)
	if err != nil {
		return agent.ConfigError(err)
	}
	defer src.Close()
	cfg.Keys = src
	cfg.Stdout = stdout
	getenv := func(k string) string { v, _ := env(k); return v }
	if cfg.Notifier, err = sdnotify.FromEnv(getenv, os.Getpid()); err != nil {
		return agent.ConfigError(err)
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// config checks the options and turns them into the agent's and the key
// source's configuration.
func (o *options) config(stderr io.Writer) (agent.Config, keys.Config, error) {
	kind, err := keys.ParseKind(o.identity)
	if err != nil {
		return agent.Config{}, keys.Config{}, fmt.Errorf("--identity: %v", err)
	}
	kem, err := keys.ParseKEM(o.bundleKEM)
	if err != nil {
		return agent.Config{}, keys.Config{}, fmt.Errorf("--bundle-kem: %v", err)
	}
	out, err := agent.ParseOutput(o.output)
	if err != nil {
		return agent.Config{}, keys.Config{}, fmt.Errorf("--output: %v", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return agent.Config{}, keys.Config{}, fmt.Errorf("--log-level: unknown level %q (want debug, info, warn or error)", o.logLevel)
	}
	if o.wait < 0 {
		return agent.Config{}, keys.Config{}, fmt.Errorf("--wait must not be negative")
	}
	if o.eventQueue < 1 {
		return agent.Config{}, keys.Config{}, fmt.Errorf("--event-queue must be at least 1")
	}
	if _, err := agent.ParseHeartbeatStatus(o.status); err != nil {
		return agent.Config{}, keys.Config{}, err
	}
	var macs []string
	for m := range strings.SplitSeq(o.macs, ",") {
		if m = strings.TrimSpace(m); m != "" {
			macs = append(macs, m)
		}
	}
	kcfg := keys.Config{
		Kind:           kind,
		SeedFile:       o.seedFile,
		SiteSecretFile: o.siteSecretFile,
		HardwareUUID:   o.hardwareUUID,
		KeyDir:         o.keyDir,
		TPMDevice:      o.tpmDevice,
		KEM:            kem,
	}
	cfg := agent.Config{
		Server:          o.server,
		CAHash:          o.caHash,
		Token:           o.token,
		Domain:          o.domain,
		CertDir:         o.certDir,
		Root:            o.root,
		Configure:       o.configure,
		Wait:            o.wait,
		Once:            o.once,
		NoHeartbeat:     o.noHeartbeat,
		BootID:          o.bootID,
		Output:          out,
		HeartbeatStatus: o.status,
		OnRenew:         o.onRenew,
		Offline:         o.offline,
		Socket:          offOr(o.socket),
		SocketGroup:     o.socketGroup,
		Kmsg:            offOr(o.kmsg),
		EventQueue:      o.eventQueue,
		CmdlineFile:     o.cmdline,
		ResolvConfFile:  o.resolvConf,
		Facts: agent.FactOverrides{
			HardwareUUID: o.hardwareUUID,
			Hostname:     o.hostname,
			Serial:       o.serial,
			MACs:         macs,
		},
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if cfg.IdentitySource, err = kcfg.Assurance(); err != nil {
		return agent.Config{}, keys.Config{}, err
	}
	return cfg, kcfg, nil
}

// offOr maps "off" to "", which turns a path setting off.
func offOr(path string) string {
	if path == "off" {
		return ""
	}
	return path
}
