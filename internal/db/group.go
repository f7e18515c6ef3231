package db

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// groupMax bounds how many writes share one commit. On PostgreSQL each
// one is a subtransaction, and past 64 of them that write in one
// transaction every other session's snapshots get slower
// (PGPROC_MAX_CACHED_SUBXIDS).
const groupMax = 32

// Group commits concurrent writes together: while one transaction
// commits (and syncs: SQLite's FULL sync, PostgreSQL's WAL flush), the
// writes that arrive queue, and the next transaction runs them all and
// commits once. Each write's durability is unchanged: Tx returns only
// after the commit that holds it. Under load a commit and its locks (a hot
// row such as a token's uses, an event log's append lock) are paid once
// per batch instead of once per write.
//
// A batch is as if its writes ran one after the other in order: a write
// sees the earlier ones', and one that fails is rolled back alone, with
// its own error. Savepoints make that so, and cost a round trip per write,
// so a batch first runs without them and runs again with them only if a
// write failed (see run). Finish, if set, runs once per batch before the
// commit with the results of the writes that succeeded (for instance to
// append their events as the transaction's last write); if it or the
// commit fails, every write of the batch gets that error.
//
// The zero Group is not usable: set DB.
type Group[T any] struct {
	DB     *DB
	Finish func(ctx context.Context, tx *sql.Tx, results []T) error

	mu    sync.Mutex
	queue []*groupOp[T]
	busy  bool // a leader is running a batch
	// careful: the last batch had a failed write, and the next runs with
	// savepoints at once (run). Only the leader touches it.
	careful bool
}

type groupOp[T any] struct {
	ctx    context.Context
	fn     func(context.Context, *sql.Tx) (T, error)
	result T
	err    error
	lead   chan bool // true: run the next batch; false: done, read result and err
}

// Tx runs fn in a transaction shared with the writes queued with it, and
// returns fn's result once that transaction has committed. fn gets a
// context that is never cancelled: a caller that goes away must not break
// the transaction of the others (PostgreSQL's driver closes a connection
// whose query is cancelled). A caller whose ctx is done before its turn is
// not run. fn may run twice, the first run rolled back and its result
// dropped when another write of its batch failed, so it must do nothing
// outside tx; a failed commit is never retried.
func (g *Group[T]) Tx(ctx context.Context, fn func(context.Context, *sql.Tx) (T, error)) (T, error) {
	op := &groupOp[T]{ctx: ctx, fn: fn, lead: make(chan bool, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, op)
	leader := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !leader && !<-op.lead {
		return op.result, op.err
	}
	// The leader runs one batch (its own write is the first one queued,
	// since the leader is always woken at the head of the queue), then hands
	// the lead to the first write still waiting, so that nobody leads for
	// longer than one batch.
	g.mu.Lock()
	n := min(len(g.queue), groupMax)
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()
	g.run(batch)
	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].lead <- true
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	for _, o := range batch {
		if o != op {
			o.lead <- false
		}
	}
	return op.result, op.err
}

// run commits a batch, leaving each write's outcome in its op. After a
// batch whose writes all succeeded, the next runs them without savepoints,
// a round trip fewer per write; if one of them fails, that attempt is
// rolled back whole and the batch runs again with them, which the batches
// after it keep to until one has no failed write, so that a run of
// failures costs no write more than one extra run.
func (g *Group[T]) run(batch []*groupOp[T]) {
	if !g.careful && !g.runBatch(batch, false) {
		return
	}
	g.careful = g.runBatch(batch, true)
}

// fail gives err to every write of batch that has no error of its own.
func fail[T any](batch []*groupOp[T], err error) {
	for _, o := range batch {
		if o.err == nil {
			var zero T
			o.result, o.err = zero, err
		}
	}
}

// commit runs Finish on the results of the writes that succeeded, if
// any, and commits tx.
func (g *Group[T]) commit(ctx context.Context, tx *sql.Tx, batch []*groupOp[T], done []T) {
	if len(done) > 0 && g.Finish != nil {
		if err := g.Finish(ctx, tx, done); err != nil {
			tx.Rollback()
			fail(batch, err)
			return
		}
	}
	if err := tx.Commit(); err != nil {
		fail(batch, err)
	}
}

// runBatch runs the batch in one transaction and commits it, and reports
// whether a write failed. With saved, each write after the first success
// is behind a savepoint. Without, a failed write ends the attempt: all is
// rolled back and every outcome cleared, since only a savepoint could have
// rolled that write back alone.
func (g *Group[T]) runBatch(batch []*groupOp[T], saved bool) (failed bool) {
	ctx := context.WithoutCancel(batch[0].ctx)
	var (
		tx   *sql.Tx // begun for the first write to run
		err  error
		done []T
	)
	for i, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.err = err
			continue
		}
		if tx == nil {
			if tx, err = g.DB.BeginTx(ctx, nil); err != nil {
				fail(batch, err)
				return false
			}
		}
		// Before the first success there is nothing to guard: a failure
		// then rolls the whole transaction back, and the rest of the
		// batch starts a new one.
		sp := fmt.Sprintf("group_%d", i)
		if saved && len(done) > 0 {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT "+sp); err != nil {
				tx.Rollback()
				fail(batch, err)
				return false
			}
		}
		o.result, o.err = o.fn(context.WithoutCancel(o.ctx), tx)
		if o.err == nil {
			done = append(done, o.result)
			continue
		}
		failed = true
		switch {
		case !saved:
			tx.Rollback()
			for _, o := range batch {
				var zero T
				o.result, o.err = zero, nil
			}
			return true
		case len(done) > 0:
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+sp); err != nil {
				tx.Rollback()
				fail(batch, err)
				return failed
			}
		default:
			tx.Rollback()
			tx = nil
		}
	}
	if tx != nil { // unless nothing ran, or the last write failed with none before it succeeding
		g.commit(ctx, tx, batch, done)
	}
	return failed
}
