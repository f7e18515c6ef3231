package bundlestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// SQLiteStore is the Store on an embedded SQLite database, for `berthd dev`
// and single-machine deployments.
type SQLiteStore struct {
	db     *sql.DB
	events *eventlog.SQLLog
}

var _ Store = (*SQLiteStore)(nil)

// NewSQLite opens the SQLite database at path, creating it and its directory
// if needed, and brings its schema up to date.
func NewSQLite(ctx context.Context, path string) (*SQLiteStore, error) {
	d, err := db.OpenSQLiteSchema(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("bundle store: %w", err)
	}
	return &SQLiteStore{db: d, events: eventlog.NewLog(&db.DB{DB: d, Dialect: db.SQLite}, events)}, nil
}

// Close closes the database.
func (s *SQLiteStore) Close() { s.db.Close() }

// Events is the bundle event log.
func (s *SQLiteStore) Events() eventlog.Log { return s.events }

type scanner interface{ Scan(dest ...any) error }

// scanSQLite reads metaColumns, then sealed when withContent.
func scanSQLite(row scanner, withContent bool) (Bundle, error) {
	var (
		b       Bundle
		state   string
		kem     int64
		created int64
	)
	dest := []any{&b.NodeID, &b.Version, &state, &b.Size, &b.Digest, &kem, &b.Author, &created}
	if withContent {
		dest = append(dest, &b.Sealed)
	}
	if err := row.Scan(dest...); err != nil {
		return Bundle{}, err
	}
	b.State, b.KEMID, b.CreatedAt = State(state), uint16(kem), fromMicros(created)
	b.Sealed = nilIfEmpty(b.Sealed)
	return b, nil
}

// write runs fn in a transaction. BEGIN IMMEDIATE (see db.OpenSQLite) takes
// the write lock up front, so writes serialise and lock has nothing more to
// do than create the node's row.
func (s *SQLiteStore) write(ctx context.Context, fn func(steps) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(sqliteSteps{tx, s.events}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.events.Notify()
	return nil
}

// Put stores a new version if the current one is expected.
func (s *SQLiteStore) Put(ctx context.Context, nodeID string, expected int64, b Bundle, opts PutOptions) (Bundle, error) {
	if err := checkPut(nodeID, expected, b); err != nil {
		return Bundle{}, fmt.Errorf("put bundle of node %s: %w", nodeID, err)
	}
	var out Bundle
	err := s.write(ctx, func(st steps) (err error) {
		out, err = put(ctx, st, nodeID, expected, b, opts)
		return err
	})
	if err != nil {
		return Bundle{}, fmt.Errorf("put bundle of node %s: %w", nodeID, err)
	}
	return out, nil
}

func (s *SQLiteStore) getState(ctx context.Context, nodeID string, state State) (Bundle, error) {
	b, err := scanSQLite(s.db.QueryRowContext(ctx,
		`SELECT `+columns+` FROM bundle_versions WHERE node_id = ? AND state = ?`, nodeID, string(state)), true)
	if errors.Is(err, sql.ErrNoRows) {
		return Bundle{}, ErrNotFound
	}
	return b, err
}

// Get returns the current version.
func (s *SQLiteStore) Get(ctx context.Context, nodeID string) (Bundle, error) {
	b, err := s.getState(ctx, nodeID, StateApproved)
	if err != nil {
		return Bundle{}, fmt.Errorf("get bundle of node %s: %w", nodeID, err)
	}
	return b, nil
}

// Pending returns the version waiting for approval.
func (s *SQLiteStore) Pending(ctx context.Context, nodeID string) (Bundle, error) {
	b, err := s.getState(ctx, nodeID, StatePending)
	if err != nil {
		return Bundle{}, fmt.Errorf("get pending bundle of node %s: %w", nodeID, err)
	}
	return b, nil
}

// History describes the versions kept, newest first.
func (s *SQLiteStore) History(ctx context.Context, nodeID string) ([]Meta, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT `+metaColumns+` FROM bundle_versions WHERE node_id = ? ORDER BY version DESC`, nodeID)
	if err != nil {
		return nil, fmt.Errorf("bundle history of node %s: %w", nodeID, err)
	}
	defer rows.Close()
	var ms []Meta
	for rows.Next() {
		b, err := scanSQLite(rows, false)
		if err != nil {
			return nil, fmt.Errorf("bundle history of node %s: %w", nodeID, err)
		}
		ms = append(ms, b.Meta)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bundle history of node %s: %w", nodeID, err)
	}
	return ms, nil
}

// Approve makes a pending version current.
func (s *SQLiteStore) Approve(ctx context.Context, nodeID string, version int64, author string, now time.Time) (Bundle, error) {
	var out Bundle
	err := s.write(ctx, func(st steps) (err error) {
		out, err = approve(ctx, st, nodeID, version, author, now)
		return err
	})
	if err != nil {
		return Bundle{}, fmt.Errorf("approve bundle %d of node %s: %w", version, nodeID, err)
	}
	return out, nil
}

// Reset drops the current and pending versions and records the reset.
func (s *SQLiteStore) Reset(ctx context.Context, nodeID, author string, now time.Time, keep int) (Meta, error) {
	var out Meta
	err := s.write(ctx, func(st steps) (err error) {
		out, err = reset(ctx, st, nodeID, author, now, keep)
		return err
	})
	if err != nil {
		return Meta{}, fmt.Errorf("reset bundle of node %s: %w", nodeID, err)
	}
	return out, nil
}

// Delete forgets every version of nodeID; its versions go with it (ON
// DELETE CASCADE).
func (s *SQLiteStore) Delete(ctx context.Context, nodeID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM bundle_nodes WHERE node_id = ?`, nodeID); err != nil {
		return fmt.Errorf("delete bundles of node %s: %w", nodeID, err)
	}
	return nil
}

// sqliteSteps are the write steps on a SQLite transaction.
type sqliteSteps struct {
	tx  *sql.Tx
	log *eventlog.SQLLog
}

func (q sqliteSteps) lock(ctx context.Context, nodeID string) (int64, error) {
	var last int64
	err := q.tx.QueryRowContext(ctx, `INSERT INTO bundle_nodes (node_id, last_version) VALUES (?, 0)
		ON CONFLICT (node_id) DO UPDATE SET last_version = bundle_nodes.last_version
		RETURNING last_version`, nodeID).Scan(&last)
	return last, err
}

func (q sqliteSteps) live(ctx context.Context, nodeID string) (current, pending int64, err error) {
	rows, err := q.tx.QueryContext(ctx, `SELECT version, state FROM bundle_versions
		WHERE node_id = ? AND state IN ('approved', 'pending')`, nodeID)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			v  int64
			st string
		)
		if err := rows.Scan(&v, &st); err != nil {
			return 0, 0, err
		}
		if State(st) == StateApproved {
			current = v
		} else {
			pending = v
		}
	}
	return current, pending, rows.Err()
}

func (q sqliteSteps) state(ctx context.Context, nodeID string, version int64) (State, error) {
	var st string
	err := q.tx.QueryRowContext(ctx, `SELECT state FROM bundle_versions WHERE node_id = ? AND version = ?`,
		nodeID, version).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return State(st), err
}

func (q sqliteSteps) setState(ctx context.Context, nodeID string, version int64, s State) error {
	_, err := q.tx.ExecContext(ctx, `UPDATE bundle_versions SET state = ? WHERE node_id = ? AND version = ?`,
		string(s), nodeID, version)
	return err
}

func (q sqliteSteps) insert(ctx context.Context, b Bundle) error {
	_, err := q.tx.ExecContext(ctx, `INSERT INTO bundle_versions (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.NodeID, b.Version, string(b.State), b.Size, b.Digest, int64(b.KEMID), b.Author, micros(b.CreatedAt), nonNilBytes(b.Sealed))
	return err
}

func (q sqliteSteps) get(ctx context.Context, nodeID string, version int64) (Bundle, error) {
	return scanSQLite(q.tx.QueryRowContext(ctx, `SELECT `+columns+` FROM bundle_versions WHERE node_id = ? AND version = ?`,
		nodeID, version), true)
}

func (q sqliteSteps) setLast(ctx context.Context, nodeID string, last int64) error {
	_, err := q.tx.ExecContext(ctx, `UPDATE bundle_nodes SET last_version = ? WHERE node_id = ?`, last, nodeID)
	return err
}

func (q sqliteSteps) appendEvent(ctx context.Context, e eventlog.Event) error {
	return q.log.Append(ctx, q.tx, e)
}

func (q sqliteSteps) trim(ctx context.Context, nodeID string, atMost int64) error {
	_, err := q.tx.ExecContext(ctx, `DELETE FROM bundle_versions
		WHERE node_id = ? AND version <= ? AND state IN ('superseded', 'reset')`, nodeID, atMost)
	return err
}
