package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// IsUniqueViolation reports whether err, from either backend, is the database
// refusing a row that would duplicate a UNIQUE or PRIMARY KEY value. Stores
// turn it into their ErrConflict.
func IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" || isSQLiteUniqueViolation(err) // 23505: unique_violation
}

// IsUnavailable reports whether err says the database cannot serve right now
// but may later: it is unreachable, restarting, overloaded, out of space or
// busy. Callers answer such errors with Unavailable so that clients retry,
// rather than with Internal, which clients treat as final.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case len(pe.Code) == 5 && (pe.Code[:2] == "08" || pe.Code[:2] == "53" || pe.Code[:2] == "57" || pe.Code[:2] == "58"):
			// connection exception, insufficient resources (disk full,
			// out of memory, too many connections), operator
			// intervention (shutdown, cannot connect now), system error.
			return true
		case pe.Code == "40001" || pe.Code == "40P01":
			// serialization failure, deadlock: the retry succeeds.
			return true
		}
		return false
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // primary result code
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL:
			return true
		}
		return false
	}
	if pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	var errno syscall.Errno
	switch {
	case errors.As(err, &ce), errors.As(err, &ne),
		// A connection that broke earlier in the same transaction, or
		// that the driver found closed before sending anything.
		errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, sql.ErrConnDone), pgconn.SafeToRetry(err),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.As(err, &errno) && (errno == syscall.ENOSPC || errno == syscall.EIO || errno == syscall.ECONNREFUSED):
		return true
	}
	return false
}

// Micros is the storage form of a time on both engines: Unix microseconds,
// UTC. Microseconds are what PostgreSQL's timestamps hold, so values compare
// the same wherever they were written.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros is the inverse of Micros.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
