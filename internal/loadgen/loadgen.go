// Package loadgen is berth-loadgen: it simulates a fleet of nodes in one
// process and measures berth's services under the loads DESIGN.md is built
// for: the first registration of a fleet, the power-restore storm (every
// node boots at once: Resume, bundle, first heartbeat) and a fleet of
// connected nodes heartbeating. It also measures the machine's ceiling:
// full mutual-TLS handshakes per second between two bare processes, the
// dominant cost of a boot.
//
// Every simulated node is a real agent: each boot is internal/agent's
// Run, with the node's own seed-derived keys, its own connections, cert
// dir and root, so the servers see exactly what a fleet of berth-agents
// would send. Only the heartbeats of the heartbeat scenario are the load
// generator's own, plugged into the agent through Config.Heartbeater, so
// that each beat's round trip can be timed.
package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Scenarios.
const (
	ScenarioRegister  = "register"
	ScenarioStorm     = "storm"
	ScenarioHeartbeat = "heartbeat"
	ScenarioCeiling   = "ceiling"
)

// Scenarios lists the scenarios Run takes.
var Scenarios = []string{ScenarioRegister, ScenarioStorm, ScenarioHeartbeat}

// Defaults of Config.
const (
	DefaultConcurrency       = 256
	DefaultSeed              = "berth-loadgen"
	DefaultWait              = 2 * time.Minute
	DefaultHeartbeatDuration = 60 * time.Second
)

// Config is one run of a scenario.
type Config struct {
	// Scenario is register, storm or heartbeat.
	Scenario string
	// Nodes is how many nodes take part: nodes 0 to Nodes-1 of the seed.
	Nodes int
	// Concurrency caps the boots in flight (and, in the heartbeat
	// scenario, the boots and stream openings in flight); the rest wait
	// their turn. Default DefaultConcurrency.
	Concurrency int
	// Duration is how long the connected nodes of the heartbeat scenario
	// beat. Default DefaultHeartbeatDuration.
	Duration time.Duration
	// Interval, if set, becomes the fleet's heartbeat interval for the
	// heartbeat scenario (set as admin, and put back afterwards). Zero
	// keeps the service's.
	Interval time.Duration
	// Seed names the fleet: the same seed gives the same nodes (keys,
	// hardware UUIDs, host names) on every run. Default DefaultSeed.
	Seed string
	// Wait is each agent's --wait. Default DefaultWait.
	Wait time.Duration
	// KeepInterval leaves Interval set after the run instead of putting
	// the previous settings back: for load generators running in
	// parallel against one fleet, none of which may put them back while
	// the others beat.
	KeepInterval bool
	// SyncDir and SyncProcs line up load generators running in parallel
	// (heartbeat): once its nodes are connected each waits until SyncProcs
	// of them are, so that their measuring windows coincide.
	SyncDir   string
	SyncProcs int
	// DB, if set, is the PostgreSQL URL of the store, whose write
	// statistics (pg_stat_database) are read at the start and end of the
	// heartbeat scenario's window.
	DB string
	// ProfileURL, if set with ProfileDir, is the heartbeat server's
	// /debug/pprof base URL (berthd serve --pprof-listen): the heartbeat
	// scenario writes its CPU profile over the window and its heap and
	// goroutine profiles at the window's end into ProfileDir. The register
	// and storm scenarios write this process's own CPU profile over their
	// timed boots there (SCENARIO-loadgen-cpu.pprof).
	ProfileURL, ProfileDir string
	// Reset deletes the seed's nodes before the register scenario, which
	// otherwise refuses to start when some are registered already.
	Reset bool
	// Token, if set, is the bootstrap token the register scenario boots
	// with, instead of one made for the run; the registry is then not
	// read before the boots (the nodes must be new), so the boots can
	// start while the database is down.
	Token string
	// NoPrepare makes the storm boot the nodes as they are, registered
	// before, without reading the registry or putting bundles first, so
	// the boots can start while the database is down.
	NoPrepare bool
	// Probe, if positive, measures the handshake ceiling for that long
	// right before the timed boots are released, after the untimed
	// setup (Result.Probe): the machine's speed drifts by up to a third
	// within minutes, and a storm's setup at 10,000 nodes takes about one.
	Probe time.Duration
	// Conn reaches the services with admin credentials.
	Conn Conn
	// ServerProcs are the server processes whose memory is reported.
	ServerProcs []Proc
	// DBPID is the main process of the PostgreSQL server the services
	// share (0: none, or SQLite), whose CPU time with its connections'
	// is reported apart from the servers': their figures leave it out.
	DBPID int
	// TempDir holds the nodes' cert dirs and roots. Default /dev/shm when
	// there is one, else the system's temporary directory.
	TempDir string
	// Log receives progress. Default discards it.
	Log *slog.Logger
}

func (c *Config) setDefaults() error {
	if !slices.Contains(Scenarios, c.Scenario) {
		return fmt.Errorf("unknown scenario %q (want register, storm, heartbeat or ceiling)", c.Scenario)
	}
	if c.Nodes <= 0 {
		return errors.New("--nodes must be at least 1")
	}
	if c.Concurrency < 0 || c.Duration < 0 || c.Interval < 0 || c.Wait < 0 {
		return errors.New("--concurrency, --duration, --interval and --wait must not be negative")
	}
	if err := CheckCeilingDuration(c.Probe); err != nil {
		return fmt.Errorf("--probe %v %w", c.Probe, err)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Duration == 0 {
		c.Duration = DefaultHeartbeatDuration
	}
	if c.Seed == "" {
		c.Seed = DefaultSeed
	}
	if c.Wait == 0 {
		c.Wait = DefaultWait
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			c.TempDir = "/dev/shm"
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c.Conn.check()
}

// Result is what a scenario measured. With -o json it is printed as one
// object; these field names are a contract, like berthctl's.
type Result struct {
	Scenario string `json:"scenario"`
	// Probe is the ceiling Config.Probe measured just before the timed
	// boots, a result of its own.
	Probe *CeilingResult `json:"-"`
	// Deployment names the servers measured when a run compares several
	// (dev: berthd dev on SQLite); empty for the main one.
	Deployment  string `json:"deployment,omitempty"`
	Nodes       int    `json:"nodes"`
	Concurrency int    `json:"concurrency"`
	// OK counts the nodes that did what the scenario asks: booted (and got
	// their first heartbeat acknowledged), or kept beating throughout.
	OK int `json:"ok"`
	// Errors counts failed nodes by gRPC code (or Pending, Untrusted,
	// Config, Unknown); ErrorSamples holds one message of each.
	Errors       map[string]int    `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	// ThroughputPerS is boots per second over the timed phase (register,
	// storm) or acknowledged beats per second (heartbeat).
	ThroughputPerS float64 `json:"throughput_per_s"`
	// Latency of one boot, from the moment it may start (its turn under
	// Concurrency) to the end of the agent's run; in the heartbeat
	// scenario, of one beat to its acknowledgement.
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// ElapsedS is the timed phase: from the barrier to the last boot done
	// (register, storm), or the time the connected nodes beat (heartbeat).
	ElapsedS float64 `json:"elapsed_s"`
	// CertsIssued is what the CA's issued-certificate log gained during
	// the timed phase (ListIssued since its start); nil if unknown.
	CertsIssued *int64 `json:"certs_issued"`
	// ServerPeakRSSMB sums the peak resident memory of the server
	// processes sampled during the timed phase; ServerRSSMB has each one,
	// ServerHWMMB their lifetime peak (VmHWM). nil without server PIDs.
	ServerPeakRSSMB  *float64           `json:"server_peak_rss_mb"`
	ServerRSSMB      map[string]float64 `json:"server_rss_mb,omitempty"`
	ServerHWMMB      map[string]float64 `json:"server_hwm_mb,omitempty"`
	LoadgenPeakRSSMB float64            `json:"loadgen_peak_rss_mb"`
	// LoadgenCPUMs is the load generator's own CPU time over the same
	// window as ServerCPUMs, LoadgenCPUMsPerOp that per boot: the
	// simulated agents' side, which shares the machine's cores.
	LoadgenCPUMs      float64  `json:"loadgen_cpu_ms,omitempty"`
	LoadgenCPUMsPerOp *float64 `json:"loadgen_cpu_ms_per_op,omitempty"`
	// ServerCPUMs is the CPU time (user and system) each server process
	// spent in the timed phase (register, storm) or the steady window
	// (heartbeat), ServerCPUMsTotal their sum and ServerCPUMsPerOp that
	// sum per boot or per acknowledged beat. nil without server PIDs.
	ServerCPUMs      map[string]float64 `json:"server_cpu_ms,omitempty"`
	ServerCPUMsTotal *float64           `json:"server_cpu_ms_total,omitempty"`
	ServerCPUMsPerOp *float64           `json:"server_cpu_ms_per_op,omitempty"`
	// DBCPUMs is the CPU time of the PostgreSQL server (its main process
	// and every connection's) over the same window, DBCPUMsPerOp that per
	// boot. nil without Config.DBPID.
	DBCPUMs      *float64 `json:"db_cpu_ms,omitempty"`
	DBCPUMsPerOp *float64 `json:"db_cpu_ms_per_op,omitempty"`
	// HeartbeatKBPerNode (heartbeat scenario) is how much the resident
	// memory of the heartbeat processes grew from before the nodes
	// connected to the end of the window, per connected node.
	HeartbeatKBPerNode *float64 `json:"heartbeat_kb_per_node,omitempty"`
	// HandshakesPerBoot (register, storm) counts the full TLS handshakes
	// of a boot: its registration connection, a bundle fetched from the
	// bundle store instead of inline, and the first heartbeat's connection.
	HandshakesPerBoot *float64 `json:"handshakes_per_boot,omitempty"`
	// BootsRecorded counts the boots the registration service recorded as
	// their node's first heartbeat, so that the boot opened no heartbeat
	// stream. In the storm each such node opens its stream later, at a
	// random moment within the interval, as berth-agent does:
	// HeartbeatsFollowed counts those acknowledged, FollowS is when the
	// last was (from the release), HandshakesPerBootTotal adds their
	// handshakes to the boot path's and ServerCPUMsPerBootTotal is the
	// server CPU from the release to then, per boot.
	// HeartbeatsDuringBoots counts the streams acknowledged before the
	// last boot was answered: each a full handshake taken from the nodes
	// still booting, which the agent's timing, the heartbeat service's
	// boot stretch and its deferral of new streams are there to avoid.
	// HeartbeatRetriesDuringBoots counts the stream tries that failed
	// and were tried again by then: mostly those the service deferred,
	// each refused after its ClientHello.
	BootsRecorded               int      `json:"boots_recorded,omitempty"`
	HeartbeatsFollowed          int      `json:"heartbeats_followed,omitempty"`
	HeartbeatsDuringBoots       *int64   `json:"heartbeats_during_boots,omitempty"`
	HeartbeatRetriesDuringBoots *int64   `json:"heartbeat_retries_during_boots,omitempty"`
	FollowS                     float64  `json:"follow_s,omitempty"`
	HandshakesPerBootTotal      *float64 `json:"handshakes_per_boot_total,omitempty"`
	ServerCPUMsPerBootTotal     *float64 `json:"server_cpu_ms_per_boot_total,omitempty"`

	// What the agents reported: Actions counts registered and resumed
	// boots; Renewed the boots that made the CA issue a certificate (each
	// registration does; a storm's must not).
	Actions        map[string]int `json:"actions,omitempty"`
	Renewed        int            `json:"renewed"`
	BundlesApplied int            `json:"bundles_applied"`
	// BundleSources counts where the applied bundles came from: inline in
	// the Resume answer, or fetched from the bundle store (another
	// connection, another handshake).
	BundleSources   map[string]int `json:"bundle_sources,omitempty"`
	HeartbeatsAcked int            `json:"heartbeats_acked"`

	// Heartbeat scenario.
	IntervalS  float64 `json:"interval_s,omitempty"`
	ConnectS   float64 `json:"connect_s,omitempty"`
	BeatsSent  int64   `json:"beats_sent,omitempty"`
	BeatsAcked int64   `json:"beats_acked,omitempty"`
	// SuspectEvents and UnreachableEvents count the run's nodes' health
	// events from the moment each node's first beat was written: not the
	// silence they may have kept since an earlier scenario.
	SuspectEvents     *int `json:"suspect_events,omitempty"`
	UnreachableEvents *int `json:"unreachable_events,omitempty"`
	// WindowStart and WindowEnd bound the measuring window (RFC 3339).
	WindowStart string `json:"window_start,omitempty"`
	WindowEnd   string `json:"window_end,omitempty"`
	// StoreXactsPerS and StoreRowsPerS are the store database's committed
	// transactions (reads included, so an upper bound on its write
	// statements) and rows written (inserted, updated or deleted) per
	// second over the window, all services together (--db); heartbeat
	// counts from storeSettle into the window, when the connect phase's
	// writes are over and counted.
	StoreXactsPerS *float64 `json:"store_xacts_per_s,omitempty"`
	StoreRowsPerS  *float64 `json:"store_rows_written_per_s,omitempty"`
	// Processes is how many load generators a combined result adds up
	// (berth-loadgen combine); 0 or 1 for one.
	Processes int `json:"processes,omitempty"`

	// Register scenario, checked after the timed phase: CertsLinted
	// node certificates went through zlint's RFC 5280 lints, LintFailures
	// of them failed one (LintFailureSamples names up to three lints);
	// DuplicateNodes counts nodes registered twice (a node ID reported by
	// two boots, two registry entries for one key, or more entries than
	// nodes); FleetNodes is how many nodes of the fleet the registry lists.
	CertsLinted        *int     `json:"certs_linted,omitempty"`
	LintFailures       *int     `json:"lint_failures,omitempty"`
	LintFailureSamples []string `json:"lint_failure_samples,omitempty"`
	DuplicateNodes     *int     `json:"duplicate_nodes,omitempty"`
	FleetNodes         *int     `json:"fleet_nodes,omitempty"`

	// SetupS is the untimed preparation: registering missing nodes,
	// putting bundles, booting the heartbeat fleet's agents.
	SetupS  float64 `json:"setup_s"`
	Seed    string  `json:"seed"`
	FDLimit uint64  `json:"fd_limit"`
	// Notes say what a reader of the figures must know.
	Notes []string `json:"notes,omitempty"`
}

// runner is one run of a scenario.
type runner struct {
	cfg    Config
	adm    *admin
	fleet  *fleet
	nodes  []*node
	runDir string
	// bootTag makes this run's boot IDs new: every boot of a run is a
	// reboot to the heartbeat service, as after a power cut.
	bootTag string
	log     *slog.Logger
	res     *Result
}

// Run runs the scenario of c and returns what it measured. An error means
// the run could not be made (bad settings, unreachable admin API, a failed
// untimed setup); failures of the nodes themselves are counted in the
// result.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.setDefaults(); err != nil {
		return nil, err
	}
	res := &Result{Scenario: c.Scenario, Nodes: c.Nodes, Concurrency: c.Concurrency, Seed: c.Seed, Errors: map[string]int{}}
	limit, err := raiseFDLimit(fdWanted(c))
	res.FDLimit = limit
	if err != nil {
		c.Log.Warn("cannot raise the file descriptor limit", "err", err)
	}
	if limit > 0 && limit < fdWanted(c) {
		note := fmt.Sprintf("file descriptor limit %d is below the %d this run may need; raise it (ulimit -n) or lower --concurrency/--nodes", limit, fdWanted(c))
		res.Notes = append(res.Notes, note)
		c.Log.Warn(note)
	}
	fl, err := newFleet(c.Seed)
	if err != nil {
		return nil, err
	}
	adm, err := newAdmin(c.Conn)
	if err != nil {
		return nil, err
	}
	defer adm.close()
	runDir, err := os.MkdirTemp(c.TempDir, "berth-loadgen-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(runDir)
	tag := make([]byte, 4)
	_, _ = rand.Read(tag)
	r := &runner{cfg: c, adm: adm, fleet: fl, nodes: fl.nodes(c.Nodes, runDir), runDir: runDir,
		bootTag: hex.EncodeToString(tag), log: c.Log, res: res}
	switch c.Scenario {
	case ScenarioRegister:
		err = r.register(ctx)
	case ScenarioStorm:
		err = r.storm(ctx)
	case ScenarioHeartbeat:
		err = r.heartbeat(ctx)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// fdWanted estimates the descriptors a run holds at its peak: for each
// boot in flight its connections (registration, heartbeat, bundle store)
// and files; in the heartbeat scenario every node's heartbeat stream stays
// open (its registration connection is closed once it booted).
func fdWanted(c Config) uint64 {
	n := uint64(c.Concurrency)*4 + 512
	if c.Scenario == ScenarioHeartbeat {
		n += uint64(c.Nodes)
	}
	return n
}

// bootID is the boot ID node n reports in this run.
func (r *runner) bootID(n *node) string {
	return fmt.Sprintf("loadgen-%s-%s-%06d", r.fleet.tag, r.bootTag, n.index)
}

// missingFile is a path that does not exist, so that the agents read no
// kernel command line or resolver configuration of this machine.
func (r *runner) missingFile() string { return filepath.Join(r.runDir, "none") }

// progress logs how far a phase got every few seconds until stop is
// called.
func progress(log *slog.Logger, what string, total int, done func() int) (stop func()) {
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				log.Info(what, "done", done(), "of", total)
			}
		}
	}()
	return func() { close(quit); <-finished }
}
