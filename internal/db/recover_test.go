package db_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

// querier is what the PostgreSQL pool berth opens (database/sql over pgx,
// db.Open) can do.
type querier struct {
	name  string
	exec  func(ctx context.Context, sql string) error
	close func()
}

// poolKinds names the pools; open opens one of them.
var poolKinds = []string{"database/sql"}

func open(t *testing.T, kind, dsn string) querier {
	t.Helper()
	ctx := context.Background()
	sqlDB, err := db.Open(ctx, db.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := querier{kind, func(ctx context.Context, s string) error { _, err := sqlDB.ExecContext(ctx, s); return err }, func() { sqlDB.Close() }}
	t.Cleanup(q.close)
	return q
}

// TestPoolRecoversFromBrokenConnections breaks every pooled connection at
// once, as a server restart does, moments after they were used (so the
// pools' idle-time ping would not look at them): one statement may fail,
// with an error that says unavailable, and the pool then replaces the
// broken connections instead of failing a statement on each.
func TestPoolRecoversFromBrokenConnections(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	other, err := db.Open(ctx, db.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const conns = 4
	for _, kind := range poolKinds {
		t.Run(kind, func(t *testing.T) {
			q := open(t, kind, dsn)
			// Fill the pool with connections used just now.
			var wg sync.WaitGroup
			for range conns {
				wg.Go(func() {
					if err := q.exec(ctx, `SELECT pg_sleep(0.05)`); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			var killed int
			if err := other.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&killed); err != nil {
				t.Fatal(err)
			}
			if killed < conns {
				t.Fatalf("terminated %d connections, want the pool's %d", killed, conns)
			}
			// Wait until they are gone on the server's side.
			for deadline := time.Now().Add(30 * time.Second); ; {
				var left int
				if err := other.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&left); err != nil {
					t.Fatal(err)
				}
				if left == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d terminated connections still there after 30 s", left)
				}
				time.Sleep(10 * time.Millisecond)
			}
			var failed []error
			for range 2 * conns {
				if err := q.exec(ctx, `SELECT 1`); err != nil {
					failed = append(failed, err)
					if !db.IsUnavailable(err) {
						t.Errorf("statement on a broken connection: %v, want an error IsUnavailable reports", err)
					}
				}
			}
			if len(failed) > 1 {
				t.Errorf("%d of %d statements failed after the connections broke, want at most the first: %v", len(failed), 2*conns, failed)
			}
		})
	}
}

// TestPoolThroughRestart runs statements on both pools while PostgreSQL
// stops and starts again: every failure says unavailable (never an error
// a service would answer Internal), and once the server is back every
// worker's statements succeed again, without reopening anything.
func TestPoolThroughRestart(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type outcome struct {
		mu       sync.Mutex
		bad      []error
		okAfter  int // successes since the server came back
		restored bool
	}
	var o outcome
	var wg sync.WaitGroup
	for _, kind := range poolKinds {
		q := open(t, kind, cluster.DSN())
		for w := range 4 {
			wg.Go(func() {
				for ctx.Err() == nil {
					cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
					err := q.exec(cctx, `SELECT 1`)
					ccancel()
					o.mu.Lock()
					switch {
					case err == nil && o.restored:
						o.okAfter++
					case err != nil && ctx.Err() == nil && !db.IsUnavailable(err):
						o.bad = append(o.bad, fmt.Errorf("%s worker %d: %w", q.name, w, err))
					}
					o.mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
	}
	time.Sleep(200 * time.Millisecond)
	cluster.Stop(t)
	time.Sleep(500 * time.Millisecond)
	cluster.Start(t)
	o.mu.Lock()
	o.restored = true
	o.mu.Unlock()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		o.mu.Lock()
		n := o.okAfter
		o.mu.Unlock()
		if n >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d statements succeeded in the minute after PostgreSQL came back", n)
		}
	}
	cancel()
	wg.Wait()
	for _, err := range o.bad {
		t.Errorf("through a restart: %v, want success or an error IsUnavailable reports", err)
	}
}
