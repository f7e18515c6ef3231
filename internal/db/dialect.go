package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Dialect is the database engine behind a DB. Stores write their SQL once for
// both engines; the few places where the engines differ are methods here, so
// that no store package needs to know which one it talks to.
//
// What both engines accept, and stores may use freely: $1, $2… placeholders
// (modernc's SQLite binds $N by position), INSERT … ON CONFLICT … DO UPDATE,
// RETURNING, TRUE/FALSE, and COALESCE. Times are BIGINT Unix microseconds
// (Micros/FromMicros), structured values are JSON text, and byte strings
// are BYTEA/BLOB.
type Dialect int

// The two engines berth runs on.
const (
	SQLite Dialect = iota + 1
	Postgres
)

// String names the engine as the configuration does.
func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	}
	return fmt.Sprintf("dialect(%d)", int(d))
}

// ForUpdate is the clause that locks the rows a SELECT inside a transaction
// reads, for the transaction's lifetime. SQLite has none and needs none: its
// transactions are BEGIN IMMEDIATE (see OpenSQLite), so a writer already
// holds the whole database.
func (d Dialect) ForUpdate() string {
	if d == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// JSONContains is a condition true when the JSON object in column col holds
// every key and value of the JSON object bound at placeholder arg (e.g.
// "$3"). PostgreSQL serves it from a GIN index on JSONB; SQLite walks the
// argument's keys.
func (d Dialect) JSONContains(col, arg string) string {
	if d == Postgres {
		return col + " @> " + arg + "::jsonb"
	}
	return "NOT EXISTS (SELECT 1 FROM json_each(" + arg + ") want WHERE json_extract(" + col +
		", '$.\"' || want.key || '\"') IS NOT want.value)"
}

// Strings is a list of strings bound for In and Overlaps: a text array on
// PostgreSQL, a JSON array on SQLite, which has no arrays. PostgreSQL
// could unpack a JSON array too, but only through a sub-SELECT, which it
// plans anew on every run of a replanned query (Replanned): that doubled
// the cost of the duplicate-hardware lookup of every registration.
func (d Dialect) Strings(xs []string) any {
	if d == Postgres {
		if xs == nil {
			return []string{} // an empty array, not NULL
		}
		return xs
	}
	return JSON(xs)
}

// In is a condition true when column col equals one of the strings bound
// at placeholder arg (e.g. "$1") as Strings. On PostgreSQL it is "= ANY"
// of the array: that form can use col's index when it is one side of an
// OR, where "IN (sub-SELECT)" turns the whole query into a sequential
// scan.
func (d Dialect) In(col, arg string) string {
	if d == Postgres {
		return col + " = ANY(" + arg + "::text[])"
	}
	return col + " IN (SELECT value FROM json_each(" + arg + "))"
}

// Overlaps is a condition true when the JSON array of strings in column col
// and the strings bound at placeholder arg as Strings share an element.
// PostgreSQL serves it from a GIN index on col.
func (d Dialect) Overlaps(col, arg string) string {
	if d == Postgres {
		return col + " ?| " + arg + "::text[]"
	}
	return "EXISTS (SELECT 1 FROM json_each(" + col + ") AS e WHERE e.value IN (SELECT value FROM json_each(" + arg + ")))"
}

// Lock serialises the transactions that take the same named lock, until tx
// ends. On PostgreSQL it is a transaction-scoped advisory lock; on SQLite
// every write transaction is already exclusive, so it does nothing.
func (d Dialect) Lock(ctx context.Context, tx Execer, name string) error {
	if d != Postgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, advisoryKey(name)); err != nil {
		return fmt.Errorf("lock %s: %w", name, err)
	}
	return nil
}

// advisoryKey turns a name into a pg_advisory_xact_lock key. Keys live in one
// 64-bit space shared by every application on the server, so the name carries
// a berth prefix.
func advisoryKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("berth " + name))
	return int64(h.Sum64())
}

// DB is a store's handle on its database: one database/sql pool and the
// engine behind it.
type DB struct {
	*sql.DB
	Dialect Dialect
}

// Tx runs fn in a transaction and commits it if fn returns nil; otherwise, or
// if fn panics, the transaction is rolled back. On SQLite the transaction is
// BEGIN IMMEDIATE, so keep read-only work outside Tx.
func (d *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	committed = true
	return tx.Commit()
}

// Execer is what runs a statement: a *sql.Tx, a *sql.DB or a *DB.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Querier is what reads: a *sql.Tx, a *sql.DB or a *DB.
type Querier interface {
	Execer
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Time is t as an argument for a time column: PostgreSQL columns are
// TIMESTAMPTZ, SQLite ones Unix microseconds. Either way it is UTC at
// microsecond precision. Read such a column with ScanTime.
func (d Dialect) Time(t time.Time) any {
	if d == Postgres {
		return t.UTC().Truncate(time.Microsecond)
	}
	return Micros(t)
}

// ScanTime reads a time column of either engine into *t, in UTC; NULL
// reads as the zero time.
func ScanTime(t *time.Time) sql.Scanner { return timeScanner{t} }

type timeScanner struct{ t *time.Time }

func (s timeScanner) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s.t = time.Time{} // NULL: the zero time
	case time.Time:
		*s.t = v.UTC()
	case int64:
		*s.t = FromMicros(v)
	default:
		return fmt.Errorf("scan time: unexpected %T", src)
	}
	return nil
}

// Replanned prefixes the arguments of a query whose plan must follow its
// table as it grows, on PostgreSQL. pgx otherwise runs every query as a
// named prepared statement, and after five runs PostgreSQL may keep one
// generic plan for it on that connection, until the table's statistics
// change: one chosen while a new fleet's table was nearly empty is a
// sequential scan, which every later run follows while the table fills.
// With the mode this prepends, pgx caches only the statement's
// description and PostgreSQL plans every run for the table as it is, still
// in one round trip. SQLite keeps no plan across runs, so there args are
// unchanged.
func (d Dialect) Replanned(args ...any) []any {
	if d != Postgres {
		return args
	}
	return append([]any{pgx.QueryExecModeCacheDescribe}, args...)
}

// Greatest is the larger of two SQL expressions: GREATEST on PostgreSQL,
// the two-argument MAX on SQLite.
func (d Dialect) Greatest(a, b string) string {
	if d == Postgres {
		return "GREATEST(" + a + ", " + b + ")"
	}
	return "MAX(" + a + ", " + b + ")"
}

// IsNoRows reports whether err says a single-row query found nothing.
func IsNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
