package loadgen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/db"
)

// storeCounters are PostgreSQL's counters of the store's database.
type storeCounters struct {
	at    time.Time
	xacts int64 // committed transactions
	rows  int64 // rows inserted, updated or deleted
}

// readStore reads the counters of the database dsn names (db.ReadActivity).
func readStore(ctx context.Context, dsn string) (storeCounters, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a, err := db.ReadActivity(ctx, dsn)
	if err != nil {
		return storeCounters{}, fmt.Errorf("store statistics: %w", err)
	}
	return storeCounters{at: time.Now(), xacts: a.Xacts, rows: a.Rows}, nil
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
