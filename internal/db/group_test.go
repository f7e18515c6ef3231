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

// groupDB is a database on engine with the table the group tests write: k is unique, so that
// a second insert of one k fails in the database itself (which aborts the
// whole transaction on PostgreSQL until its savepoint is rolled back).
func groupDB(t *testing.T, engine string) *db.DB {
	t.Helper()
	d := openEngine(t, engine)
	if _, err := d.ExecContext(context.Background(), `CREATE TABLE g (k TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return d
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
		d := groupDB(t, engine)
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
		d := groupDB(t, engine)
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
		d := groupDB(t, engine)
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

// inOrder runs writes as one batch, queued in the order given behind a
// held write of key held, and returns their errors.
func inOrder(t *testing.T, g *db.Group[string], held string, writes ...func(context.Context, *sql.Tx) (string, error)) []error {
	t.Helper()
	ctx := context.Background()
	release, running := make(chan struct{}), make(chan struct{})
	heldErr := make(chan error, 1)
	go func() {
		_, err := g.Tx(ctx, func(ctx context.Context, tx *sql.Tx) (string, error) {
			close(running)
			<-release
			return insert(held, 1)(ctx, tx)
		})
		heldErr <- err
	}()
	<-running
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, fn := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = g.Tx(ctx, fn)
		}()
		deadline := time.Now().Add(time.Minute)
		for g.Queued() < i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("write %d did not queue", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	close(release)
	wg.Wait()
	if err := <-heldErr; err != nil {
		t.Fatalf("held write: %v", err)
	}
	return errs
}

// refuse writes row k, then fails.
func refuse(k string) func(context.Context, *sql.Tx) (string, error) {
	return func(ctx context.Context, tx *sql.Tx) (string, error) {
		if _, err := insert(k, 9)(ctx, tx); err != nil {
			return "", err
		}
		return "", errRefused
	}
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
		d := groupDB(t, engine)
		var batches [][]string
		g := &db.Group[string]{DB: d, Finish: func(_ context.Context, _ *sql.Tx, res []string) error {
			batches = append(batches, res) // one leader at a time
			return nil
		}}
		errs := inOrder(t, g, "held", refuse("r0"), insert("held", 2), insert("k2", 2), refuse("r3"), insert("k4", 4))
		if !errors.Is(errs[0], errRefused) || !db.IsUniqueViolation(errs[1]) || errs[2] != nil || !errors.Is(errs[3], errRefused) || errs[4] != nil {
			t.Errorf("errors %v, want [refused, unique violation, nil, refused, nil]", errs)
		}
		if _, err := g.Tx(context.Background(), refuse("alone")); !errors.Is(err, errRefused) {
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

// TestGroupRunsAgainOnlyAfterFailure counts how often each write runs. A
// batch whose writes all succeed runs each once (without savepoints). One
// with a failed write stops at it and runs again, with savepoints: the
// writes up to the failed one run twice, the rest once. The next batch
// runs with savepoints at once, until a batch has no failed write.
func TestGroupRunsAgainOnlyAfterFailure(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		d := groupDB(t, engine)
		g := &db.Group[string]{DB: d}
		runs := map[string]int{} // one leader at a time
		counted := func(k string, fn func(context.Context, *sql.Tx) (string, error)) func(context.Context, *sql.Tx) (string, error) {
			return func(ctx context.Context, tx *sql.Tx) (string, error) {
				runs[k]++
				return fn(ctx, tx)
			}
		}
		ok := func(k string) func(context.Context, *sql.Tx) (string, error) { return counted(k, insert(k, 1)) }
		bad := func(k string) func(context.Context, *sql.Tx) (string, error) { return counted(k, refuse(k)) }
		check := func(step string, errs []error, wantErrs string, want map[string]int) {
			t.Helper()
			if got := fmt.Sprint(errs); got != wantErrs {
				t.Errorf("%s: errors %s, want %s", step, got, wantErrs)
			}
			if fmt.Sprint(runs) != fmt.Sprint(want) {
				t.Errorf("%s: runs %v, want %v", step, runs, want)
			}
			clear(runs)
		}
		check("all succeed", inOrder(t, g, "held1", ok("a"), ok("b")), "[<nil> <nil>]", map[string]int{"a": 1, "b": 1})
		check("one fails", inOrder(t, g, "held2", ok("c"), bad("d"), ok("e")), "[<nil> refused <nil>]", map[string]int{"c": 2, "d": 2, "e": 1})
		// The held write is a batch of its own, with savepoints after the
		// failure and no failure of its own: the batch after it is plain.
		check("plain again", inOrder(t, g, "held3", bad("f"), ok("g")), "[refused <nil>]", map[string]int{"f": 2, "g": 1})
		// Right after a failing batch, the next runs with savepoints at
		// once: a lone failure runs once. A batch with no failure makes the
		// next plain again.
		lone := func(fn func(context.Context, *sql.Tx) (string, error)) error {
			_, err := g.Tx(context.Background(), fn)
			return err
		}
		check("careful, then plain", []error{lone(bad("h")), lone(ok("j")), lone(bad("k"))}, "[refused <nil> refused]",
			map[string]int{"h": 1, "j": 1, "k": 2})
		want := map[string]int{"a": 1, "b": 1, "c": 1, "e": 1, "g": 1, "held1": 1, "held2": 1, "held3": 1, "j": 1}
		if got := rows(t, d); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rows %v, want %v", got, want)
		}
	})
}
