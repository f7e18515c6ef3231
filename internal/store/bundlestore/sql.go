package bundlestore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// SQLStore is the Store on SQLite (`berthd dev`, one machine) or on
// PostgreSQL, shared by every replica of the bundles service.
type SQLStore struct {
	db     *db.DB
	events *eventlog.SQLLog
}

var _ Store = (*SQLStore)(nil)

// Open opens the database at where (a path for SQLite, a DSN for
// PostgreSQL) and brings the bundle tables up to date.
func Open(ctx context.Context, d db.Dialect, where string) (*SQLStore, error) {
	h, err := db.OpenSchema(ctx, d, where, schema)
	if err != nil {
		return nil, fmt.Errorf("bundle store: %w", err)
	}
	return &SQLStore{db: h, events: eventlog.NewLog(h, events)}, nil
}

// NewSQLite opens the store in the SQLite database at path, creating it.
func NewSQLite(ctx context.Context, path string) (*SQLStore, error) {
	return Open(ctx, db.SQLite, path)
}

// NewPostgres opens the store in the PostgreSQL database named by dsn.
func NewPostgres(ctx context.Context, dsn string) (*SQLStore, error) {
	return Open(ctx, db.Postgres, dsn)
}

// Close closes the database.
func (s *SQLStore) Close() { s.db.Close() }

// Events is the bundle event log.
func (s *SQLStore) Events() eventlog.Log { return s.events }

type scanner interface{ Scan(dest ...any) error }

// scan reads metaColumns, then sealed when withContent.
func scan(row scanner, withContent bool) (Bundle, error) {
	var (
		b   Bundle
		kem int64
	)
	dest := []any{&b.NodeID, &b.Version, &b.State, &b.Size, &b.Digest, &kem, &b.Author, db.ScanTime(&b.CreatedAt)}
	if withContent {
		dest = append(dest, &b.Sealed)
	}
	if err := row.Scan(dest...); err != nil {
		return Bundle{}, err
	}
	b.KEMID = uint16(kem)
	if len(b.Sealed) == 0 {
		b.Sealed = nil
	}
	return b, nil
}

// write runs fn in a transaction; every write first locks the node's row
// (txn.lock), so writes to one node serialise on both engines.
func (s *SQLStore) write(ctx context.Context, fn func(txn) error) error {
	if err := s.db.Tx(ctx, func(tx *sql.Tx) error { return fn(txn{tx, s.db.Dialect, s.events}) }); err != nil {
		return err
	}
	s.events.Notify()
	return nil
}

// Put stores a new version if the current one is expected.
func (s *SQLStore) Put(ctx context.Context, nodeID string, expected int64, b Bundle, opts PutOptions) (Bundle, error) {
	if err := checkPut(nodeID, expected, b); err != nil {
		return Bundle{}, fmt.Errorf("put bundle of node %s: %w", nodeID, err)
	}
	var out Bundle
	err := s.write(ctx, func(t txn) (err error) {
		out, err = put(ctx, t, nodeID, expected, b, opts)
		return err
	})
	if err != nil {
		return Bundle{}, fmt.Errorf("put bundle of node %s: %w", nodeID, err)
	}
	return out, nil
}

func (s *SQLStore) getState(ctx context.Context, nodeID string, state State) (Bundle, error) {
	b, err := scan(s.db.QueryRowContext(ctx,
		`SELECT `+columns+` FROM bundle_versions WHERE node_id = $1 AND state = $2`, nodeID, string(state)), true)
	if db.IsNoRows(err) {
		return Bundle{}, ErrNotFound
	}
	return b, err
}

// Get returns the current version.
func (s *SQLStore) Get(ctx context.Context, nodeID string) (Bundle, error) {
	b, err := s.getState(ctx, nodeID, StateApproved)
	if err != nil {
		return Bundle{}, fmt.Errorf("get bundle of node %s: %w", nodeID, err)
	}
	return b, nil
}

// Pending returns the version waiting for approval.
func (s *SQLStore) Pending(ctx context.Context, nodeID string) (Bundle, error) {
	b, err := s.getState(ctx, nodeID, StatePending)
	if err != nil {
		return Bundle{}, fmt.Errorf("get pending bundle of node %s: %w", nodeID, err)
	}
	return b, nil
}

// History describes the versions kept, newest first.
func (s *SQLStore) History(ctx context.Context, nodeID string) ([]Meta, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT `+metaColumns+` FROM bundle_versions WHERE node_id = $1 ORDER BY version DESC`, nodeID)
	if err != nil {
		return nil, fmt.Errorf("bundle history of node %s: %w", nodeID, err)
	}
	defer rows.Close()
	var ms []Meta
	for rows.Next() {
		b, err := scan(rows, false)
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
func (s *SQLStore) Approve(ctx context.Context, nodeID string, version int64, author string, now time.Time) (Bundle, error) {
	var out Bundle
	err := s.write(ctx, func(t txn) (err error) {
		out, err = approve(ctx, t, nodeID, version, author, now)
		return err
	})
	if err != nil {
		return Bundle{}, fmt.Errorf("approve bundle %d of node %s: %w", version, nodeID, err)
	}
	return out, nil
}

// Reset drops the current and pending versions and records the reset.
func (s *SQLStore) Reset(ctx context.Context, nodeID, author string, now time.Time, keep int) (Meta, error) {
	var out Meta
	err := s.write(ctx, func(t txn) (err error) {
		out, err = reset(ctx, t, nodeID, author, now, keep)
		return err
	})
	if err != nil {
		return Meta{}, fmt.Errorf("reset bundle of node %s: %w", nodeID, err)
	}
	return out, nil
}

// Delete forgets every version of nodeID; its versions go with it (ON
// DELETE CASCADE).
func (s *SQLStore) Delete(ctx context.Context, nodeID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM bundle_nodes WHERE node_id = $1`, nodeID); err != nil {
		return fmt.Errorf("delete bundles of node %s: %w", nodeID, err)
	}
	return nil
}

// txn is the statements a write is made of, on its transaction; put,
// approve and reset (common.go) hold the rules.
type txn struct {
	tx  *sql.Tx
	d   db.Dialect
	log *eventlog.SQLLog
}

// lock creates the node's row if needed, locks it until the transaction
// ends (the no-op update takes the row lock on PostgreSQL; SQLite's
// transactions hold the whole database), and returns the highest version
// number used so far.
func (t txn) lock(ctx context.Context, nodeID string) (last int64, err error) {
	err = t.tx.QueryRowContext(ctx, `INSERT INTO bundle_nodes (node_id, last_version) VALUES ($1, 0)
		ON CONFLICT (node_id) DO UPDATE SET last_version = bundle_nodes.last_version
		RETURNING last_version`, nodeID).Scan(&last)
	return last, err
}

// live returns the current and pending version numbers, 0 for none.
func (t txn) live(ctx context.Context, nodeID string) (current, pending int64, err error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT version, state FROM bundle_versions
		WHERE node_id = $1 AND state IN ('approved', 'pending')`, nodeID)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			v  int64
			st State
		)
		if err := rows.Scan(&v, &st); err != nil {
			return 0, 0, err
		}
		if st == StateApproved {
			current = v
		} else {
			pending = v
		}
	}
	return current, pending, rows.Err()
}

// state returns the state of a version; ErrNotFound if there is none.
func (t txn) state(ctx context.Context, nodeID string, version int64) (State, error) {
	var st State
	err := t.tx.QueryRowContext(ctx, `SELECT state FROM bundle_versions WHERE node_id = $1 AND version = $2`,
		nodeID, version).Scan(&st)
	if db.IsNoRows(err) {
		return "", ErrNotFound
	}
	return st, err
}

// setState changes the state of a version.
func (t txn) setState(ctx context.Context, nodeID string, version int64, s State) error {
	_, err := t.tx.ExecContext(ctx, `UPDATE bundle_versions SET state = $1 WHERE node_id = $2 AND version = $3`,
		string(s), nodeID, version)
	return err
}

// insert adds a version.
func (t txn) insert(ctx context.Context, b Bundle) error {
	sealed := b.Sealed
	if sealed == nil {
		sealed = []byte{} // a reset has no content; the column is NOT NULL
	}
	_, err := t.tx.ExecContext(ctx, `INSERT INTO bundle_versions (`+columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		b.NodeID, b.Version, string(b.State), b.Size, b.Digest, int64(b.KEMID), b.Author, t.d.Time(b.CreatedAt), sealed)
	return err
}

// get returns a version with its content.
func (t txn) get(ctx context.Context, nodeID string, version int64) (Bundle, error) {
	return scan(t.tx.QueryRowContext(ctx, `SELECT `+columns+` FROM bundle_versions WHERE node_id = $1 AND version = $2`,
		nodeID, version), true)
}

// setLast records the highest version number used.
func (t txn) setLast(ctx context.Context, nodeID string, last int64) error {
	_, err := t.tx.ExecContext(ctx, `UPDATE bundle_nodes SET last_version = $1 WHERE node_id = $2`, last, nodeID)
	return err
}

// trim deletes superseded and reset versions numbered up to atMost.
func (t txn) trim(ctx context.Context, nodeID string, atMost int64) error {
	_, err := t.tx.ExecContext(ctx, `DELETE FROM bundle_versions
		WHERE node_id = $1 AND version <= $2 AND state IN ('superseded', 'reset')`, nodeID, atMost)
	return err
}

// appendEvent appends to the event log, the last write of every
// transaction that makes one (see package eventlog).
func (t txn) appendEvent(ctx context.Context, e eventlog.Event) error {
	return t.log.Append(ctx, t.tx, e)
}
