package pgtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestNewDatabaseIsFreshAndIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if a == b {
		t.Fatalf("two databases share a DSN: %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, `CREATE TABLE t (x int)`); err != nil {
		t.Fatalf("create table: %v", err)
	}

	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil {
		t.Fatalf("count tables: %v", err)
	}
	if n != 0 {
		t.Errorf("new database has %d tables, want 0", n)
	}
}

func TestNewDatabaseParallel(t *testing.T) {
	for i := range 8 {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
			if err != nil {
				t.Fatalf("connect %d: %v", i, err)
			}
			conn.Close(ctx)
		})
	}
}

// TestUnreachableServerFails runs a test against a server that is not there,
// in a child process, and checks that it fails rather than skips.
func TestUnreachableServerFails(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		pgtest.NewDatabase(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnreachableServerFails$", "-test.v")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=1",
		pgtest.EnvDSN+"=postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child test passed against an unreachable server:\n%s", out)
	}
	if !strings.Contains(string(out), "--- FAIL") || strings.Contains(string(out), "--- SKIP") {
		t.Fatalf("child test did not fail cleanly:\n%s", out)
	}
	if !strings.Contains(string(out), "127.0.0.1") {
		t.Errorf("failure does not say which server:\n%s", out)
	}
}
