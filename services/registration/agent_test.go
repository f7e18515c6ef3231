package registration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// retryWatch is a log handler that counts the agent's retries of the
// registration server, so that a test can act once the agent is waiting
// rather than after a fixed sleep.
type retryWatch struct {
	mu      sync.Mutex
	n       int
	reached chan struct{}
	at      int
	buf     bytes.Buffer
}

func newRetryWatch(at int) *retryWatch { return &retryWatch{reached: make(chan struct{}), at: at} }

func (w *retryWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *retryWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *retryWatch) WithGroup(string) slog.Handler            { return w }
func (w *retryWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		w.buf.WriteString(" " + a.String())
		return true
	})
	w.buf.WriteString("\n")
	if strings.Contains(r.Message, "retrying") {
		w.n++
		if w.n == w.at {
			close(w.reached)
		}
	}
	return nil
}

func (w *retryWatch) logs() string { w.mu.Lock(); defer w.mu.Unlock(); return w.buf.String() }

// wait waits until the agent has retried at least `at` times.
func (w *retryWatch) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.reached:
	case <-time.After(time.Minute):
		t.Fatalf("the agent did not retry %d times within a minute; logs:\n%s", w.at, w.logs())
	}
}

// bootAgent runs a real berth-agent --once -o json against server (the
// env's address or a proxy in front of it) in the background; the result
// comes on the returned channel.
func (e *env) bootAgent(t *testing.T, server, token, uuid string, watch *retryWatch) (<-chan error, *bytes.Buffer) {
	t.Helper()
	seed := make([]byte, 32)
	copy(seed, uuid)
	src, err := keys.NewSeed(seed, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	a, err := agent.New(agent.Config{
		Server: server, CAHash: e.layout.CAHash(), Token: token, Keys: src, IdentitySource: keys.AssuranceSeedFile,
		CertDir: t.TempDir(), Root: t.TempDir(), CmdlineFile: t.TempDir() + "/none",
		Wait: 2 * time.Minute, Once: true, Output: agent.OutputJSON, NoHeartbeat: true,
		Facts:  agent.FactOverrides{HardwareUUID: uuid, Hostname: "node-x", Serial: "SN-X", MACs: []string{"52:54:00:00:00:01"}},
		Stdout: &stdout, Logger: slog.New(watch),
		// Short waits: the test is about what is retried, not how long.
		Backoff: agent.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}, AttemptTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	done := make(chan error, 1)
	go func() { defer cancel(); done <- a.Run(ctx) }()
	return done, &stdout
}

// result waits for the agent and decodes its JSON result.
func result(t *testing.T, done <-chan error, stdout *bytes.Buffer, watch *retryWatch) (agent.Result, error) {
	t.Helper()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the agent did not finish; logs:\n%s", watch.logs())
	}
	var r agent.Result
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		t.Fatalf("agent output %q: %v (Run: %v); logs:\n%s", stdout.String(), jerr, err, watch.logs())
	}
	return r, err
}

// TestAgentWaitsOutDatabase: an agent that boots while the registration
// service's PostgreSQL is down retries the Unavailable answers and
// registers, with one certificate, once the database is back.
func TestAgentWaitsOutDatabase(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	e := newEnv(t, postgresAt(cluster.DSN()))
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
	cluster.Stop(t)

	watch := newRetryWatch(3)
	done, stdout := e.bootAgent(t, e.addr, tok, "4c4c4544-0042-3510-8051-b2c04f4e4e01", watch)
	watch.wait(t)
	if !strings.Contains(watch.logs(), "registration server cannot serve now; retrying") {
		t.Fatalf("the agent's retries do not say why; logs:\n%s", watch.logs())
	}
	cluster.Start(t)

	r, err := result(t, done, stdout, watch)
	if err != nil {
		t.Fatalf("the agent gave up: %v; logs:\n%s", err, watch.logs())
	}
	if r.Action != agent.ActionRegistered || r.Status != "approved" || r.CertSerial == "" {
		t.Fatalf("result = %+v, want registered and approved with a certificate", r)
	}
	n, err := e.reg.GetNode(context.Background(), r.NodeID)
	if err != nil || n.CertificatesIssued != 1 {
		t.Fatalf("node %s: %+v, %v; want one certificate issued", r.NodeID, n, err)
	}
}

// proxy forwards TCP connections to a server; a test closes its listener
// and opens it again on the same address, as a registration service that
// restarts or a load balancer that flaps.
type proxy struct {
	addr, to string
	mu       sync.Mutex
	lis      net.Listener
	conns    []net.Conn
}

func newProxy(t *testing.T, to string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: lis.Addr().String(), to: to}
	lis.Close() // down until up is called
	t.Cleanup(p.down)
	return p
}

// up listens again on the proxy's address.
func (p *proxy) up(t *testing.T) {
	t.Helper()
	lis, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
}

// down closes the listener and cuts every connection.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestAgentWaitsOutListener: a registration service whose listener is
// closed (connections refused) and then opens: the agent keeps retrying
// and registers once it is there.
func TestAgentWaitsOutListener(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
	p := newProxy(t, e.addr)

	watch := newRetryWatch(2)
	done, stdout := e.bootAgent(t, p.addr, tok, "4c4c4544-0042-3510-8051-b2c04f4e4e02", watch)
	watch.wait(t)
	p.up(t)

	r, err := result(t, done, stdout, watch)
	if err != nil {
		t.Fatalf("the agent gave up: %v; logs:\n%s", err, watch.logs())
	}
	if r.Action != agent.ActionRegistered || r.Status != "approved" {
		t.Fatalf("result = %+v", r)
	}
	if !strings.Contains(watch.logs(), "connection refused") {
		t.Errorf("logs do not show the refused connections:\n%s", watch.logs())
	}
}

// TestAgentStopsOnFinalAnswer: a real answer that waiting cannot change
// (an unknown token, a used-up token) ends the boot at once, with the
// reason on the error and as action "refused" in the JSON result.
func TestAgentStopsOnFinalAnswer(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	used := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Uses: 1})
	first := e.newNode("4c4c4544-0042-3510-8051-b2c04f4e4e04")
	if _, err := first.client().Register(context.Background(), first.registerRequest(t, used)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, token, want string
		wantExit          int
	}{
		{"unknown token", "abcdefgh.abcdefghijklmnopqrstuvwxyz", "registration denied: bootstrap token is invalid", agent.ExitDenied},
		{"used-up token", used, "register: bootstrap token has no uses left (ResourceExhausted)", agent.ExitFailure},
	} {
		t.Run(tt.name, func(t *testing.T) {
			watch := newRetryWatch(1)
			done, stdout := e.bootAgent(t, e.addr, tt.token, "4c4c4544-0042-3510-8051-b2c04f4e4e05", watch)
			r, err := result(t, done, stdout, watch)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want %q", err, tt.want)
			}
			if got := agent.ExitCode(err); got != tt.wantExit {
				t.Errorf("exit status %d, want %d", got, tt.wantExit)
			}
			if r.Action != agent.ActionRefused || r.Reason != err.Error() {
				t.Errorf("result = %+v, want action refused with the reason", r)
			}
			select {
			case <-watch.reached:
				t.Errorf("the agent retried a final answer; logs:\n%s", watch.logs())
			default:
			}
		})
	}
}
