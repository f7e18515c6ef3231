// Package chaos is the fault test: berth as deployed (PostgreSQL, two
// `berthd serve --role` replicas of every service) under a storm of
// booting nodes, while replicas are killed, PostgreSQL restarts or stays
// down, and the database's disk fills. After each fault every node must
// have booted, with exactly the certificates the CA's log holds for it,
// and the event log must hold each change once.
//
// BERTH_CHAOS_NODES sets the storm size (make chaos: 1000; make test runs
// the default, sized for CI).
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

// defaultNodes is the storm size when BERTH_CHAOS_NODES is unset: what
// keeps the whole fault matrix within a few minutes on a 2-core CI box.
const defaultNodes = 100

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Without -race whatever the test runs with: the servers and the load
	// generator must be as fast as in production for the storm to be one.
	build := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../../cmd/berthd", "../../cmd/berth-loadgen")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := pgtest.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

func bin(name string) string { return filepath.Join(binDir, name) }

// cleanEnv is this process's environment without berth's settings, which
// the binaries would read.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BERTH_") || strings.HasPrefix(k, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func stormSize(t *testing.T) int {
	t.Helper()
	v := os.Getenv("BERTH_CHAOS_NODES")
	if v == "" {
		return defaultNodes
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("BERTH_CHAOS_NODES=%q: want a number of nodes", v)
	}
	return n
}

// loadgenResult is the part of berth-loadgen's JSON result the test reads.
type loadgenResult struct {
	Nodes        int               `json:"nodes"`
	OK           int               `json:"ok"`
	Errors       map[string]int    `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples"`
	ElapsedS     float64           `json:"elapsed_s"`
	P50Ms        float64           `json:"p50_ms"`
	P99Ms        float64           `json:"p99_ms"`
	MaxMs        float64           `json:"max_ms"`
	SetupS       float64           `json:"setup_s"`
	Actions      map[string]int    `json:"actions"`
}

// storm is one berth-loadgen run in the background.
type storm struct {
	kind    string // register or storm
	started time.Time
	// released is closed when berth-loadgen releases the boots.
	released chan struct{}
	done     chan struct{}
	res      loadgenResult
	err      error
	stderr   *stderrWatch
}

// stderrWatch keeps berth-loadgen's progress log and closes released at
// the line that says the boots are released.
type stderrWatch struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	released chan struct{}
	once     sync.Once
}

func (w *stderrWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(w.buf.Bytes(), []byte("releasing all boots at once")) {
		w.once.Do(func() { close(w.released) })
	}
	return len(p), nil
}

func (w *stderrWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startStorm boots n nodes of seed at once with berth-loadgen: a first
// registration with token, or (token "") a resume of nodes registered
// before. The agents wait up to four minutes for berth, so that no
// fault here should make one give up.
func (d *deployment) startStorm(kind, seed, token string, n int) *storm {
	s := &storm{kind: kind, started: time.Now(), released: make(chan struct{}), done: make(chan struct{})}
	s.stderr = &stderrWatch{released: s.released}
	args := []string{kind, "--nodes", strconv.Itoa(n), "--seed", seed, "--wait", "4m", "--concurrency", "128",
		"--server", d.proxies["registration"].addr(), "--ca-server", d.proxies["ca"].addr(),
		"--bundles-server", d.proxies["bundles"].addr(), "--heartbeat-server", d.proxies["heartbeat"].addr(),
		"--ca", d.layout.AdminCAPath(), "--cert", d.layout.AdminCertPath(), "--key", d.layout.AdminKeyPath(),
		"--tmp-dir", d.work, "--log-level", "info", "-o", "json"}
	if token != "" {
		args = append(args, "--fleet-token", token)
	} else {
		args = append(args, "--no-prepare")
	}
	cmd := exec.Command(bin("berth-loadgen"), args...)
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, s.stderr
	go func() {
		defer close(s.done)
		if s.err = cmd.Run(); s.err != nil {
			s.err = fmt.Errorf("berth-loadgen %s: %w\n%s", kind, s.err, s.stderr.String())
			return
		}
		if err := json.Unmarshal(out.Bytes(), &s.res); err != nil {
			s.err = fmt.Errorf("berth-loadgen %s printed %q: %w", kind, out.String(), err)
		}
	}()
	return s
}

// wait waits for the storm and returns when its last boot ended.
func (s *storm) wait(t *testing.T) time.Time {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Minute):
		t.Fatalf("berth-loadgen %s still running after 10 minutes", s.kind)
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.started.Add(time.Duration((s.res.SetupS + s.res.ElapsedS) * float64(time.Second)))
}

// gaveUp is how many agents ended without booting.
func (s *storm) gaveUp() int {
	n := 0
	for _, c := range s.res.Errors {
		n += c
	}
	return n
}

func (d *deployment) createToken(t *testing.T, uses int) (id, secret string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := d.nodesAdmin().CreateToken(ctx, tokenRequest(uses))
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	return resp.GetToken().GetId(), resp.GetSecretToken()
}

// matrix is the fault matrix, run once for the tests that check it.
var matrix struct {
	once sync.Once
	rows []*outcome
	// withoutRequestID counts the CA log's certificates with no request
	// ID, at the end.
	withoutRequestID int
}

// faultMatrix runs (once) a registration storm and then a resume storm of
// fresh nodes under each fault, and returns what each left behind.
func faultMatrix(t *testing.T) []*outcome {
	t.Helper()
	matrix.once.Do(func() {
		n := stormSize(t)
		d := newDeployment(t)
		logs := d.watchLogs()
		defer stopLogs(logs)
		var rows []*outcome
		for i, f := range d.faults() {
			seed := fmt.Sprintf("chaos-%d", i)
			tokenID, token := d.createToken(t, n)
			for _, kind := range []string{"register", "storm"} {
				rows = append(rows, d.runFault(t, f, kind, seed, tokenID, token, n, logs))
			}
		}
		printMatrix(t, rows)
		matrix.withoutRequestID = d.countSQL(t, `SELECT count(*) FROM ca_issued WHERE request_id = ''`)
		matrix.rows = rows
	})
	if matrix.rows == nil {
		t.Fatal("the fault matrix did not run to the end (see the test that ran it)")
	}
	return matrix.rows
}

// TestChaos checks after each fault that every node booted, no agent gave
// up, no replica died on its own, and each event log (node lifecycle,
// bundles, health) holds each change once: cursors in order, each once,
// no hole ever filled later, a follower resuming by cursor through the
// faults got each event once; each node registered and got its first
// certificate once; its health transitions chain without a repeat or a
// gap, its first beat and each reboot recorded once. And, for the faults that cannot strike
// between the CA's Sign and the registry's write, that each node has
// exactly one certificate, the one the CA's log and the registry agree on.
func TestChaos(t *testing.T) {
	for _, o := range faultMatrix(t) {
		o.checkBoots(t)
		if !o.betweenSignAndWrite {
			o.checkIssuance(t)
		}
	}
}

func (o *outcome) name() string { return o.fault + ", " + o.storm }

func (o *outcome) checkBoots(t *testing.T) {
	t.Helper()
	if o.booted != o.nodes || o.gaveUp != 0 {
		t.Errorf("%s: %d of %d nodes booted, %d agents gave up (e.g. %s)", o.name(), o.booted, o.nodes, o.gaveUp, o.gaveUpSample)
	}
	if o.lostEvents != 0 || o.dupEvents != 0 {
		t.Errorf("%s: %d events lost, %d duplicated (lost/duplicated by log: %s)", o.name(), o.lostEvents, o.dupEvents, o.logSummary())
		o.logProblems(t)
	}
}

// checkIssuance: every node has exactly one certificate (none new in a
// resume storm), the registry agrees with the CA's log, and the CA issued
// nothing the registry does not know and nothing twice for one request.
func (o *outcome) checkIssuance(t *testing.T) {
	t.Helper()
	if o.certsMin != 1 || o.certsMax != 1 || o.mismatched != 0 || o.orphans != 0 || o.duplicateRequests != 0 {
		t.Errorf("%s: certificates per node %d-%d (want 1), %d nodes disagree with the CA's log, %d orphans, %d requests issued twice",
			o.name(), o.certsMin, o.certsMax, o.mismatched, o.orphans, o.duplicateRequests)
		o.logProblems(t)
	}
}

func (o *outcome) logProblems(t *testing.T) {
	t.Helper()
	for _, p := range o.problems {
		t.Logf("%s: %s", o.name(), p)
	}
}

// runFault runs one storm under one fault and checks the outcome.
func (d *deployment) runFault(t *testing.T, f fault, kind, seed, tokenID, token string, n int, logs []*watchedLog) *outcome {
	t.Helper()
	before := d.readFleet(t, tokenID)
	logRows := startRow(logs) // the events of this storm come after these
	if f.before != nil {
		f.before(t, d)
	}
	if kind != "register" {
		token = ""
	}
	s := d.startStorm(kind, seed, token, n)
	cleared := f.during(t, d, s)
	end := s.wait(t)
	serving, err := d.waitServing(3 * time.Minute)
	if err != nil {
		t.Fatalf("%s, %s: %v", f.name, kind, err)
	}
	for _, r := range d.replicas {
		if !r.alive() {
			t.Fatalf("%s, %s: %s exited on its own", f.name, kind, r.name)
		}
	}
	o := &outcome{fault: f.name, storm: kind, nodes: n, booted: s.res.OK, gaveUp: s.gaveUp(), betweenSignAndWrite: f.betweenSignAndWrite,
		lostByLog: map[string]int{}, dupByLog: map[string]int{}, holesByLog: map[string]int{}}
	for code, sample := range s.res.ErrorSamples {
		o.gaveUpSample = code + ": " + sample
	}
	if end.Before(serving) {
		end = serving
	}
	o.recover = max(end.Sub(cleared), 0)
	fl := d.readFleet(t, tokenID)
	o.checkCerts(fl, before)
	o.duplicateRequests = d.duplicateRequests(t)
	o.checkLogs(t, logRows, fl)
	t.Logf("%s, %s: %d/%d booted in %.1fs (one boot: p50 %.0f ms, p99 %.0f ms, max %.0f ms); %s", f.name, kind, o.booted, n, s.res.ElapsedS,
		s.res.P50Ms, s.res.P99Ms, s.res.MaxMs, o.logSummary())
	return o
}
