// Package flood measures what an unauthenticated flood costs a real
// berthd: thousands of TLS connections with self-signed client
// certificates (which every listener must accept, since booting nodes hold
// nothing else), each opening header-only gRPC calls whose message never
// comes. It reports the peak resident memory of the berthd dev process
// (VmHWM) and fails above 256 MiB.
//
//	go test -run '^$' -bench . -benchtime 1x ./tests/flood/
//
// Settings (environment):
//
//	BERTH_FLOOD_BERTHD   a berthd binary to measure instead of one built from
//	                     this tree (an older build, for a before/after figure)
//	BERTH_FLOOD_ARGS     extra berthd dev flags, space-separated
//	                     (e.g. "--max-unauthenticated 0" to see a limit's effect)
//	BERTH_FLOOD_SOURCES  loopback source addresses the flood comes from (64)
//	BERTH_FLOOD_SCENARIOS floods to run, as CONNSxSTREAMS,... (200x500,4000x500)
//	BERTH_FLOOD_METHOD   the call the flood opens (a node's Resume; an admin
//	                     method to meet the authorisation check instead)
//
// It is a benchmark rather than a test: it opens thousands of sockets and
// takes tens of seconds on two cores.
package flood

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/testutil/h2raw"
)

// budgetMiB is the peak resident memory berthd dev may reach under the
// flood with its default limits.
const budgetMiB = 256

// defaultMethod is a call the self-signed key may make, so the limits on
// calls in flight, not the authorisation check, are what the flood meets.
const defaultMethod = "/berth.v1.RegistrationService/Resume"

// berthd returns the binary to measure, building it into a directory that
// lasts as long as b.
func berthd(b *testing.B) (path string, ours bool) {
	b.Helper()
	if p := os.Getenv("BERTH_FLOOD_BERTHD"); p != "" {
		return p, false
	}
	path = filepath.Join(b.TempDir(), "berthd")
	cmd := exec.Command("go", "build", "-o", path, "../../cmd/berthd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build berthd: %v\n%s", err, out)
	}
	return path, true
}

func BenchmarkUnauthenticatedFlood(b *testing.B) {
	sources := 64
	if s := os.Getenv("BERTH_FLOOD_SOURCES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 250 {
			b.Fatalf("BERTH_FLOOD_SOURCES=%q: want 1 to 250", s)
		}
		sources = n
	}
	bin, ours := berthd(b)
	for _, sc := range scenarios(b) {
		b.Run(fmt.Sprintf("conns=%d/streams=%d", sc.conns, sc.streams), func(b *testing.B) {
			for range b.N {
				r := run(b, bin, sc.conns, sc.streams, sources)
				b.ReportMetric(r.peakMiB, "peak-MiB")
				b.ReportMetric(r.idleMiB, "idle-MiB")
				b.ReportMetric(float64(r.established), "conns-established")
				b.ReportMetric(float64(r.answered), "calls-refused")
				b.Logf("%s: %d connections from %d sources, %d established, %d refused or timed out; %d calls sent, %d refused at once; "+
					"peak RSS %.1f MiB (idle %.1f MiB); served an admin afterwards: %v",
					b.Name(), sc.conns, sources, r.established, r.failed, r.sent, r.answered, r.peakMiB, r.idleMiB, r.healthy)
				if ours && os.Getenv("BERTH_FLOOD_ARGS") == "" && r.peakMiB >= budgetMiB {
					b.Errorf("peak RSS %.1f MiB, over the budget of %d MiB", r.peakMiB, budgetMiB)
				}
				if ours && !r.healthy {
					b.Error("berthd did not serve an admin once the flood was over")
				}
			}
		})
	}
}

type scenario struct{ conns, streams int }

// scenarios are the floods to run: BERTH_FLOOD_SCENARIOS ("200x500,4000x500")
// or these.
func scenarios(b *testing.B) []scenario {
	spec := os.Getenv("BERTH_FLOOD_SCENARIOS")
	if spec == "" {
		return []scenario{
			{200, 500},  // the flood that took berthd dev to 1.4 GiB
			{4000, 500}, // thousands of connections
		}
	}
	var out []scenario
	for _, f := range strings.Split(spec, ",") {
		var sc scenario
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%dx%d", &sc.conns, &sc.streams); err != nil || sc.conns < 1 || sc.streams < 0 {
			b.Fatalf("BERTH_FLOOD_SCENARIOS: %q is not CONNSxSTREAMS", f)
		}
		out = append(out, sc)
	}
	return out
}

// result is one flood's figures.
type result struct {
	peakMiB, idleMiB                    float64
	established, failed, sent, answered int64
	healthy                             bool
}

// server is a running berthd dev.
type server struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	done chan struct{}
}

func startDev(b *testing.B, bin string) *server {
	b.Helper()
	dir := b.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := []string{"dev", "--data-dir", dir, "--listen", addr, "--metrics-listen", "off", "--log-level", "error"}
	args = append(args, strings.Fields(os.Getenv("BERTH_FLOOD_ARGS"))...)
	cmd := exec.Command(bin, args...)
	// The flood must not inherit a berthctl environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BERTH_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &server{cmd: cmd, addr: addr, dir: dir, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			if !seen && strings.HasPrefix(sc.Text(), "berth dev is serving on") {
				seen = true
				close(ready)
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() { cmd.Wait(); close(s.done) }()
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-s.done
		}
	})
	select {
	case <-ready:
	case <-s.done:
		b.Fatal("berthd dev exited before serving")
	case <-time.After(2 * time.Minute):
		b.Fatal("berthd dev did not start within 2 minutes")
	}
	return s
}

// memMiB reads a VmHWM or VmRSS line of the process.
func (s *server) memMiB(b *testing.B, field string) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("%s: %v", line, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("/proc/%d/status has no %s", s.cmd.Process.Pid, field)
	return 0
}

// run starts berthd dev, floods it, and measures.
func run(b *testing.B, bin string, conns, streams, sources int) result {
	b.Helper()
	s := startDev(b, bin)
	method := cmp.Or(os.Getenv("BERTH_FLOOD_METHOD"), defaultMethod)
	var r result
	r.idleMiB = s.memMiB(b, "VmRSS")

	certs := make([]tls.Certificate, sources)
	for i := range certs {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if certs[i], err = mtls.SelfSigned(key); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var (
		established, failed, sent, answered atomic.Int64
		mu                                  sync.Mutex
		open                                []*h2raw.Conn
		wg                                  sync.WaitGroup
	)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := i % sources
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(src+1))}}
			c, err := h2raw.Dial(ctx, d, s.addr, &tls.Config{
				Certificates: []tls.Certificate{certs[src]}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
			})
			if err != nil {
				failed.Add(1)
				return
			}
			established.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			go func() {
				for {
					f, err := c.ReadFrame()
					if err != nil {
						return
					}
					// A refused call gets its status, then a RST_STREAM
					// (its body never came); count the status.
					if _, _, ok := h2raw.Status(f); ok {
						answered.Add(1)
					}
				}
			}()
			for range streams {
				if _, err := c.OpenStream(method); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	// Let the server take in what was sent: until its answers stop coming
	// for two seconds, or a minute at most.
	last, quiet := answered.Load(), time.Now()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && time.Since(quiet) < 2*time.Second; {
		time.Sleep(100 * time.Millisecond)
		if n := answered.Load(); n != last {
			last, quiet = n, time.Now()
		}
	}
	b.StopTimer()
	r.peakMiB = s.memMiB(b, "VmHWM")
	r.established, r.failed, r.sent, r.answered = established.Load(), failed.Load(), sent.Load(), answered.Load()
	for _, c := range open {
		c.Close()
	}
	r.healthy = adminServed(s)
	return r
}

// adminServed reports whether an admin can make a call once the flood
// closed its connections: a TLS handshake with the admin certificate and
// a health check, retried for a while as the server winds down.
func adminServed(s *server) bool {
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.dir, "pki", "admin.crt"), filepath.Join(s.dir, "pki", "admin.key"))
	if err != nil {
		return false
	}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := h2raw.Dial(ctx, nil, s.addr, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		cancel()
		if err == nil {
			ok := healthCheck(c)
			c.Close()
			if ok {
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// healthCheck makes one grpc.health.v1.Health/Check call with an empty
// request and reads its status.
func healthCheck(c *h2raw.Conn) bool {
	id, err := c.OpenStream("/grpc.health.v1.Health/Check")
	if err != nil {
		return false
	}
	if err := c.WriteMessage(id, nil, true); err != nil {
		return false
	}
	c.TLS.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return false
		}
		if code, _, ok := h2raw.Status(f); ok && f.Header().StreamID == id {
			return code == "0"
		}
	}
}
