// Command berth-loadgen simulates a fleet of berth nodes in one process and
// measures berth's services under it. See berth-loadgen -h.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/loadgen"
)

func main() {
	// The ceiling scenario starts this program again as its TLS server.
	loadgen.MaybeCeilingServer()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK      = 0 // measured (node failures are in the figures)
	exitFailure = 1 // the run could not be made
	exitUsage   = 2
)

const long = `  berth-loadgen register|storm|heartbeat --nodes N [flags]
  berth-loadgen ceiling [--duration D] [-o json]
  berth-loadgen grpc-floor|boot-floor|register-floor [--duration D] [--concurrency C] [-o json]
  berth-loadgen stream-floor --nodes N [--interval I] [--duration D] [-o json]
  berth-loadgen report [--out FILE] RESULTS.json...
  berth-loadgen combine [-o json] RESULTS.json...
  berth-loadgen stepca-init --stepca-dir DIR --stepca-listen HOST:PORT
  berth-loadgen stepca-sign --stepca-dir DIR --nodes N [flags]

berth-loadgen simulates N berth nodes in one process, each with its own
seed-derived keys, hardware UUID (hostname load-NNNNNN), connections, cert
dir and root, and boots each with berth-agent's own code:

  register   N fresh nodes boot for the first time at once, with an
             auto-approve bootstrap token made for the run (Resume, then
             Register, certificate, first heartbeat).
  storm      the power restore: N registered nodes boot at once (Resume with
             the bundle inline, apply it, first heartbeat). Nodes not yet
             registered are registered first, and a small bundle is put as
             admin for nodes without one; both untimed.
  heartbeat  N nodes boot as long-running agents; once all are connected
             they beat for --duration. --interval sets the fleet's interval
             (as admin) for the run and puts it back afterwards.
  ceiling    full TLS 1.3 mutual-TLS handshakes per second between this
             process and a bare TLS server process, P-256 chains like
             berth's, no resumption, one handshake in flight per core.
  grpc-floor fresh mutual-TLS connections with one empty unary call each
             (gRPC health Check), --concurrency in flight, against a bare
             server process built with berthd's own server options: the
             most a Resume on a fresh connection can reach here.
  boot-floor the same with a node's least boot in place of the empty call:
             a fresh self-signed certificate of its key, Resume answered
             from memory with its chain and sealed bundle, and the checks
             no node may skip (its key, the bundle's admin signature, the
             bundle's decryption): the most a storm's boot can reach here.
  register-floor
             the same with a node's least first registration: a fresh
             self-signed certificate and CSR of its key, Register answered
             by signing the CSR from memory with the CA's key, and the
             node's check that the certificate is for its key: the most a
             first registration can reach here, against step-ca's /sign.
  stream-floor
             --nodes connections each hold one stream to such a server,
             which echoes a heartbeat's message sent every --interval: the
             least a heartbeat can cost in CPU per beat and memory per node.
  report     one table of results printed with -o json, the boots per
             second as a share of the ceiling, and the targets.
  combine    one result of load generators that ran a scenario in parallel,
             each with its own --seed (counts and rates summed, latency
             percentiles the largest of theirs).
  stepca-init  writes a throwaway step-ca into --stepca-dir: its own root
             and intermediate, a JWK provisioner, ca.json listening on
             --stepca-listen
             with its badger database in DIR/db (run step-ca DIR/ca.json).
  stepca-sign  the yardstick of register: N fresh keys, each with its CSR,
             ask the step-ca of --stepca-dir for a certificate at once (POST
             /1.0/sign), each with a fresh one-time token and a fresh TLS
             connection; signs/s and, with --server-pids, step-ca's CPU
             per sign.

The register scenario then lints, untimed, every node certificate with
zlint's RFC 5280 lints and checks that no node was registered twice
(certs_linted, lint_failures, duplicate_nodes). In the heartbeat scenario
each node's agent boots and is then ended, its registration connection
closed: a connected node costs one descriptor, its heartbeat stream.
--db reports the store's transactions and rows written per second over the
heartbeat window; --sync-dir and --sync-procs line up the windows of load
generators run in parallel (with --keep-interval, so that none puts the
interval back while others beat).

--fleet-token T makes the register scenario boot with a bootstrap token made
beforehand and read no registry first (the nodes must be new);
--no-prepare makes the storm boot the nodes as they are. Either way the
boots may start while the database is down, as in tests/chaos.

All boots are released at once by one barrier; --concurrency caps those in
flight. The same --seed gives the same N nodes on every run.

Every flag also comes from the environment as BERTH_<FLAG> (--nodes from
BERTH_NODES); the command line wins and an empty variable counts as unset.
The connection settings are those of berthctl and berthd dev's env file
(. DIR/env):
  --server H:P            registration service (BERTH_SERVER)
  --ca FILE               PEM roots verifying the servers (BERTH_CA)
  --cert FILE, --key FILE admin certificate and key (BERTH_CERT, BERTH_KEY)
  --ca-hash sha256:HEX    the pin the nodes use (BERTH_CA_HASH; default
                          computed from --ca)
  --bundles-server H:P    bundles admin API (BERTH_BUNDLES_SERVER; default --server)
  --heartbeat-server H:P  heartbeat admin API (BERTH_HEARTBEAT_SERVER; default --server)
  --ca-server H:P         CA, for its issued-certificate log (BERTH_CA_SERVER;
                          default --server)
  --server-pids LIST      server processes whose memory to report, as PID or
                          NAME=PID, comma-separated (BERTH_SERVER_PIDS)
  --db-pid PID            the PostgreSQL server's main process (postmaster):
                          its CPU and its connections' is reported as
                          db_cpu_ms, apart from the servers' (BERTH_DB_PID)

Output fields (-o json, one object per run): scenario, nodes, concurrency,
ok, errors (gRPC code -> count), throughput_per_s, p50_ms, p90_ms, p99_ms,
max_ms, elapsed_s, certs_issued, server_peak_rss_mb and more; the ceiling:
scenario, handshakes_per_s, parallel, cores, p50_ms, p99_ms, key_exchange;
the floors: scenario, ops, ops_per_s, server_cpu_ms_per_op, and for
stream-floor server_kb_per_conn and server_heap_kb_per_conn.

Exit status: 0 when the run was measured (failed nodes are counted in the
result), 1 when it could not be made, 2 for bad flags.`

type options struct {
	nodes, concurrency, parallel                int
	duration, interval, wait                    time.Duration
	seed, output, tmpDir, serverPIDs, logLevel  string
	server, bundlesServer, heartbeatServer      string
	caServer, ca, cert, key, caHash, reportFile string
	syncDir, db, profileURL, profileDir         string
	syncProcs, dbPID                            int
	reset, keepInterval, noPrepare              bool
	probe                                       time.Duration
	token, deployment                           string
	dir, listen                                 string
}

// errUsageShown says the usage was printed on stderr: exit 2, nothing more.
var errUsageShown = errors.New("usage shown")

func run(ctx context.Context, args []string, env config.Env, stdout, stderr io.Writer) int {
	var o options
	_, err := cmdline.Execute(ctx, newRoot(&o, env, stdout, stderr), args, stdout, stderr)
	switch ue, usage := cmdline.AsUsage(err); {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsageShown):
		return exitUsage
	case usage:
		fmt.Fprintf(stderr, "berth-loadgen: %s (see %s -h)\n", cmdline.OneLine(ue.Msg), ue.Path)
		return exitUsage
	}
	fmt.Fprintf(stderr, "berth-loadgen: %s\n", cmdline.OneLine(err.Error()))
	return exitFailure
}

// newRoot is berth-loadgen's command tree; its flags fill o.
func newRoot(o *options, env config.Env, stdout, stderr io.Writer) *cobra.Command {
	root := cmdline.NewRoot("berth-loadgen", long, false)
	root.Args = cobra.ArbitraryArgs
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			_ = cmdline.WriteHelp(stderr, cmd)
			return errUsageShown
		}
		return cmdline.Usagef(cmd, "unknown command %q", args[0])
	}
	pf := root.PersistentFlags()
	pf.SortFlags = false
	pf.StringVarP(&o.output, "output", "o", "table", "output `format`: table or json")
	pf.StringVar(&o.tmpDir, "tmp-dir", "", "`dir` for the nodes' files (default /dev/shm if present)")
	pf.StringVar(&o.logLevel, "log-level", "info", "progress on stderr: debug, info, warn or error")
	for _, name := range []string{loadgen.ScenarioRegister, loadgen.ScenarioStorm, loadgen.ScenarioHeartbeat} {
		cmdline.Add(root, scenarioCommand(name, o, env, stdout, stderr))
	}
	cmdline.Add(root, ceilingCommand(o, env, stdout, stderr),
		floorCommand(loadgen.ScenarioGRPCFloor, o, env, stdout, stderr), floorCommand(loadgen.ScenarioBootFloor, o, env, stdout, stderr),
		floorCommand(loadgen.ScenarioRegisterFloor, o, env, stdout, stderr),
		floorCommand(loadgen.ScenarioStreamFloor, o, env, stdout, stderr),
		reportCommand(o, env, stdout), combineCommand(o, env, stdout),
		stepCAInitCommand(o, env, stderr), stepCASignCommand(o, env, stdout, stderr))
	return root
}

// prepare loads the settings of cmd from the environment, checks the
// common ones and returns the logger.
func (o *options) prepare(cmd *cobra.Command, env config.Env, stderr io.Writer) (*slog.Logger, error) {
	if _, err := config.Load(cmd.Flags(), env, ""); err != nil {
		return nil, cmdline.Usagef(cmd, "%s", err)
	}
	if o.output != "table" && o.output != "json" {
		return nil, cmdline.Usagef(cmd, "--output %q: want table or json", o.output)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, cmdline.Usagef(cmd, "--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})), nil
}

// scenarioCommand is register, storm or heartbeat: a fleet of N nodes
// against running servers.
func scenarioCommand(name string, o *options, env config.Env, stdout, stderr io.Writer) *cobra.Command {
	short := map[string]string{
		loadgen.ScenarioRegister:  "N fresh nodes boot for the first time at once",
		loadgen.ScenarioStorm:     "N registered nodes boot at once: the power restore",
		loadgen.ScenarioHeartbeat: "N nodes connect and beat for --duration",
	}[name]
	cmd := &cobra.Command{Use: name, Short: short, Long: short + ". See berth-loadgen -h.", Args: cmdline.NoArgs}
	fs := cmd.Flags()
	fs.IntVar(&o.nodes, "nodes", 0, "number of nodes `N` (required)")
	fs.IntVar(&o.concurrency, "concurrency", loadgen.DefaultConcurrency, "boots in flight at most")
	fs.DurationVar(&o.duration, "duration", loadgen.DefaultHeartbeatDuration, "heartbeat: how long the connected nodes beat")
	fs.DurationVar(&o.interval, "interval", 0, "heartbeat: fleet interval for the run (default: the service's)")
	fs.StringVar(&o.seed, "seed", loadgen.DefaultSeed, "names the fleet: the same seed gives the same nodes")
	fs.DurationVar(&o.wait, "wait", loadgen.DefaultWait, "each agent's --wait")
	fs.BoolVar(&o.reset, "reset", false, "register: delete the seed's registered nodes first")
	fs.StringVar(&o.token, "fleet-token", "", "register: boot with this bootstrap `token` (not one made for the run) and read no registry first: the nodes must be new")
	fs.BoolVar(&o.noPrepare, "no-prepare", false, "storm: boot the nodes as they are, registered before, without reading the registry or putting bundles first")
	fs.DurationVar(&o.probe, "probe", 0, "register, storm: measure the handshake ceiling for this long after the setup, right before the timed boots, and print it first, as the ceiling just before this result (0: none)")
	fs.BoolVar(&o.keepInterval, "keep-interval", false, "heartbeat: leave --interval set afterwards (for load generators in parallel)")
	fs.StringVar(&o.syncDir, "sync-dir", "", "heartbeat: `dir` where load generators in parallel line up their windows")
	fs.IntVar(&o.syncProcs, "sync-procs", 0, "heartbeat: how many load generators line up in --sync-dir")
	fs.StringVar(&o.profileURL, "profile-url", "", "heartbeat: the heartbeat server's pprof `URL` (http://HOST:PORT/debug/pprof, berthd serve --pprof-listen), profiled during the window")
	fs.StringVar(&o.profileDir, "profile-dir", "", "`dir` for CPU profiles: heartbeat: the server's (with --profile-url); register and storm: this process's over the timed boots")
	fs.StringVar(&o.db, "db", "", "heartbeat: PostgreSQL `URL` of the store, to report its writes per second")
	fs.StringVar(&o.server, "server", "", "registration service `host:port`")
	fs.StringVar(&o.bundlesServer, "bundles-server", "", "bundles service `host:port` (default --server)")
	fs.StringVar(&o.heartbeatServer, "heartbeat-server", "", "heartbeat service `host:port` (default --server)")
	fs.StringVar(&o.caServer, "ca-server", "", "CA service `host:port` (default --server)")
	fs.StringVar(&o.ca, "ca", "", "PEM root certificates `file`")
	fs.StringVar(&o.cert, "cert", "", "PEM admin certificate `file`")
	fs.StringVar(&o.key, "key", "", "PEM admin key `file`")
	fs.StringVar(&o.caHash, "ca-hash", "", "CA pin `sha256:HEX` for the nodes (default: from --ca)")
	fs.StringVar(&o.serverPIDs, "server-pids", "", "server `PIDs` (NAME=PID,...) whose memory to report")
	fs.IntVar(&o.dbPID, "db-pid", 0, "the PostgreSQL server's main `PID`, whose CPU (with its connections') to report")
	fs.StringVar(&o.deployment, "deployment", "", "`name` of the servers measured, for report to tell runs against several apart (e.g. dev)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := o.prepare(cmd, env, stderr)
		if err != nil {
			return err
		}
		procs, err := loadgen.ParseProcs(o.serverPIDs)
		if err != nil {
			return cmdline.Usagef(cmd, "%s", err)
		}
		if o.nodes <= 0 {
			return cmdline.Usagef(cmd, "--nodes N is required")
		}
		if err := loadgen.CheckDBPID(o.dbPID); err != nil {
			return cmdline.Usagef(cmd, "%s", err)
		}
		if err := loadgen.CheckCeilingDuration(o.probe); err != nil {
			return cmdline.Usagef(cmd, "--probe %v %v", o.probe, err)
		}
		res, err := loadgen.Run(cmd.Context(), loadgen.Config{
			Scenario: name, Nodes: o.nodes, Concurrency: o.concurrency, Duration: o.duration, Interval: o.interval,
			Seed: o.seed, Wait: o.wait, Reset: o.reset, Token: o.token, NoPrepare: o.noPrepare, Probe: o.probe, ServerProcs: procs, DBPID: o.dbPID, TempDir: o.tmpDir, Log: log,
			KeepInterval: o.keepInterval, SyncDir: o.syncDir, SyncProcs: o.syncProcs, DB: o.db,
			ProfileURL: o.profileURL, ProfileDir: o.profileDir,
			Conn: loadgen.Conn{
				Server: o.server, BundlesServer: o.bundlesServer, HeartbeatServer: o.heartbeatServer, CAServer: o.caServer,
				CAFile: o.ca, CertFile: o.cert, KeyFile: o.key, CAHash: o.caHash,
			},
		})
		if err != nil {
			return err
		}
		res.Deployment = o.deployment
		return writeRun(stdout, o.output, res)
	}
	return cmd
}

func ceilingCommand(o *options, env config.Env, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "ceiling", Short: "Full mutual-TLS handshakes per second, the machine's ceiling",
		Long: "Measure full TLS 1.3 mutual-TLS handshakes per second between this process and a\n" +
			"bare TLS server process, P-256 chains like berth's, no resumption, one\n" +
			"handshake in flight per core.", Args: cmdline.NoArgs}
	fs := cmd.Flags()
	// Its own variable: o.duration's default is the heartbeat's, and the
	// command defined last would set it for all.
	var (
		duration time.Duration
		probeFor string
	)
	fs.DurationVar(&duration, "duration", loadgen.DefaultCeilingDuration, "how long to measure")
	fs.IntVar(&o.parallel, "parallel", 0, "handshakes in flight (default: the number of cores)")
	fs.StringVar(&probeFor, "probe-for", "", "mark the result as the ceiling measured just before the result `name` (as report names it: register, register_dev, storm_restarted, boot-floor...), which report judges against it too")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := o.prepare(cmd, env, stderr)
		if err != nil {
			return err
		}
		if err := loadgen.CheckCeilingDuration(duration); err != nil {
			return cmdline.Usagef(cmd, "--duration %v %v", duration, err)
		}
		res, err := loadgen.Ceiling(cmd.Context(), loadgen.CeilingConfig{Duration: duration, Parallel: o.parallel, TempDir: o.tmpDir, Log: log})
		if err != nil {
			return err
		}
		res.ProbeFor = probeFor
		return write(stdout, o.output, res, func() error { return loadgen.WriteCeilingText(stdout, res) })
	}
	return cmd
}

func reportCommand(o *options, env config.Env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "report [RESULTS.json...]", Short: "One table of results, against the ceiling and the targets",
		Long: "Print results written with -o json (files, or stdin) as one table: the boots\n" +
			"per second as a share of the ceiling, and the targets.", Args: cobra.ArbitraryArgs}
	cmd.Flags().StringVar(&o.reportFile, "out", "", "also write every result, and a summary, to `file` as one JSON array")
	cmd.RunE = func(cmd *cobra.Command, files []string) error {
		if _, err := o.prepare(cmd, env, io.Discard); err != nil {
			return err
		}
		return report(files, *o, stdout)
	}
	return cmd
}

func combineCommand(o *options, env config.Env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "combine RESULTS.json...", Short: "Add up the results of load generators run in parallel",
		Long: "Add up the results of load generators that ran a scenario in parallel, each\n" +
			"with its own --seed: counts and rates summed, latency percentiles the largest\n" +
			"of theirs.", Args: cobra.ArbitraryArgs}
	cmd.RunE = func(cmd *cobra.Command, files []string) error {
		if _, err := o.prepare(cmd, env, io.Discard); err != nil {
			return err
		}
		res, err := combine(files)
		if err != nil {
			return err
		}
		res.Deployment = o.deployment
		return write(stdout, o.output, res, func() error { return loadgen.WriteText(stdout, res) })
	}
	return cmd
}

func write(w io.Writer, format string, v any, text func() error) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(v)
	}
	return text()
}

// writeRun prints a node scenario's result in format, after the ceiling
// its --probe measured if any, marked as the ceiling just before the
// result as report names it.
func writeRun(w io.Writer, format string, res *loadgen.Result) error {
	if p := res.Probe; p != nil {
		p.ProbeFor = res.ReportName()
		if err := write(w, format, p, func() error { return loadgen.WriteCeilingText(w, p) }); err != nil {
			return err
		}
	}
	return write(w, format, res, func() error { return loadgen.WriteText(w, res) })
}

// report prints the results in files (or stdin) as one table and, with
// --out, writes them with a summary as one JSON array.
func report(files []string, o options, stdout io.Writer) error {
	if len(files) == 0 {
		files = []string{"-"}
	}
	var all []map[string]any
	for _, f := range files {
		var r io.Reader = os.Stdin
		if f != "-" {
			file, err := os.Open(f)
			if err != nil {
				return err
			}
			defer file.Close()
			r = file
		}
		res, err := loadgen.ReadResults(r)
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		for _, r := range res {
			if r["scenario"] != "summary" { // made again below
				all = append(all, r)
			}
		}
	}
	if o.output != "json" {
		for _, r := range all {
			if err := details(stdout, r); err != nil {
				return err
			}
		}
	}
	summary, err := loadgen.Report(stdout, all)
	if err != nil {
		return err
	}
	all = append(all, summary)
	if o.reportFile != "" {
		b, err := json.MarshalIndent(all, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.reportFile, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if o.output == "json" {
		return json.NewEncoder(stdout).Encode(all)
	}
	return nil
}

// combine reads the results of load generators that ran one scenario in
// parallel and adds them up as one (loadgen.Combine).
func combine(files []string) (*loadgen.Result, error) {
	if len(files) == 0 {
		return nil, errors.New("combine: name the results files")
	}
	var rs []*loadgen.Result
	for _, f := range files {
		file, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		maps, err := loadgen.ReadResults(file)
		file.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		for _, m := range maps {
			b, err := json.Marshal(m)
			if err != nil {
				return nil, err
			}
			var r loadgen.Result
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			rs = append(rs, &r)
		}
	}
	return loadgen.Combine(rs)
}

// details prints one result as berth-loadgen printed it when it ran.
func details(w io.Writer, r map[string]any) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	switch r["scenario"] {
	case loadgen.ScenarioCeiling:
		var c loadgen.CeilingResult
		if err := json.Unmarshal(b, &c); err != nil {
			return err
		}
		err = loadgen.WriteCeilingText(w, &c)
	case loadgen.ScenarioGRPCFloor, loadgen.ScenarioBootFloor, loadgen.ScenarioRegisterFloor, loadgen.ScenarioStreamFloor:
		var f loadgen.FloorResult
		if err := json.Unmarshal(b, &f); err != nil {
			return err
		}
		err = loadgen.WriteFloorText(w, &f)
	case loadgen.ScenarioRegister, loadgen.ScenarioStorm, loadgen.ScenarioHeartbeat, loadgen.ScenarioStepCASign:
		var res loadgen.Result
		if err := json.Unmarshal(b, &res); err != nil {
			return err
		}
		err = loadgen.WriteText(w, &res)
	default:
		return nil
	}
	if err == nil {
		_, err = fmt.Fprintln(w)
	}
	return err
}
