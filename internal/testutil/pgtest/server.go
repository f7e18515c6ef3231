package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/testutil/freeport"
)

// dirPrefix names throwaway cluster directories, so that clusters left behind
// by a test binary that crashed can be found and stopped.
const dirPrefix = "berth-pgtest-"

// server is a throwaway PostgreSQL cluster owned by this test binary.
type server struct {
	dir  string // holds data/, the log, the socket and owner.pid
	bin  string // directory of initdb, pg_ctl and postgres
	cred *syscall.Credential
	dsn  string
	opts string // the server options it was started with
}

func (s *server) data() string    { return filepath.Join(s.dir, "data") }
func (s *server) logFile() string { return filepath.Join(s.dir, "postgres.log") }

// startServer initialises and starts a cluster in a new temporary directory.
func startServer() (*server, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	reapOrphans(bin, cred)

	// os.MkdirTemp rather than t.TempDir: the test's temp dirs sit under
	// 0700 parents that the postgres user cannot traverse.
	dir, err := os.MkdirTemp("", dirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &server{dir: dir, bin: bin, cred: cred}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		s.remove()
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			s.remove()
			return nil, fmt.Errorf("start postgres: %w", err)
		}
	}
	if out, err := s.run("initdb", "-D", s.data(), "-A", "trust", "-U", "postgres",
		"--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		s.remove()
		return nil, fmt.Errorf("start postgres: initdb: %v\n%s", err, out)
	}

	// Another test binary may take the free port between our probe and the
	// server's bind, so a failed start is retried on a fresh port.
	var lastErr error
	for range 5 {
		port, err := freeport.Find(1) // the server may restart on it
		if err != nil {
			s.remove()
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "+
			"-c synchronous_commit=off -c full_page_writes=off -c max_connections=300", port, s.dir)
		out, err := s.run("pg_ctl", "-D", s.data(), "-l", s.logFile(), "-o", opts, "-w", "-t", "60", "start")
		if err == nil {
			s.opts = opts
			s.dsn = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
			return s, nil
		}
		lastErr = fmt.Errorf("pg_ctl start: %v\n%s\nserver log:\n%s", err, out, s.logTail())
		if !strings.Contains(s.logTail(), "could not bind") && !strings.Contains(s.logTail(), "in use") {
			break
		}
		// pg_ctl -w has already given up on this server; make sure it is gone
		// before retrying on another port.
		s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
	}
	s.remove()
	return nil, fmt.Errorf("start postgres: %w", lastErr)
}

// stop shuts the cluster down and deletes its files.
func (s *server) stop() error {
	out, err := s.run("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("stop postgres in %s: %v\n%s", s.dir, err, out)
	}
	return s.remove()
}

func (s *server) remove() error { return os.RemoveAll(s.dir) }

// run runs one of the server binaries as the cluster's owner.
func (s *server) run(name string, args ...string) ([]byte, error) {
	return runAs(s.cred, filepath.Join(s.bin, name), args...)
}

func runAs(cred *syscall.Credential, path string, args ...string) ([]byte, error) {
	cmd := exec.Command(path, args...)
	// The server binaries refuse to run as root, and the postgres user cannot
	// read root's working directory.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.Bytes(), err
}

// logTail returns the end of the server log, where the reason for a failure
// is.
func (s *server) logTail() string {
	b, err := os.ReadFile(s.logFile())
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// serverCredential returns the identity to run the server binaries as: the
// postgres user when running as root (initdb refuses root), else nil for the
// current user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("start postgres: running as root needs a postgres user to own the cluster: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("start postgres: uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("start postgres: gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// findBinaries returns the directory holding initdb and pg_ctl: the one on
// PATH if any (following symlinks, since Debian links only some binaries into
// PATH), else the newest /usr/lib/postgresql/*/bin.
func findBinaries() (string, error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(matches, func(i, j int) bool { return pgVersion(matches[i]) > pgVersion(matches[j]) })
	dirs = append(dirs, matches...)
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("start postgres: no initdb and pg_ctl on PATH or in /usr/lib/postgresql/*/bin; "+
		"install the PostgreSQL server or set %s", EnvDSN)
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// reapOrphans stops and deletes clusters whose test binary died without
// reaching the end of Run (a test timeout, a kill), so that crashed runs do
// not leave servers behind on a shared machine. Failures are ignored: this is
// housekeeping for someone else's cluster.
func reapOrphans(bin string, cred *syscall.Credential) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue // being created right now, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			runAs(cred, filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop")
		}
		os.RemoveAll(dir)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
