// Package tpmtest runs real software TPMs for tests: Debian's swtpm, one
// process per TPM, each with its own state directory and loopback ports,
// speaking the Microsoft simulator protocol that internal/tpm's mssim://
// devices talk.
//
// swtpm is a required test dependency (apt packages swtpm and
// swtpm-tools): when it is missing the test fails, it never skips, because
// a TPM test that does not run proves nothing.
//
// A "reboot" is Restart: the process stops and starts again on the same
// state directory, so the TPM keeps its seeds, NV and persistent keys and
// loses its PCRs, sessions and loaded objects, as a machine's TPM does on a
// power cycle.
package tpmtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil/freeport"
)

// startDeadline bounds how long swtpm may take to listen. It is generous:
// the machine running the tests may be busy.
const startDeadline = 30 * time.Second

// Sim is a running swtpm.
type Sim struct {
	dir   string // TPM state
	log   string
	port  int // command port; the control port is port+1
	flags string
	proc  *proc
}

// Option changes how a Sim runs.
type Option func(*Sim)

// WithoutStartup leaves the TPM powered on but without TPM2_Startup, as a
// platform leaves it before its firmware runs; the first client must send
// TPM2_Startup.
func WithoutStartup() Option { return func(s *Sim) { s.flags = "not-need-init" } }

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // from Wait, once done is closed
}

// Require fails the test unless the named swtpm programs are installed.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed: the TPM tests need Debian's swtpm and swtpm-tools (apt-get install -y swtpm swtpm-tools): %v", p, err)
		}
	}
}

// Start runs a fresh, unprovisioned swtpm: it has its seeds but no
// persistent EK and no EK certificate. It is stopped when the test ends.
func Start(t testing.TB, opts ...Option) *Sim {
	t.Helper()
	return StartDir(t, stateDir(t), opts...)
}

// StartDir runs swtpm on an existing state directory, such as one
// Provision made.
func StartDir(t testing.TB, dir string, opts ...Option) *Sim {
	t.Helper()
	Require(t, "swtpm")
	s := &Sim{dir: dir, log: filepath.Join(dir, "swtpm.log"), flags: "not-need-init,startup-clear"}
	for _, o := range opts {
		o(s)
	}
	var err error
	// Free ports are found by binding and releasing them, so another
	// process can take one before swtpm binds it; then swtpm exits and a
	// new pair is tried.
	for range 5 {
		if s.port, err = freeport.Find(2); err != nil { // the server and control ports
			continue
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("stop swtpm: %v", err)
		}
	})
	return s
}

// Device is the TPM's address for tpm.Config.Device.
func (s *Sim) Device() string {
	return "mssim://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// StateDir is the TPM's state directory.
func (s *Sim) StateDir() string { return s.dir }

// Restart power-cycles the TPM: the same state, a new process.
// Connections to it must be closed first.
func (s *Sim) Restart(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("stop swtpm: %v", err)
	}
	if err := s.start(); err != nil {
		t.Fatalf("restart swtpm: %v", err)
	}
}

func (s *Sim) start() error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+s.dir,
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.port+1),
		"--flags", s.flags)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run swtpm: %w", err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	if err := waitListening(p, s.port); err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		out, _ := os.ReadFile(s.log)
		return fmt.Errorf("%w; swtpm log:\n%s", err, out)
	}
	s.proc = p
	return nil
}

// waitListening waits until swtpm accepts on its command port, or exits.
func waitListening(p *proc, port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startDeadline)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		select {
		case <-p.done:
			return fmt.Errorf("swtpm exited before listening on %s: %v", addr, p.err)
		case <-time.After(wait):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("swtpm did not listen on %s within %v", addr, startDeadline)
		}
	}
}

// stop ends swtpm with SIGTERM, the way a machine powers off.
func (s *Sim) stop() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(startDeadline):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("swtpm ignored SIGTERM for %v and was killed", startDeadline)
	}
}

func stateDir(t testing.TB) string {
	dir := filepath.Join(t.TempDir(), "tpm")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
