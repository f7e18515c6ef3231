package loadgen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// storeCounters are PostgreSQL's counters of the store's database.
type storeCounters struct {
	at    time.Time
	xacts int64 // committed transactions
	rows  int64 // rows inserted, updated or deleted
}

// readStore reads the counters of the database db names, from
// pg_stat_database. They count the whole database, every service on it.
func readStore(ctx context.Context, db string) (storeCounters, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return storeCounters{}, fmt.Errorf("store statistics: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The statistics a backend sees are a snapshot taken at its first
	// read; each reading is a new connection, so they are fresh.
	var c storeCounters
	err = conn.QueryRow(ctx, `SELECT xact_commit, tup_inserted + tup_updated + tup_deleted
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&c.xacts, &c.rows)
	if err != nil {
		return storeCounters{}, fmt.Errorf("store statistics: %w", err)
	}
	c.at = time.Now()
	return c, nil
}

// storeRates fills the result's store write rates between two readings.
// The first reading's own transaction falls in between; it is taken off.
func storeRates(res *Result, a, b storeCounters) {
	d := b.at.Sub(a.at).Seconds()
	if d <= 0 {
		return
	}
	x := round(float64(max(b.xacts-a.xacts-1, 0))/d, 1)
	w := round(float64(max(b.rows-a.rows, 0))/d, 1)
	res.StoreXactsPerS, res.StoreRowsPerS = &x, &w
}

// syncProcesses waits until procs load generators (this one included)
// have reached this point, each marking it with a file in dir, so that
// their measuring windows coincide.
func syncProcesses(ctx context.Context, dir, seed string, procs int) error {
	name := filepath.Join(dir, strings.NewReplacer("/", "_", string(os.PathSeparator), "_").Replace(seed)+".connected")
	if err := os.WriteFile(name, nil, 0o644); err != nil {
		return fmt.Errorf("--sync-dir: %w", err)
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		m, err := filepath.Glob(filepath.Join(dir, "*.connected"))
		if err != nil {
			return err
		}
		if len(m) >= procs {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
