package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqlitePragmas are applied by the driver to every new connection, so every
// connection in the pool behaves the same. WAL lets readers run alongside the
// single writer; busy_timeout makes a writer wait for the lock instead of
// failing; FULL syncs the WAL on every commit, so a transaction that committed
// (and whose caller was answered) survives a power loss, not only a crash of
// the process as with NORMAL. temp_store(MEMORY) keeps statement journals
// (SQLite writes one for most statements inside a transaction, to undo
// that statement alone) in memory rather than in a temporary file: no one
// reads them after the statement ends, so they need no durability, and
// their file writes were 8% of berthd dev's CPU per registration.
// _txlock=immediate makes BEGIN take
// the write lock up front: a deferred transaction that reads and then writes
// can fail with SQLITE_BUSY when it tries to upgrade, and busy_timeout does not
// help in that case.
var sqlitePragmas = url.Values{
	"_pragma": {
		"busy_timeout(10000)",
		"foreign_keys(1)",
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"temp_store(MEMORY)",
	},
	"_txlock": {"immediate"},
}

// OpenSQLite opens (creating if needed) the SQLite database at path, creating
// its parent directory too. Every transaction begun on the returned pool is
// BEGIN IMMEDIATE, so read-only work belongs outside transactions.
func OpenSQLite(ctx context.Context, path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("open sqlite: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := ownerOnly(abs, true); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// A file: URI keeps paths containing '?' or '#' intact; the driver would
	// otherwise cut a plain path at the first '?'.
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: sqlitePragmas.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// WAL readers do not block each other, so allow a few connections per
	// core; writers queue on the file lock (busy_timeout) whatever the pool
	// size. Connections are never retired: each one holds a warm page cache
	// and opening one re-runs the pragmas.
	n := max(4, 2*runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// SQLite gives the WAL and shared-memory files the database's mode; make
	// sure of it for files left by an older version.
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := ownerOnly(abs+suffix, false); err != nil {
			db.Close()
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
	}
	return db, nil
}

// ownerOnly makes path readable and writable by its owner alone (0600),
// creating it empty if create is set and it does not exist, whatever the
// umask: the databases hold node identities, token hashes and the issued
// log. A missing file is fine when create is not set.
func ownerOnly(path string, create bool) error {
	if create {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) && !create {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o600 {
		return os.Chmod(path, 0o600)
	}
	return nil
}

// isSQLiteUniqueViolation reports whether err is SQLite refusing a row because
// of a UNIQUE or PRIMARY KEY constraint.
func isSQLiteUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}
