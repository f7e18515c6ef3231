package regstore

import (
	"context"
	"database/sql"
	"sync"

	"github.com/berth-dev/berth/internal/db"
)

// statements keeps the registration path's statements prepared, for
// SQLite: its driver parses a statement again on every call, a tenth of
// berthd dev's CPU per registration, where a statement prepared once stays
// prepared on each pooled connection (database/sql keeps a copy per
// connection, and SQLite's connections are never retired). PostgreSQL's
// driver keeps its own cache of prepared statements.
type statements struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns query prepared, or nil if it could not be: the caller then
// runs it unprepared, which reports the same error. It prepares without
// the lock held: preparing waits for a free connection, which a caller
// holding one in a transaction must not make the others wait for.
func (c *statements) get(ctx context.Context, d *db.DB, query string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.m[query]
	c.mu.Unlock()
	if ok {
		return st
	}
	st, err := d.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if first, ok := c.m[query]; ok { // prepared meanwhile by another caller
		st.Close()
		return first
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st
}

func (c *statements) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// prepared runs queries through the store's prepared statements, in tx
// (or outside a transaction when tx is nil).
type prepared struct {
	s  *SQLStore
	tx *sql.Tx
}

var _ db.Querier = prepared{}

// hot is q for the statements of the registration path: prepared ones on
// SQLite, q itself on PostgreSQL.
func (s *SQLStore) hot(tx *sql.Tx) db.Querier {
	switch {
	case s.DB.Dialect == db.Postgres && tx != nil:
		return tx
	case s.DB.Dialect == db.Postgres:
		return s.DB
	}
	return prepared{s: s, tx: tx}
}

// stmt is query prepared, bound to the transaction if there is one.
func (p prepared) stmt(ctx context.Context, query string) *sql.Stmt {
	st := p.s.stmts.get(ctx, p.s.DB, query)
	if st != nil && p.tx != nil {
		st = p.tx.StmtContext(ctx, st)
	}
	return st
}

// plain is the unprepared way, for a statement that could not be prepared.
func (p prepared) plain() db.Querier {
	if p.tx != nil {
		return p.tx
	}
	return p.s.DB
}

func (p prepared) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.plain().ExecContext(ctx, query, args...)
}

func (p prepared) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.plain().QueryContext(ctx, query, args...)
}

func (p prepared) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.plain().QueryRowContext(ctx, query, args...)
}
