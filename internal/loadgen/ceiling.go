package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
)

// ceilingServerEnv, when set (to a PKI directory), makes the process the
// bare TLS server of the ceiling measurement: see MaybeCeilingServer.
const ceilingServerEnv = "BERTH_LOADGEN_CEILING_SERVER"

// DefaultCeilingDuration is how long Ceiling measures unless told.
const DefaultCeilingDuration = 10 * time.Second

// ceilingWarmup is left out of the count: connections, goroutines and the
// child's first scheduling.
const ceilingWarmup = 500 * time.Millisecond

// CheckCeilingDuration refuses a ceiling's duration that would measure
// nothing; 0 stands for the default.
func CheckCeilingDuration(d time.Duration) error {
	switch {
	case d < 0:
		return errors.New("must not be negative")
	case d > 0 && d <= ceilingWarmup:
		return fmt.Errorf("is too short: a ceiling leaves out its first %v", ceilingWarmup)
	}
	return nil
}

// CeilingConfig configures Ceiling.
type CeilingConfig struct {
	// Duration of the measurement. Default DefaultCeilingDuration.
	Duration time.Duration
	// Parallel is how many handshakes are in flight. Default the number of
	// cores.
	Parallel int
	// TempDir holds the throwaway PKI. Default the system's.
	TempDir string
	// Log receives progress. Default discards it.
	Log *slog.Logger
}

// CeilingResult is what Ceiling measured; printed with -o json.
type CeilingResult struct {
	Scenario       string         `json:"scenario"`
	HandshakesPerS float64        `json:"handshakes_per_s"`
	Handshakes     int64          `json:"handshakes"`
	Parallel       int            `json:"parallel"`
	Cores          int            `json:"cores"`
	ElapsedS       float64        `json:"elapsed_s"`
	P50Ms          float64        `json:"p50_ms"`
	P99Ms          float64        `json:"p99_ms"`
	MaxMs          float64        `json:"max_ms"`
	Errors         map[string]int `json:"errors"`
	// KeyExchange is the negotiated TLS key exchange, as berth's own
	// servers and agents negotiate it (Go's defaults).
	KeyExchange string `json:"key_exchange"`
	// CPUMsPerHandshake is the CPU time both processes spent per
	// handshake, and CPUBoundPerS the handshakes per second that would
	// make if every core did nothing else; with one handshake in flight
	// per core the cores also wait on round trips, so the measured rate
	// stays below it. Omitted where /proc does not tell.
	CPUMsPerHandshake float64 `json:"cpu_ms_per_handshake,omitempty"`
	CPUBoundPerS      float64 `json:"cpu_bound_handshakes_per_s,omitempty"`
	// ProbeFor names the result (as the report names it: register_dev,
	// storm_restarted) whose ceiling this is, measured just before it;
	// empty for the run's own ceiling. This machine's speed drifts by a
	// third within minutes, so a scenario is also judged against the
	// ceiling measured beside it (see Report).
	ProbeFor string `json:"probe_for,omitempty"`
}

// Ceiling measures full TLS 1.3 mutual-TLS handshakes per second between
// this process and a bare server process (this binary, started again as
// one; see MaybeCeilingServer), with a P-256 chain made by berth's own
// berthd init: the server presents the registration service's chain and
// verifies the client's chain as berth's servers do; the client presents
// an intermediate-signed P-256 certificate and verifies the server's. No
// session is resumed. Each handshake ends with one byte from the server,
// so that it counts only once the server has verified the client.
func Ceiling(ctx context.Context, c CeilingConfig) (*CeilingResult, error) {
	if err := CheckCeilingDuration(c.Duration); err != nil {
		return nil, fmt.Errorf("ceiling duration %v %w", c.Duration, err)
	}
	if c.Duration == 0 {
		c.Duration = DefaultCeilingDuration
	}
	if c.Parallel <= 0 {
		c.Parallel = runtime.NumCPU()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp(c.TempDir, "berth-loadgen-ceiling-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	layout, err := pki.Init(ctx, pki.InitConfig{Dir: dir})
	if err != nil {
		return nil, fmt.Errorf("make the ceiling's PKI: %w", err)
	}
	client, err := layout.AdminCertificate()
	if err != nil {
		return nil, err
	}
	srv, err := startChild(ceilingServerEnv, layout.Dir)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	addr, childPID := srv.addr, srv.pid
	tlsCfg := mtls.ExpectServer(mtls.ClientConfig(client, layout.RootPool()), layout.TrustDomain, mtls.ServiceRegistration)
	tlsCfg.ServerName = "127.0.0.1"
	creds := credentials.NewTLS(tlsCfg)

	c.Log.Info("ceiling: full mTLS handshakes against a bare server process", "parallel", c.Parallel, "duration", c.Duration)
	var (
		count   atomic.Int64
		mu      sync.Mutex
		lat     []time.Duration
		errs    = newTally()
		kex     atomic.Value
		wg      sync.WaitGroup
		started = time.Now()
		from    = started.Add(ceilingWarmup)
		until   = started.Add(c.Duration)
	)
	cpu := make(chan [2]time.Duration, 1) // at from and at until
	go func() {
		time.Sleep(time.Until(from))
		a := cpuTime(0) + cpuTime(childPID)
		time.Sleep(time.Until(until))
		cpu <- [2]time.Duration{a, cpuTime(0) + cpuTime(childPID)}
	}()
	for range c.Parallel {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(until) && ctx.Err() == nil {
				t := time.Now()
				curve, err := handshake(ctx, addr, creds)
				d := time.Since(t)
				if !t.After(from) {
					continue
				}
				if err != nil {
					errs.add(err)
					continue
				}
				kex.Store(curve)
				count.Add(1)
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	elapsed := time.Since(from)
	l := summarize(lat)
	counts, _ := errs.snapshot()
	res := &CeilingResult{
		Scenario: ScenarioCeiling, Handshakes: count.Load(), Parallel: c.Parallel, Cores: runtime.NumCPU(),
		ElapsedS: round(elapsed.Seconds(), 3), P50Ms: l.P50, P99Ms: l.P99, MaxMs: l.Max, Errors: counts,
	}
	if s, ok := kex.Load().(string); ok {
		res.KeyExchange = s
	}
	if elapsed > 0 {
		res.HandshakesPerS = round(float64(res.Handshakes)/elapsed.Seconds(), 1)
	}
	if used := <-cpu; used[0] > 0 && used[1] > used[0] && res.Handshakes > 0 {
		per := (used[1] - used[0]) / time.Duration(res.Handshakes)
		res.CPUMsPerHandshake = round(float64(per)/float64(time.Millisecond), 3)
		res.CPUBoundPerS = round(float64(res.Cores)*float64(time.Second)/float64(per), 1)
	}
	return res, nil
}

// cpuTime is the user and system CPU time of process pid (0: this one)
// from /proc; 0 when unknown.
func cpuTime(pid int) time.Duration {
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	st, ok := readStat(path)
	if !ok {
		return 0
	}
	return st.utime + st.stime
}

// handshake makes one connection, a full handshake through gRPC's TLS
// credentials (as every berth client does, ALPN included), waits for the
// server's byte and closes. It returns the key exchange used.
func handshake(ctx context.Context, addr string, creds credentials.TransportCredentials) (string, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, info, err := creds.ClientHandshake(hctx, addr, raw)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return "", fmt.Errorf("server did not confirm the handshake: %w", err)
	}
	if ti, ok := info.(credentials.TLSInfo); ok {
		return ti.State.CurveID.String(), nil
	}
	return "", nil
}

// child is this binary started again as a bare server (the ceiling's or
// a floor's): it prints "listening ADDR" first and stops when its stdin
// closes, so that it cannot outlive this process. A floor's server also
// answers each line written to its stdin with one line (floorCommand).
type child struct {
	addr string
	pid  int
	in   io.WriteCloser
	out  *bufio.Reader
	cmd  *exec.Cmd
}

// startChild starts this binary again with env set to value.
func startChild(env, value string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to start its server: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), env+"="+value)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the server process: %w", err)
	}
	c := &child{pid: cmd.Process.Pid, in: stdin, out: bufio.NewReader(stdout), cmd: cmd}
	line, err := c.out.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		c.stop()
		return nil, fmt.Errorf("the server process did not start (said %q): %v", line, err)
	}
	c.addr = addr
	return c, nil
}

// ask writes one line to the child and returns its one-line answer.
func (c *child) ask(line string) (string, error) {
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		return "", err
	}
	answer, err := c.out.ReadString('\n')
	return strings.TrimSpace(answer), err
}

// stop closes the child's stdin and waits for it to end, killing it after
// 5 s.
func (c *child) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// MaybeCeilingServer makes this process the ceiling's server, or a
// floor's (see floorServer), and exits, when it was started as one;
// otherwise it returns at once. Call it first in main (and in TestMain of
// tests that run Ceiling or a floor).
func MaybeCeilingServer() {
	if v := os.Getenv(floorServerEnv); v != "" {
		if err := floorServer(v, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "berth-loadgen floor server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir := os.Getenv(ceilingServerEnv)
	if dir == "" {
		return
	}
	if err := ceilingServer(dir, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "berth-loadgen ceiling server:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// ceilingServer serves bare mutual-TLS handshakes until stdin closes: the
// registration service's chain and berth's server credentials, which
// verify the client's chain against the roots; no session tickets. Each
// connection gets one byte once its handshake is done.
func ceilingServer(pkiDir string, stdin io.Reader, stdout io.Writer) error {
	layout, err := pki.Load(pkiDir)
	if err != nil {
		return err
	}
	cert, err := layout.ServiceCertificate(pki.ServiceRegistration)
	if err != nil {
		return err
	}
	cfg := mtls.ServerConfig(cert)
	cfg.SessionTicketsDisabled = true
	creds := mtls.NewServerCredentials(credentials.NewTLS(cfg), layout.TrustDomain, layout.RootPool())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer lis.Close()
	if _, err := fmt.Fprintf(stdout, "listening %s\n", lis.Addr()); err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		lis.Close()
	}()
	for {
		raw, err := lis.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer raw.Close()
			_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
			conn, info, err := creds.ServerHandshake(raw)
			if err != nil {
				return
			}
			defer conn.Close()
			if ai, ok := info.(mtls.AuthInfo); !ok || ai.Err != nil {
				return // a client chain that did not verify gets no byte
			}
			_, _ = conn.Write([]byte{1})
		}()
	}
}
