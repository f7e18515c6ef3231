package db

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// recheckWindow is how long after a connection of a pool broke every
// connection it hands out is pinged first. A PostgreSQL restart, a
// failover or an operator's pg_terminate_backend breaks every pooled
// connection at once, but each one only finds out when it is next used:
// the pool's default ping, only for connections idle over a second,
// misses those a busy service used a moment ago. Past the window, a
// connection the restart broke has been pinged or has sat idle long
// enough for the default ping to catch it.
const recheckWindow = 5 * time.Second

// recovery makes a pool find the connections a server restart broke
// before it hands them to a statement: the first statement on a broken
// connection fails (it cannot be retried safely: it may have reached the
// server), and from then on, for recheckWindow, every connection is
// pinged before use and a dead one is replaced by a fresh connection.
type recovery struct {
	// broke is when a connection was last seen broken, Unix nanoseconds.
	broke atomic.Int64
}

// shouldPing is the pool's ShouldPing: the default (idle over a second),
// or any connection while the window after a breakage is open.
func (r *recovery) shouldPing(idle time.Duration) bool {
	return idle > time.Second || time.Since(time.Unix(0, r.broke.Load())) < recheckWindow
}

// saw notes a statement's outcome on conn: a connection that an error left
// closed was broken under the pool.
func (r *recovery) saw(conn *pgx.Conn, err error) {
	if err != nil && conn.IsClosed() {
		r.broke.Store(time.Now().UnixNano())
	}
}

// TraceQueryStart is part of pgx.QueryTracer.
func (r *recovery) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

// TraceQueryEnd is part of pgx.QueryTracer; every statement ends here,
// BEGIN and COMMIT included: database/sql reaches pgx only through Exec
// and Query, never batches or COPY.
func (r *recovery) TraceQueryEnd(_ context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	r.saw(conn, data.Err)
}

// recoverSQL installs recovery on a database/sql pool over pgx: the tracer
// on cc, and the option it returns makes database/sql ping (and on failure
// discard) connections by shouldPing. berth sets no tracer of its own;
// were one set, it would be kept, and connections would be pinged by idle
// time alone.
func recoverSQL(cc *pgx.ConnConfig) stdlib.OptionOpenDB {
	r := &recovery{}
	if cc.Tracer == nil {
		cc.Tracer = r
	}
	return stdlib.OptionShouldPing(func(_ context.Context, p stdlib.ShouldPingParams) bool { return r.shouldPing(p.IdleDuration) })
}
