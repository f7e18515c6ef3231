package registration

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// wantUnavailable fails unless err is Unavailable with one of the public
// messages that say what is down.
func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.Unavailable {
		t.Fatalf("%s: %v, want Unavailable", what, err)
	}
	switch st.Message() {
	case rpcerr.MsgDatabaseUnavailable, rpcerr.MsgDependencyUnavailable, msgCAUnavailable, msgBundlesDown:
	default:
		t.Fatalf("%s: message %q does not say what is unavailable", what, st.Message())
	}
}

// TestPostgresStopped: with its PostgreSQL stopped (a real server, shut
// down at once) every node and admin call is answered Unavailable, never
// Internal; when the server is back the same calls succeed, with no
// restart of the service.
func TestPostgresStopped(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	e := newEnv(t, postgresAt(cluster.DSN()))
	ctx := context.Background()
	known := e.newNode(uuidA)
	creds := e.register(t, known, true)
	nodeConn := e.dial(tls.Certificate{Certificate: creds.GetCertificateChain(), PrivateKey: known.key})
	fresh := e.newNode("4c4c4544-0042-3510-8051-b2c04f4e4d33")
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
	admin := e.adminClient()
	calls := []struct {
		name string
		call func() error
	}{
		{"Register", func() error { _, err := fresh.client().Register(ctx, fresh.registerRequest(t, tok)); return err }},
		{"Resume", func() error { _, err := known.client().Resume(ctx, &berthv1.ResumeRequest{}); return err }},
		{"Renew", func() error { _, err := renew(nodeConn); return err }},
		{"GetNode", func() error {
			_, err := admin.GetNode(ctx, &berthv1.GetNodeRequest{Id: creds.GetNodeId()})
			return err
		}},
		{"ListNodes", func() error { _, err := admin.ListNodes(ctx, &berthv1.ListNodesRequest{}); return err }},
		{"CreateToken", func() error { _, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{}); return err }},
	}

	cluster.Stop(t)
	for _, c := range calls {
		wantUnavailable(t, c.name+" with the database stopped", c.call())
	}

	cluster.Start(t)
	// Each pool finds its broken connections on use and drops them; until
	// then a call may still be answered Unavailable, which agents retry.
	// Twenty tries outlast every pool's connections.
	for _, c := range calls {
		var err error
		for range 20 {
			if err = c.call(); status.Code(err) != codes.Unavailable {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s once the database is back: %v", c.name, err)
		}
	}
	key := fresh.identity(t).KeySHA256
	if n, err := e.reg.GetNodeByKey(ctx, key[:]); err != nil || n.Cert == nil || n.CertificatesIssued != 1 {
		t.Fatalf("the node registered after the outage: %+v, %v; want one certificate", n, err)
	}
}

// tmpfs mounts a small file system of size bytes for the test, so that
// the test can fill it up. The tests run as root here and in CI.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %d-byte tmpfs (the disk-full test needs root): %v\n%s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full, and returns
// its path: removing it frees the space.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
			}
			return path
		}
	}
}

// TestDiskFull: on a full disk (a real one: SQLite on a small tmpfs that
// the test fills) registrations are refused with Unavailable, never
// Internal, nothing half-written is left for the node to see, and once
// space is freed the refused nodes register on their next try, with
// exactly one certificate each.
func TestDiskFull(t *testing.T) {
	dir := tmpfs(t, 8<<20)
	e := newEnv(t, sqliteIn(dir))
	ctx := context.Background()
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Uses: 1000})
	// Registered before the disk fills: these must still resume.
	early := e.newNode("00000000-0000-4000-8000-0000000000a0")
	e.register(t, early, true)
	filler := fill(t, dir)

	// SQLite may still fit a few writes into pages the WAL already holds;
	// keep registering new nodes until the full disk shows.
	var refused []*node
	for i := range 200 {
		n := e.newNode(fmt.Sprintf("00000000-0000-4000-8000-%012d", 0x100+i))
		_, err := n.client().Register(ctx, n.registerRequest(t, tok))
		if err == nil {
			continue
		}
		wantUnavailable(t, "Register on a full disk", err)
		refused = append(refused, n)
		if len(refused) == 5 {
			break
		}
	}
	if len(refused) == 0 {
		t.Fatal("200 registrations fitted on a full 8 MiB disk")
	}
	// Reads still work: a known node resumes.
	if _, err := early.client().Resume(ctx, &berthv1.ResumeRequest{}); err != nil {
		t.Fatalf("Resume of a known node on a full disk: %v", err)
	}
	// A refused registration left nothing a node could take for a result:
	// no node, or one the next try completes.
	for _, n := range refused {
		key := n.identity(t).KeySHA256
		got, err := e.reg.GetNodeByKey(ctx, key[:])
		switch {
		case errors.Is(err, regstore.ErrNotFound):
		case err != nil:
			t.Fatalf("look up a refused node: %v", err)
		case got.Cert != nil:
			t.Fatalf("a refused Register left node %s with certificate %s", got.ID, got.Cert.Serial)
		}
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, n := range refused {
		resp, err := n.client().Register(ctx, n.registerRequest(t, tok))
		if err != nil {
			t.Fatalf("Register once space is free: %v", err)
		}
		got, err := e.reg.GetNode(ctx, resp.GetCredentials().GetNodeId())
		if err != nil || got.Cert == nil || got.CertificatesIssued != 1 || len(resp.GetCredentials().GetCertificateChain()) == 0 {
			t.Fatalf("node after the retry: %+v, %v; want exactly one certificate", got, err)
		}
	}
	for _, name := range []string{"registration.db", "ca.db", "bundles.db"} {
		if err := integrity(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s after the disk was full: %v", name, err)
		}
	}
}

// integrity runs SQLite's own consistency check on the database at path.
func integrity(path string) error {
	d, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer d.Close()
	var res string
	if err := d.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return errors.New(res)
	}
	return nil
}
