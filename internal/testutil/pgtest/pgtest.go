// Package pgtest gives tests fresh, empty databases on a real PostgreSQL
// server.
//
// With BERTH_TEST_POSTGRES_DSN set, databases are created on that server.
// Otherwise the first NewDatabase call starts a throwaway cluster from the
// installed server binaries, private to the test binary, and Run stops it when
// the tests are done. A server that cannot be started or reached fails the
// test: a storage test that silently skips proves nothing.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable holding the DSN of an existing server
// to use instead of a throwaway cluster. Its role must be allowed to CREATE
// DATABASE.
const EnvDSN = "BERTH_TEST_POSTGRES_DSN"

// harness is per test binary because a test binary is the unit that owns a
// throwaway cluster: Run, called once from TestMain, is the only place that
// knows when every test is over. That is why this one piece of state is
// package-level.
var harness struct {
	mu      sync.Mutex
	running bool // inside Run
	srv     *server
	started bool
	dsn     string // of the maintenance database, "postgres"
	err     error
}

// Run runs the tests and then stops the throwaway cluster, if one was started.
// It returns the exit code for os.Exit; a cluster that fails to stop turns a
// pass into a failure, since it would leak a server.
func Run(m *testing.M) int {
	harness.mu.Lock()
	harness.running = true
	harness.mu.Unlock()

	code := m.Run()

	harness.mu.Lock()
	defer harness.mu.Unlock()
	harness.running = false
	if harness.srv != nil {
		if err := harness.srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		harness.srv = nil
	}
	return code
}

// base returns the DSN of the server's maintenance database, starting the
// throwaway cluster on first use.
func base() (string, error) {
	harness.mu.Lock()
	defer harness.mu.Unlock()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn, nil
	}
	if !harness.running {
		// Without Run nobody would stop the cluster and it would outlive the
		// test binary.
		return "", fmt.Errorf("call pgtest.Run from TestMain before NewDatabase, or set %s", EnvDSN)
	}
	if !harness.started {
		harness.started = true
		harness.srv, harness.err = startServer()
		if harness.err == nil {
			harness.dsn = harness.srv.dsn
		}
	}
	return harness.dsn, harness.err
}

// NewDatabase creates a fresh, empty database with a random name and returns
// its DSN. The database is dropped when the test ends; close every connection
// to it in an earlier Cleanup (Cleanups run last-registered first, so a store
// opened after NewDatabase is closed before the drop).
func NewDatabase(t testing.TB) string {
	t.Helper()
	dsn, err := base()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	var b [8]byte
	rand.Read(b[:])
	name := "berth_test_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := admin(ctx, dsn, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v%s", err, serverLog())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE ends connections a failed test left open.
		if err := admin(ctx, dsn, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	out, err := withDatabase(dsn, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return out
}

// admin runs one statement on the maintenance database. CREATE and DROP
// DATABASE cannot run inside a transaction, so this uses a plain connection.
func admin(ctx context.Context, dsn, stmt string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, stmt)
	return err
}

// withDatabase returns dsn pointing at database name instead, for both DSN
// forms pgx accepts.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", EnvDSN, err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In keyword/value form a later keyword overrides an earlier one.
	return dsn + " dbname=" + name, nil
}

// serverLog returns the tail of the throwaway server's log, to explain why a
// database could not be created.
func serverLog() string {
	harness.mu.Lock()
	srv := harness.srv
	harness.mu.Unlock()
	if srv == nil {
		return ""
	}
	return "\nserver log:\n" + srv.logTail()
}
