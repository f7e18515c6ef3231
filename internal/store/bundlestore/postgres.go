package bundlestore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// PostgresStore is the Store on PostgreSQL, shared by every replica of the
// bundles service.
type PostgresStore struct {
	pool   *pgxpool.Pool
	events *eventlog.SQLLog
}

var _ Store = (*PostgresStore)(nil)

// NewPostgres connects to the database named by dsn and brings the bundle
// tables up to date.
func NewPostgres(ctx context.Context, dsn string) (*PostgresStore, error) {
	pool, err := db.OpenPostgresSchema(ctx, dsn, schema)
	if err != nil {
		return nil, fmt.Errorf("bundle store: %w", err)
	}
	return &PostgresStore{pool: pool, events: eventlog.NewLog(db.FromPool(pool), events)}, nil
}

// Close closes the connection pool.
func (s *PostgresStore) Close() { s.pool.Close() }

// Events is the bundle event log.
func (s *PostgresStore) Events() eventlog.Log { return s.events }

// scanPostgres reads metaColumns, then sealed when withContent.
func scanPostgres(row pgx.Row, withContent bool) (Bundle, error) {
	var (
		b     Bundle
		state string
		kem   int32
	)
	dest := []any{&b.NodeID, &b.Version, &state, &b.Size, &b.Digest, &kem, &b.Author, &b.CreatedAt}
	if withContent {
		dest = append(dest, &b.Sealed)
	}
	if err := row.Scan(dest...); err != nil {
		return Bundle{}, err
	}
	b.State, b.KEMID, b.CreatedAt = State(state), uint16(kem), b.CreatedAt.UTC()
	b.Sealed = nilIfEmpty(b.Sealed)
	return b, nil
}

// write runs fn in a transaction. Every write begins with lock, an upsert
// that row-locks the node's row in bundle_nodes, so writes to one node
// serialise across replicas while other nodes go ahead. The event is the
// last write, so the event log's lock is held only from it to the commit.
func (s *PostgresStore) write(ctx context.Context, fn func(steps) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := fn(postgresSteps{tx, s.events}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	// Every write that commits appended an event, except approving the
	// current version again; waking watchers for nothing costs one read.
	s.events.Notify()
	return nil
}

// Put stores a new version if the current one is expected.
func (s *PostgresStore) Put(ctx context.Context, nodeID string, expected int64, b Bundle, opts PutOptions) (Bundle, error) {
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

func (s *PostgresStore) getState(ctx context.Context, nodeID string, state State) (Bundle, error) {
	b, err := scanPostgres(s.pool.QueryRow(ctx,
		`SELECT `+columns+` FROM bundle_versions WHERE node_id = $1 AND state = $2`, nodeID, string(state)), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return Bundle{}, ErrNotFound
	}
	return b, err
}

// Get returns the current version.
func (s *PostgresStore) Get(ctx context.Context, nodeID string) (Bundle, error) {
	b, err := s.getState(ctx, nodeID, StateApproved)
	if err != nil {
		return Bundle{}, fmt.Errorf("get bundle of node %s: %w", nodeID, err)
	}
	return b, nil
}

// Pending returns the version waiting for approval.
func (s *PostgresStore) Pending(ctx context.Context, nodeID string) (Bundle, error) {
	b, err := s.getState(ctx, nodeID, StatePending)
	if err != nil {
		return Bundle{}, fmt.Errorf("get pending bundle of node %s: %w", nodeID, err)
	}
	return b, nil
}

// History describes the versions kept, newest first.
func (s *PostgresStore) History(ctx context.Context, nodeID string) ([]Meta, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT `+metaColumns+` FROM bundle_versions WHERE node_id = $1 ORDER BY version DESC`, nodeID)
	if err != nil {
		return nil, fmt.Errorf("bundle history of node %s: %w", nodeID, err)
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Meta, error) {
		b, err := scanPostgres(r, false)
		return b.Meta, err
	})
	if err != nil {
		return nil, fmt.Errorf("bundle history of node %s: %w", nodeID, err)
	}
	return nilIfEmpty(ms), nil
}

// Approve makes a pending version current.
func (s *PostgresStore) Approve(ctx context.Context, nodeID string, version int64, author string, now time.Time) (Bundle, error) {
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
func (s *PostgresStore) Reset(ctx context.Context, nodeID, author string, now time.Time, keep int) (Meta, error) {
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
// DELETE CASCADE). A write waiting on the node's row lock then starts the
// node afresh.
func (s *PostgresStore) Delete(ctx context.Context, nodeID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM bundle_nodes WHERE node_id = $1`, nodeID); err != nil {
		return fmt.Errorf("delete bundles of node %s: %w", nodeID, err)
	}
	return nil
}

// postgresSteps are the write steps on a PostgreSQL transaction.
type postgresSteps struct {
	tx  pgx.Tx
	log *eventlog.SQLLog
}

// lock upserts the node's row; ON CONFLICT DO UPDATE locks an existing row
// until the transaction ends, and a concurrent first write waits on the
// primary key and then takes the update path.
func (q postgresSteps) lock(ctx context.Context, nodeID string) (int64, error) {
	var last int64
	err := q.tx.QueryRow(ctx, `INSERT INTO bundle_nodes (node_id, last_version) VALUES ($1, 0)
		ON CONFLICT (node_id) DO UPDATE SET last_version = bundle_nodes.last_version
		RETURNING last_version`, nodeID).Scan(&last)
	return last, err
}

func (q postgresSteps) live(ctx context.Context, nodeID string) (current, pending int64, err error) {
	rows, err := q.tx.Query(ctx, `SELECT version, state FROM bundle_versions
		WHERE node_id = $1 AND state IN ('approved', 'pending')`, nodeID)
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

func (q postgresSteps) state(ctx context.Context, nodeID string, version int64) (State, error) {
	var st string
	err := q.tx.QueryRow(ctx, `SELECT state FROM bundle_versions WHERE node_id = $1 AND version = $2`,
		nodeID, version).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	return State(st), err
}

func (q postgresSteps) setState(ctx context.Context, nodeID string, version int64, s State) error {
	_, err := q.tx.Exec(ctx, `UPDATE bundle_versions SET state = $1 WHERE node_id = $2 AND version = $3`,
		string(s), nodeID, version)
	return err
}

func (q postgresSteps) insert(ctx context.Context, b Bundle) error {
	_, err := q.tx.Exec(ctx, `INSERT INTO bundle_versions (`+columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		b.NodeID, b.Version, string(b.State), b.Size, b.Digest, int32(b.KEMID), b.Author, utc(b.CreatedAt), nonNilBytes(b.Sealed))
	return err
}

func (q postgresSteps) get(ctx context.Context, nodeID string, version int64) (Bundle, error) {
	return scanPostgres(q.tx.QueryRow(ctx, `SELECT `+columns+` FROM bundle_versions WHERE node_id = $1 AND version = $2`,
		nodeID, version), true)
}

func (q postgresSteps) setLast(ctx context.Context, nodeID string, last int64) error {
	_, err := q.tx.Exec(ctx, `UPDATE bundle_nodes SET last_version = $1 WHERE node_id = $2`, last, nodeID)
	return err
}

func (q postgresSteps) appendEvent(ctx context.Context, e eventlog.Event) error {
	return q.log.Append(ctx, db.PgxExec{Tx: q.tx}, e)
}

func (q postgresSteps) trim(ctx context.Context, nodeID string, atMost int64) error {
	_, err := q.tx.Exec(ctx, `DELETE FROM bundle_versions
		WHERE node_id = $1 AND version <= $2 AND state IN ('superseded', 'reset')`, nodeID, atMost)
	return err
}
