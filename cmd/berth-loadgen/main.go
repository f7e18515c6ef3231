// Command berth-loadgen simulates a fleet of berth nodes in one process and
// measures berth's services under it. See berth-loadgen -h.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

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

const usage = `Usage:
  berth-loadgen register|storm|heartbeat --nodes N [flags]
  berth-loadgen ceiling [--duration D] [-o json]
  berth-loadgen report [--out FILE] RESULTS.json...
  berth-loadgen combine [-o json] RESULTS.json...

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
  report     one table of results printed with -o json, the boots per
             second as a share of the ceiling, and the targets.
  combine    one result of load generators that ran a scenario in parallel,
             each with its own --seed (counts and rates summed, latency
             percentiles the largest of theirs).

The register scenario then lints, untimed, every node certificate with
zlint's RFC 5280 lints and checks that no node was registered twice
(certs_linted, lint_failures, duplicate_nodes). In the heartbeat scenario
each node's agent boots and is then ended, its registration connection
closed: a connected node costs one descriptor, its heartbeat stream.
--db reports the store's transactions and rows written per second over the
heartbeat window; --sync-dir and --sync-procs line up the windows of load
generators run in parallel (with --keep-interval, so that none puts the
interval back while others beat).

All boots are released at once by one barrier; --concurrency caps those in
flight. The same --seed gives the same N nodes on every run.

Connection settings, also from the environment (as berthctl and berthd dev's
env file: . DIR/env):
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

Output fields (-o json, one object per run): scenario, nodes, concurrency,
ok, errors (gRPC code -> count), throughput_per_s, p50_ms, p90_ms, p99_ms,
max_ms, elapsed_s, certs_issued, server_peak_rss_mb and more; the ceiling:
scenario, handshakes_per_s, parallel, cores, p50_ms, p99_ms, key_exchange.

Exit status: 0 when the run was measured (failed nodes are counted in the
result), 1 when it could not be made, 2 for bad flags.
`

type options struct {
	nodes, concurrency, parallel                int
	duration, interval, wait                    time.Duration
	seed, output, tmpDir, serverPIDs, logLevel  string
	server, bundlesServer, heartbeatServer      string
	caServer, ca, cert, key, caHash, reportFile string
	syncDir, db                                 string
	syncProcs                                   int
	reset, keepInterval                         bool
}

// envFlags are the flags that also come from BERTH_* variables: where the
// servers are and who the caller is, as for berthctl.
var envFlags = []string{"server", "bundles-server", "heartbeat-server", "ca-server", "ca", "cert", "key", "ca-hash", "server-pids", "output", "tmp-dir"}

func newFlagSet(name string, o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("berth-loadgen "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.output, "output", "table", "output `format`: table or json")
	fs.StringVar(&o.output, "o", "table", "short for --output")
	fs.StringVar(&o.tmpDir, "tmp-dir", "", "`dir` for the nodes' files (default /dev/shm if present)")
	fs.StringVar(&o.logLevel, "log-level", "info", "progress on stderr: debug, info, warn or error")
	switch name {
	case loadgen.ScenarioCeiling:
		fs.DurationVar(&o.duration, "duration", loadgen.DefaultCeilingDuration, "how long to measure")
		fs.IntVar(&o.parallel, "parallel", 0, "handshakes in flight (default: the number of cores)")
	case "report":
		fs.StringVar(&o.reportFile, "out", "", "also write every result, and a summary, to `file` as one JSON array")
	case "combine":
	default:
		fs.IntVar(&o.nodes, "nodes", 0, "number of nodes `N` (required)")
		fs.IntVar(&o.concurrency, "concurrency", loadgen.DefaultConcurrency, "boots in flight at most")
		fs.DurationVar(&o.duration, "duration", loadgen.DefaultHeartbeatDuration, "heartbeat: how long the connected nodes beat")
		fs.DurationVar(&o.interval, "interval", 0, "heartbeat: fleet interval for the run (default: the service's)")
		fs.StringVar(&o.seed, "seed", loadgen.DefaultSeed, "names the fleet: the same seed gives the same nodes")
		fs.DurationVar(&o.wait, "wait", loadgen.DefaultWait, "each agent's --wait")
		fs.BoolVar(&o.reset, "reset", false, "register: delete the seed's registered nodes first")
		fs.BoolVar(&o.keepInterval, "keep-interval", false, "heartbeat: leave --interval set afterwards (for load generators in parallel)")
		fs.StringVar(&o.syncDir, "sync-dir", "", "heartbeat: `dir` where load generators in parallel line up their windows")
		fs.IntVar(&o.syncProcs, "sync-procs", 0, "heartbeat: how many load generators line up in --sync-dir")
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
	}
	return fs
}

// applyEnv sets the connection flags not given on the command line from
// their BERTH_* variables.
func applyEnv(fs *flag.FlagSet, env func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["o"] {
		given["output"] = true
	}
	for _, name := range envFlags {
		if given[name] || fs.Lookup(name) == nil {
			continue
		}
		v, ok := env("BERTH_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
		if !ok || v == "" {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("BERTH_%s: %v", strings.ToUpper(strings.ReplaceAll(name, "-", "_")), err)
		}
	}
	return nil
}

func run(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "berth-loadgen: %s\n", strings.Join(strings.Fields(err.Error()), " "))
		return code
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case loadgen.ScenarioRegister, loadgen.ScenarioStorm, loadgen.ScenarioHeartbeat, loadgen.ScenarioCeiling, "report", "combine":
	default:
		return fail(exitUsage, fmt.Errorf("unknown command %q (see berth-loadgen -h)", name))
	}
	var o options
	fs := newFlagSet(name, &o)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fmt.Fprintf(stdout, "\nFlags of %s:\n", name)
			fs.PrintDefaults()
			return exitOK
		}
		return fail(exitUsage, fmt.Errorf("%v (see berth-loadgen -h)", err))
	}
	if err := applyEnv(fs, env); err != nil {
		return fail(exitUsage, err)
	}
	if name != "report" && name != "combine" && fs.NArg() > 0 {
		return fail(exitUsage, fmt.Errorf("unexpected argument %q (see berth-loadgen -h)", fs.Arg(0)))
	}
	if o.output != "table" && o.output != "json" {
		return fail(exitUsage, fmt.Errorf("--output %q: want table or json", o.output))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fail(exitUsage, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var err error
	switch name {
	case "report":
		err = report(fs.Args(), o, stdout)
	case "combine":
		var res *loadgen.Result
		res, err = combine(fs.Args())
		if err == nil {
			err = write(stdout, o.output, res, func() error { return loadgen.WriteText(stdout, res) })
		}
	case loadgen.ScenarioCeiling:
		var res *loadgen.CeilingResult
		res, err = loadgen.Ceiling(ctx, loadgen.CeilingConfig{Duration: o.duration, Parallel: o.parallel, TempDir: o.tmpDir, Log: log})
		if err == nil {
			err = write(stdout, o.output, res, func() error { return loadgen.WriteCeilingText(stdout, res) })
		}
	default:
		procs, perr := loadgen.ParseProcs(o.serverPIDs)
		if perr != nil {
			return fail(exitUsage, perr)
		}
		if o.nodes <= 0 {
			return fail(exitUsage, errors.New("--nodes N is required (see berth-loadgen -h)"))
		}
		var res *loadgen.Result
		res, err = loadgen.Run(ctx, loadgen.Config{
			Scenario: name, Nodes: o.nodes, Concurrency: o.concurrency, Duration: o.duration, Interval: o.interval,
			Seed: o.seed, Wait: o.wait, Reset: o.reset, ServerProcs: procs, TempDir: o.tmpDir, Log: log,
			KeepInterval: o.keepInterval, SyncDir: o.syncDir, SyncProcs: o.syncProcs, DB: o.db,
			Conn: loadgen.Conn{
				Server: o.server, BundlesServer: o.bundlesServer, HeartbeatServer: o.heartbeatServer, CAServer: o.caServer,
				CAFile: o.ca, CertFile: o.cert, KeyFile: o.key, CAHash: o.caHash,
			},
		})
		if err == nil {
			err = write(stdout, o.output, res, func() error { return loadgen.WriteText(stdout, res) })
		}
	}
	if err != nil {
		return fail(exitFailure, err)
	}
	return exitOK
}

func write(w io.Writer, format string, v any, text func() error) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(v)
	}
	return text()
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
	case loadgen.ScenarioRegister, loadgen.ScenarioStorm, loadgen.ScenarioHeartbeat:
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
