package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/berth-dev/berth/internal/testutil/freeport"
)

// envTestConfig makes the test binary act as the entrypoint, with the
// image's directories replaced by the test's ("DATA|SOCKET|INITDIR").
const envTestConfig = "BERTH_TEST_ENTRYPOINT_DIRS"

func TestMain(m *testing.M) {
	if v := os.Getenv(envTestConfig); v != "" {
		dirs := strings.Split(v, "|")
		cfg := config{dataDir: dirs[0], socketDir: dirs[1], initDir: dirs[2], user: "postgres"}
		if err := run(cfg, os.Args[1:]); err != nil {
			logf("error: %v", err)
		}
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// pgBin is the directory of the installed server binaries; the image is
// built from the same ones.
func pgBin(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{"/usr/lib/postgresql/15/bin"} {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir
		}
	}
	t.Fatal("no PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin (tools/provision.sh installs them)")
	return ""
}

// instance is one image "container": a data directory, a socket
// directory and an init directory that outlive the entrypoint's runs.
type instance struct {
	t    *testing.T
	dir  string
	bin  string
	port int
}

func newInstance(t *testing.T) *instance {
	t.Helper()
	// Not t.TempDir: its parents are 0700, and the entrypoint drops to the
	// postgres user, who must reach the data directory.
	dir, err := os.MkdirTemp("", "berth-entrypoint-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "initdb.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &instance{t: t, dir: dir, bin: pgBin(t), port: freeport.Port(t)}
}

func (in *instance) data() string { return filepath.Join(in.dir, "data") }

func (in *instance) writeInit(name, content string) {
	in.t.Helper()
	if err := os.WriteFile(filepath.Join(in.dir, "initdb.d", name), []byte(content), 0o644); err != nil {
		in.t.Fatal(err)
	}
}

// entrypoint is one run of the entrypoint as a process, as docker starts it.
type entrypoint struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit, once done is closed
}

func (e *entrypoint) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stderr.Write(p)
}

func (e *entrypoint) log() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stderr.String()
}

func (in *instance) start(env []string, args ...string) *entrypoint {
	in.t.Helper()
	e := &entrypoint{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	e.cmd.Dir = in.dir // the postgres user cannot read the test's working directory
	e.cmd.Env = append([]string{
		envTestConfig + "=" + in.data() + "|" + filepath.Join(in.dir, "run") + "|" + filepath.Join(in.dir, "initdb.d"),
		"PATH=" + in.bin + ":/usr/bin:/bin",
		"LANG=C.UTF-8",
	}, env...)
	e.cmd.Stdout, e.cmd.Stderr = e, e
	if err := e.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	go func() { e.err = e.cmd.Wait(); close(e.done) }()
	in.t.Cleanup(func() {
		e.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-e.done:
		case <-time.After(time.Minute):
			e.cmd.Process.Kill()
		}
	})
	return e
}

// serverArgs are the arguments after "postgres": a TCP port of its own
// and the test's socket directory.
func (in *instance) serverArgs() []string {
	return []string{"-p", strconv.Itoa(in.port), "-k", filepath.Join(in.dir, "run"), "-c", "listen_addresses=127.0.0.1"}
}

func (in *instance) dsn(user, password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: fmt.Sprintf("127.0.0.1:%d", in.port),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// connect waits until the server accepts user over TCP, as the compose
// healthcheck does, or fails when the entrypoint exits first.
func (in *instance) connect(e *entrypoint, user, password, db string) *pgx.Conn {
	in.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.Connect(ctx, in.dsn(user, password, db))
		cancel()
		if err == nil {
			in.t.Cleanup(func() { conn.Close(context.Background()) })
			return conn
		}
		select {
		case <-e.done:
			in.t.Fatalf("the entrypoint exited (%v) before the server accepted %s: %v\n%s", e.err, user, err, e.log())
		default:
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("the server did not accept %s within 2 minutes: %v\n%s", user, err, e.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends docker stop's signal (the image's STOPSIGNAL, fast shutdown)
// and waits for a clean exit.
func (in *instance) stop(e *entrypoint) {
	in.t.Helper()
	e.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-e.done:
		if e.err != nil {
			in.t.Fatalf("postgres exited with %v after SIGINT\n%s", e.err, e.log())
		}
	case <-time.After(time.Minute):
		in.t.Fatalf("postgres did not stop within a minute of SIGINT\n%s", e.log())
	}
}

func queryInt(t *testing.T, conn *pgx.Conn, sql string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// wantAuthFailure checks that the server refuses a password: it enforces
// authentication over TCP rather than trusting everyone.
func wantAuthFailure(t *testing.T, in *instance, user, password, db string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, in.dsn(user, password, db))
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("password %q for %s was accepted", password, user)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("password %q for %s: %v, want invalid_password (28P01)", password, user, err)
	}
}

func TestFirstStartThenRestart(t *testing.T) {
	in := newInstance(t)
	in.writeInit("01-schema.sql", "CREATE TABLE boots (n int); INSERT INTO boots VALUES (1);\n")
	in.writeInit("02-notes.txt", "not a script\n")
	// A password with characters a shell or a SQL string would mangle.
	const password = `s3 cr'et"$x`
	env := []string{"POSTGRES_USER=berth", "POSTGRES_PASSWORD=" + password, "POSTGRES_DB=berth db"}

	first := in.start(env, append([]string{"postgres"}, in.serverArgs()...)...)
	conn := in.connect(first, "berth", password, "berth db")
	if n := queryInt(t, conn, "SELECT count(*) FROM boots"); n != 1 {
		t.Fatalf("01-schema.sql ran %d times, want once", n)
	}
	var who, encoding string
	if err := conn.QueryRow(context.Background(), "SELECT current_user, pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()").Scan(&who, &encoding); err != nil {
		t.Fatal(err)
	}
	if who != "berth" || encoding != "UTF8" {
		t.Fatalf("connected as %q to a %s database, want berth and UTF8", who, encoding)
	}
	wantAuthFailure(t, in, "berth", "wrong", "berth db")
	for _, want := range []string{"initializing a new cluster", "running " + filepath.Join(in.dir, "initdb.d", "01-schema.sql"),
		"ignoring " + filepath.Join(in.dir, "initdb.d", "02-notes.txt"), "cluster ready"} {
		if !strings.Contains(first.log(), want) {
			t.Errorf("first start did not log %q:\n%s", want, first.log())
		}
	}
	if os.Getuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(in.data())
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; strconv.Itoa(int(uid)) != pg.Uid || fi.Mode().Perm() != 0o700 {
			t.Fatalf("data directory owned by uid %d with mode %v, want postgres (%s) and 0700", uid, fi.Mode().Perm(), pg.Uid)
		}
	}
	conn.Close(context.Background())
	in.stop(first)

	// A later start finds the cluster: it neither initialises again (so a
	// changed POSTGRES_PASSWORD does not apply) nor reruns the scripts.
	// Options without a command mean postgres with those options.
	env[1] = "POSTGRES_PASSWORD=changed"
	second := in.start(env, in.serverArgs()...)
	conn = in.connect(second, "berth", password, "berth db")
	if n := queryInt(t, conn, "SELECT count(*) FROM boots"); n != 1 {
		t.Fatalf("after a restart 01-schema.sql has run %d times, want once", n)
	}
	wantAuthFailure(t, in, "berth", "changed", "berth db")
	if strings.Contains(second.log(), "[entrypoint]") {
		t.Fatalf("the second start initialised again:\n%s", second.log())
	}
	in.stop(second)
}

func TestTrustWithoutPassword(t *testing.T) {
	in := newInstance(t)
	e := in.start([]string{"POSTGRES_HOST_AUTH_METHOD=trust"}, append([]string{"postgres"}, in.serverArgs()...)...)
	// User and database default to postgres.
	conn := in.connect(e, "postgres", "anything", "postgres")
	if n := queryInt(t, conn, "SELECT 1"); n != 1 {
		t.Fatalf("SELECT 1 = %d", n)
	}
	conn.Close(context.Background())
	in.stop(e)
}

func TestRefusesToInitialiseWithoutPassword(t *testing.T) {
	in := newInstance(t)
	e := in.start([]string{"POSTGRES_USER=berth"}, append([]string{"postgres"}, in.serverArgs()...)...)
	select {
	case <-e.done:
	case <-time.After(time.Minute):
		t.Fatal("the entrypoint did not exit within a minute")
	}
	var exit *exec.ExitError
	if !errors.As(e.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1", e.err)
	}
	want := "[entrypoint] error: the database is uninitialized and POSTGRES_PASSWORD is not set " +
		"(set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one)\n"
	if !strings.HasSuffix(e.log(), want) || strings.Count(e.log(), "\n") != 1 {
		t.Fatalf("stderr %q, want one line ending %q", e.log(), want)
	}
	if _, err := os.Stat(filepath.Join(in.data(), "PG_VERSION")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused start left a cluster behind: %v", err)
	}
}

func TestOtherCommandsRunAsGiven(t *testing.T) {
	in := newInstance(t)
	e := in.start(nil, "sh", "-c", `echo "args $0 $1"`, "a", "b")
	select {
	case <-e.done:
		if e.err != nil {
			t.Fatalf("sh exited with %v: %s", e.err, e.log())
		}
	case <-time.After(time.Minute):
		t.Fatal("sh did not exit within a minute")
	}
	if got := e.log(); got != "args a b\n" {
		t.Fatalf("output %q, want %q", got, "args a b\n")
	}
	if _, err := os.Stat(in.data()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a command other than postgres touched the data directory: %v", err)
	}
}
