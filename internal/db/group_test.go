package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func openEngine(t *testing.T, engine string) *db.DB {
	t.Helper()
	if engine == pgtest.Postgres {
		return openPostgres(t, pgtest.NewDatabase(t))
	}
	d, err := db.Open(context.Background(), db.SQLite, filepath.Join(t.TempDir(), "group.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

var errRefused = errors.New("refused")

// groupTable makes the table the group tests write: k is unique, so that
// a second insert of one k fails in the database itself (which aborts the
// whole transaction on PostgreSQL until its savepoint is rolled back).
func groupTable(t *testing.T, d *db.DB) {
	t.Helper()
	if _, err := d.ExecContext(context.Background(), `CREATE TABLE g (k TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

func rows(t *testing.T, d *db.DB) map[string]int {
	t.Helper()
	got := map[string]int{}
	rs, err := d.QueryContext(context.Background(), `SELECT k, n FROM g`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var (
			k string
			n int
		)
		if err := rs.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		got[k] = n
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// insert writes k twice over: a row, then an update of it, so that a
// write rolled back must undo more than one statement.
func insert(k string, n int) func(context.Context, *sql.Tx) (string, error) {
	return func(ctx context.Context, tx *sql.Tx) (string, error) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO g (k, n) VALUES ($1, 0)`, k); err != nil {
			return "", err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE g SET n = $1 WHERE k = $2`, n, k); err != nil {
			return "", err
		}
		return k, nil
	}
}

// TestGroupBatches holds the first batch open until more writes queue,
// then checks that they shared one commit, that each failed write (a
// refusal after writing, a duplicate key) lost only its own writes, with
// its own error, and that the rest committed with their results.
func TestGroupBatches(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		d := openEngine(t, engine)
		groupTable(t, d)
		ctx := context.Background()
		var (
			mu      sync.Mutex
			batches [][]string
		)
		g := &db.Group[string]{DB: d, Finish: func(_ context.Context, _ *sql.Tx, res []string) error {
			mu.Lock()
			batches = append(batches, res)
			mu.Unlock()
			return nil
		}}
		release, running := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			_, err := g.Tx(ctx, func(ctx context.Context, tx *sql.Tx) (string, error) {
				close(running)
				<-release
				return insert("first", 1)(ctx, tx)
			})
			first <- err
		}()
		<-running
		const n = 12
		type outcome struct {
			res string
			err error
		}
		out := make([]outcome, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var fn func(context.Context, *sql.Tx) (string, error)
				switch {
				case i%4 == 1:
					fn = func(ctx context.Context, tx *sql.Tx) (string, error) {
						if _, err := insert(fmt.Sprint("refused", i), i)(ctx, tx); err != nil {
							return "", err
						}
						return "", errRefused
					}
				case i%4 == 2:
					fn = insert("first", i) // the first write's key: a duplicate
				default:
					fn = insert(fmt.Sprint("k", i), i)
				}
				r, err := g.Tx(ctx, fn)
				out[i] = outcome{r, err}
			}()
		}
		deadline := time.Now().Add(time.Minute)
		for g.Queued() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d writes queued, want %d", g.Queued(), n)
			}
			time.Sleep(time.Millisecond)
		}
		close(release)
		wg.Wait()
		if err := <-first; err != nil {
			t.Fatalf("first write: %v", err)
		}
		want := map[string]int{"first": 1}
		for i, o := range out {
			switch i % 4 {
			case 1:
				if !errors.Is(o.err, errRefused) {
					t.Errorf("write %d: err %v, want %v", i, o.err, errRefused)
				}
			case 2:
				if !db.IsUniqueViolation(o.err) {
					t.Errorf("write %d: err %v, want a unique violation", i, o.err)
				}
			default:
				if o.err != nil || o.res != fmt.Sprint("k", i) {
					t.Errorf("write %d: %q, %v", i, o.res, o.err)
				}
				want[fmt.Sprint("k", i)] = i
			}
		}
		got := rows(t, d)
		if len(got) != len(want) {
			t.Errorf("rows %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("row %s = %d, want %d (rows %v)", k, got[k], v, got)
			}
		}
		// The first batch held the first write alone; the twelve queued
		// behind it went in one more, and only the successes reach Finish.
		if len(batches) != 2 || len(batches[0]) != 1 || len(batches[1]) != len(want)-1 {
			t.Errorf("batches %v, want [first] then the %d other successes", batches, len(want)-1)
		}
	})
}

// TestGroupFinishFails: a batch whose Finish fails commits nothing, and
// every write of it reports Finish's error, but one that failed on its
// own keeps its own error.
func TestGroupFinishFails(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		d := openEngine(t, engine)
		groupTable(t, d)
		ctx := context.Background()
		errFinish := errors.New("finish failed")
		g := &db.Group[string]{DB: d, Finish: func(context.Context, *sql.Tx, []string) error { return errFinish }}
		if _, err := g.Tx(ctx, insert("a", 1)); !errors.Is(err, errFinish) {
			t.Errorf("write: err %v, want %v", err, errFinish)
		}
		_, err := g.Tx(ctx, func(context.Context, *sql.Tx) (string, error) { return "", errRefused })
		if !errors.Is(err, errRefused) {
			t.Errorf("refused write: err %v, want %v", err, errRefused)
		}
		if got := rows(t, d); len(got) != 0 {
			t.Errorf("rows %v after a failed Finish, want none", got)
		}
	})
}

// TestGroupCancelled: a write whose caller has gone before its turn is
// not run; a caller that goes while its batch runs does not break the
// batch, which commits.
func TestGroupCancelled(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		d := openEngine(t, engine)
		groupTable(t, d)
		g := &db.Group[string]{DB: d}
		gone, cancel := context.WithCancel(context.Background())
		cancel()
		ran := false
		if _, err := g.Tx(gone, func(context.Context, *sql.Tx) (string, error) { ran = true; return "", nil }); !errors.Is(err, context.Canceled) || ran {
			t.Errorf("cancelled write: ran %v, err %v; want not run, %v", ran, err, context.Canceled)
		}
		leaving, leave := context.WithCancel(context.Background())
		_, err := g.Tx(leaving, func(ctx context.Context, tx *sql.Tx) (string, error) {
			leave()
			return insert("b", 2)(ctx, tx)
		})
		if err != nil {
			t.Errorf("write whose caller left during it: %v", err)
		}
		if got := rows(t, d); got["b"] != 2 || len(got) != 1 {
			t.Errorf("rows %v, want b=2", got)
		}
	})
}

// TestGroupFailsBeforeAnySuccess queues writes in a known order behind a
// held batch, so that the next batch opens with failures: a refusal after
// writing, then a duplicate key (which aborts a PostgreSQL transaction),
// with no success before them to guard, then a success, a refusal and a
// success. Each failure must lose exactly its own writes and keep its own
// error, the successes must commit together, and a batch whose only write
// fails must leave nothing behind.
func TestGroupFailsBeforeAnySuccess(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		d := openEngine(t, engine)
		groupTable(t, d)
		ctx := context.Background()
		var batches [][]string
		g := &db.Group[string]{DB: d, Finish: func(_ context.Context, _ *sql.Tx, res []string) error {
			batches = append(batches, res) // one leader at a time
			return nil
		}}
		refuse := func(k string) func(context.Context, *sql.Tx) (string, error) {
			return func(ctx context.Context, tx *sql.Tx) (string, error) {
				if _, err := insert(k, 9)(ctx, tx); err != nil {
					return "", err
				}
				return "", errRefused
			}
		}
		release, running := make(chan struct{}), make(chan struct{})
		held := make(chan error, 1)
		go func() {
			_, err := g.Tx(ctx, func(ctx context.Context, tx *sql.Tx) (string, error) {
				close(running)
				<-release
				return insert("held", 1)(ctx, tx)
			})
			held <- err
		}()
		<-running
		writes := []func(context.Context, *sql.Tx) (string, error){
			refuse("r0"), insert("held", 2), insert("k2", 2), refuse("r3"), insert("k4", 4),
		}
		errs := make([]error, len(writes))
		var wg sync.WaitGroup
		for i, fn := range writes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = g.Tx(ctx, fn)
			}()
			deadline := time.Now().Add(time.Minute)
			for g.Queued() < i+1 { // queued in this order
				if time.Now().After(deadline) {
					t.Fatalf("write %d did not queue", i)
				}
				time.Sleep(time.Millisecond)
			}
		}
		close(release)
		wg.Wait()
		if err := <-held; err != nil {
			t.Fatalf("held write: %v", err)
		}
		if !errors.Is(errs[0], errRefused) || !db.IsUniqueViolation(errs[1]) || errs[2] != nil || !errors.Is(errs[3], errRefused) || errs[4] != nil {
			t.Errorf("errors %v, want [refused, unique violation, nil, refused, nil]", errs)
		}
		if _, err := g.Tx(ctx, refuse("alone")); !errors.Is(err, errRefused) {
			t.Errorf("lone refused write: %v", err)
		}
		want := map[string]int{"held": 1, "k2": 2, "k4": 4}
		if got := rows(t, d); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rows %v, want %v", got, want)
		}
		if fmt.Sprint(batches) != "[[held] [k2 k4]]" {
			t.Errorf("batches %v, want [[held] [k2 k4]]", batches)
		}
	})
}
