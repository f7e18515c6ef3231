package chaos

import (
	"context"
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
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/testutil/freeport"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// roles are started in this order; each runs as two replicas.
var roles = []string{pki.ServiceCA, pki.ServiceBundles, pki.ServiceHeartbeat, pki.ServiceRegistration}

const replicasPerRole = 2

// deployment is berth as an operator runs it: PostgreSQL, and two
// `berthd serve --role` processes per service behind a proxy each.
type deployment struct {
	t       *testing.T
	work    string
	pkiDir  string
	layout  *pki.Layout
	cluster *pgtest.Cluster
	dsn     string // berth's database, its tables on the small disk
	disk    *smallDisk
	proxies map[string]*proxy
	// replicas in start order: ca-1, ca-2, bundles-1, ...
	replicas []*replica

	admin map[string]*grpc.ClientConn // by service, through its proxy
}

// replica is one berthd serve process, restartable on the same address.
type replica struct {
	name, role, addr string
	args             []string
	log              string
	mu               sync.Mutex
	cmd              *exec.Cmd
	done             chan struct{}
	health           *grpc.ClientConn // straight to it, not through the proxy
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	d := &deployment{t: t, work: t.TempDir(), proxies: map[string]*proxy{}, admin: map[string]*grpc.ClientConn{}}
	d.pkiDir = filepath.Join(d.work, "pki")
	out, err := exec.Command(bin("berthd"), "init", "--dir", d.pkiDir).CombinedOutput()
	if err != nil {
		t.Fatalf("berthd init: %v\n%s", err, out)
	}
	if d.layout, err = pki.Load(d.pkiDir); err != nil {
		t.Fatal(err)
	}
	// The disk first, so that it is unmounted after the cluster stopped.
	d.disk = newSmallDisk(t, 128<<20)
	d.cluster = pgtest.NewCluster(t)
	d.dsn = d.createDatabase()

	addrs := map[string][]string{}
	for _, role := range roles {
		for range replicasPerRole {
			addrs[role] = append(addrs[role], freeport.Addr(t))
		}
		d.proxies[role] = newProxy(t, addrs[role])
	}
	for _, role := range roles {
		for i, addr := range addrs[role] {
			r := &replica{name: fmt.Sprintf("%s-%d", role, i+1), role: role, addr: addr,
				log: filepath.Join(d.work, fmt.Sprintf("%s-%d.log", role, i+1))}
			r.args = []string{"serve", "--role", role, "--pki-dir", filepath.Join(d.pkiDir, role), "--db", d.dsn,
				"--listen", addr, "--metrics-listen", "off", "--max-unauthenticated-per-source", "0", "--log-level", "info"}
			if role != pki.ServiceCA {
				r.args = append(r.args, "--ca-addr", d.proxies[pki.ServiceCA].addr())
			}
			if role == pki.ServiceRegistration {
				// Every simulated node registers from 127.0.0.1, and
				// registrations in flight count against the per-address
				// limit on failed token attempts: a fleet's worth of
				// them from one address would be slowed to one a minute.
				r.args = append(r.args, "--token-failure-burst", "1000000")
				// Each Resume counts as its node's first heartbeat,
				// handed to the heartbeat service through its proxy.
				r.args = append(r.args, "--bundles-addr", d.proxies[pki.ServiceBundles].addr(),
					"--heartbeat-addr", d.proxies[pki.ServiceHeartbeat].addr(),
					"--advertise-registration", d.proxies[pki.ServiceRegistration].addr(),
					"--advertise-bundles", d.proxies[pki.ServiceBundles].addr(),
					"--advertise-heartbeat", d.proxies[pki.ServiceHeartbeat].addr())
			}
			r.health = d.dial(addr, role)
			d.replicas = append(d.replicas, r)
			r.start(t)
		}
	}
	t.Cleanup(func() {
		for _, r := range d.replicas {
			r.stop()
		}
		if t.Failed() {
			for _, r := range d.replicas {
				b, _ := os.ReadFile(r.log)
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("%s log (end):\n%s", r.name, b)
			}
		}
	})
	for _, role := range roles {
		d.admin[role] = d.dial(d.proxies[role].addr(), role)
	}
	if _, err := d.waitServing(3 * time.Minute); err != nil {
		t.Fatal(err)
	}
	return d
}

// createDatabase makes berth's database with its tables on the small
// disk, so that filling the disk fills the database's.
func (d *deployment) createDatabase() string {
	t := d.t
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, d.cluster.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{
		"CREATE TABLESPACE chaos LOCATION '" + d.disk.dir + "'",
		"CREATE DATABASE berth TABLESPACE chaos",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	u, err := url.Parse(d.cluster.DSN())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/berth"
	return u.String()
}

// dial connects to addr as the admin, expecting the service role.
func (d *deployment) dial(addr, role string) *grpc.ClientConn {
	t := d.t
	cert, err := d.layout.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	cfg := mtls.ExpectServer(mtls.ClientConfig(cert, d.layout.RootPool()), d.layout.TrustDomain, role)
	cfg.ServerName = "127.0.0.1"
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (d *deployment) nodesAdmin() berthv1.NodeAdminServiceClient {
	return berthv1.NewNodeAdminServiceClient(d.admin[pki.ServiceRegistration])
}

func (d *deployment) caAdmin() berthv1.CertificateAuthorityServiceClient {
	return berthv1.NewCertificateAuthorityServiceClient(d.admin[pki.ServiceCA])
}

// waitServing waits until every replica answers SERVING and returns when
// that was.
func (d *deployment) waitServing(timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		var down []string
		for _, r := range d.replicas {
			if !r.serving() {
				down = append(down, r.name)
			}
		}
		if len(down) == 0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("replicas not SERVING after %v: %v", timeout, down)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *deployment) replica(name string) *replica {
	for _, r := range d.replicas {
		if r.name == name {
			return r
		}
	}
	d.t.Fatalf("no replica %s", name)
	return nil
}

func (r *replica) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin("berthd"), r.args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
}

// kill9 ends the replica the hard way and waits until it is gone.
func (r *replica) kill9() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (r *replica) stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// alive reports whether the process is running (it never exits on its own).
func (r *replica) alive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (r *replica) serving() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(r.health).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// smallDisk is a tmpfs of its own for the database's tables, which the
// test fills and frees.
type smallDisk struct {
	dir    string
	filler string
}

func newSmallDisk(t *testing.T, size int) *smallDisk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the disk-full fault mounts a tmpfs: run the chaos test as root (CI does)")
	}
	reapDisks()
	// Under os.TempDir, not t.TempDir: the postgres user must reach it.
	parent, err := os.MkdirTemp("", diskPrefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(parent, 0o755)
	if err := os.WriteFile(filepath.Join(parent, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size), "berth-chaos", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs for the disk-full fault: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// After the cluster is stopped (cleanups run in reverse).
		exec.Command("umount", "-l", dir).Run()
		os.RemoveAll(parent)
	})
	ts := filepath.Join(dir, "ts")
	if err := os.Mkdir(ts, 0o700); err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(ts, uid, gid); err != nil {
		t.Fatal(err)
	}
	return &smallDisk{dir: ts, filler: filepath.Join(dir, "filler")}
}

// diskPrefix names the small disks' directories, so that those of a test
// binary that was killed can be found and unmounted.
const diskPrefix = "berth-chaos-disk-"

// reapDisks unmounts and deletes the disks of test binaries that died
// without cleaning up (after their PostgreSQL cluster was reaped, which
// pgtest does before it starts one).
func reapDisks() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), diskPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		exec.Command("umount", "-l", filepath.Join(dir, "mnt")).Run()
		os.RemoveAll(dir)
	}
}

// fill writes until the disk has no byte left.
func (s *smallDisk) fill() error {
	f, err := os.OpenFile(s.filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for size := len(buf); size > 0; {
		if _, err := f.Write(buf[:size]); err != nil {
			size /= 2
		}
	}
	return nil
}

func (s *smallDisk) free() error { return os.Remove(s.filler) }
