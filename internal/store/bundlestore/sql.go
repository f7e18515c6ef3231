package bundlestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// migrations/sqlite and migrations/postgres hold the schema: one numbered
// file per change and engine, the two saying the same thing; their
// comments say what each change is for.
//
//go:embed migrations
var migrations embed.FS

// SQLStore is the Store on SQLite (`berthd dev`, one machine) or on
// PostgreSQL, shared by every replica of the bundles service.
type SQLStore struct{ eventlog.Store }

var _ Store = (*SQLStore)(nil)

// Open opens the database at where (a path for SQLite, a DSN for
// PostgreSQL) and brings the bundle tables up to date; "bundles" names
// them in schema_migrations.
func Open(ctx context.Context, d db.Dialect, where string) (*SQLStore, error) {
	s, err := eventlog.OpenStore(ctx, d, where, db.Schema{Service: "bundles", FS: migrations}, eventlog.NewTable("bundle"))
	return db.Result(&SQLStore{s}, err, "bundle store")
}

// metaColumns are what scan reads, then columns the content too.
const (
	metaColumns = `node_id, version, state, size, digest, kem_id, author, created_at`
	columns     = metaColumns + `, sealed`
)

func scanBundle(row db.Scanner) (Bundle, error) { return scan(row, true) }

func scanMeta(row db.Scanner) (Meta, error) {
	b, err := scan(row, false)
	return b.Meta, err
}

// scan reads metaColumns, then sealed when withContent.
func scan(row db.Scanner, withContent bool) (Bundle, error) {
	var (
		b   Bundle
		kem int64
	)
	dest := []any{&b.NodeID, &b.Version, &b.State, &b.Size, &b.Digest, &kem, &b.Author, db.ScanTime(&b.CreatedAt)}
	if withContent {
		dest = append(dest, db.ScanBytes(&b.Sealed))
	}
	if err := row.Scan(dest...); err != nil {
		return Bundle{}, err
	}
	b.KEMID = uint16(kem)
	return b, nil
}

// checkPut refuses what the schema would refuse anyway, with an error that
// says why rather than a constraint name.
func checkPut(nodeID string, expected int64, b Bundle) error {
	switch {
	case nodeID == "":
		return errors.New("node ID is empty")
	case expected < 0:
		return fmt.Errorf("expected version %d is negative", expected)
	case len(b.Sealed) == 0:
		return errors.New("sealed bundle is empty")
	case b.Digest == "":
		return errors.New("digest is empty")
	case b.Author == "":
		return errors.New("author is empty")
	case b.CreatedAt.IsZero():
		return errors.New("creation time is missing")
	}
	return nil
}

// Put stores a new version if the current one is expected.
func (s *SQLStore) Put(ctx context.Context, nodeID string, expected int64, b Bundle, opts PutOptions) (Bundle, error) {
	if err := checkPut(nodeID, expected, b); err != nil {
		return Bundle{}, fmt.Errorf("put bundle of node %s: %w", nodeID, err)
	}
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		last, current, pending, err := lock(ctx, tx, nodeID)
		switch {
		case err != nil:
			return nil, err
		// A pending upload is reported first: it is why the node cannot
		// write, whatever version it expected.
		case pending != 0 && !opts.ReplacePending:
			return nil, fmt.Errorf("%w: version %d", ErrPendingExists, pending)
		case current != expected:
			return nil, fmt.Errorf("%w: current is %d, expected %d", ErrStale, current, expected)
		case opts.Version != 0 && opts.Version != last+1:
			return nil, &VersionError{Version: opts.Version, Next: last + 1}
		}
		b.NodeID, b.Version, b.Size, b.State = nodeID, last+1, int64(len(b.Sealed)), StateApproved
		b.CreatedAt = db.UTC(b.CreatedAt)
		superseded := []int64{pending}
		if opts.RequireApproval {
			b.State = StatePending
		} else {
			superseded = append(superseded, current)
		}
		if err := s.add(ctx, tx, b, opts.Keep, superseded...); err != nil {
			return nil, err
		}
		return []eventlog.Event{{Type: EventUpdated, NodeID: nodeID, Time: b.CreatedAt, Details: eventlog.Details(
			DetailVersion, version(b.Version), DetailState, string(b.State), DetailAuthor, b.Author,
			DetailDroppedPending, version(pending))}}, nil
	})
	return db.Result(b, err, "put bundle of node %s", nodeID)
}

// Get returns the current version.
func (s *SQLStore) Get(ctx context.Context, nodeID string) (Bundle, error) {
	b, err := s.inState(ctx, nodeID, StateApproved)
	return db.Result(b, err, "get bundle of node %s", nodeID)
}

// Pending returns the version waiting for approval.
func (s *SQLStore) Pending(ctx context.Context, nodeID string) (Bundle, error) {
	b, err := s.inState(ctx, nodeID, StatePending)
	return db.Result(b, err, "get pending bundle of node %s", nodeID)
}

func (s *SQLStore) inState(ctx context.Context, nodeID string, state State) (Bundle, error) {
	b, err := scanBundle(s.DB.QueryRowContext(ctx,
		`SELECT `+columns+` FROM bundle_versions WHERE node_id = $1 AND state = $2`, nodeID, string(state)))
	return b, db.Found(err, ErrNotFound)
}

// History describes the versions kept, newest first.
func (s *SQLStore) History(ctx context.Context, nodeID string) ([]Meta, error) {
	ms, err := db.Collect(ctx, s.DB, scanMeta, `SELECT `+metaColumns+` FROM bundle_versions WHERE node_id = $1 ORDER BY version DESC`, nodeID)
	return db.Result(ms, err, "bundle history of node %s", nodeID)
}

// Approve makes a pending version current.
func (s *SQLStore) Approve(ctx context.Context, nodeID string, v int64, author string, now time.Time) (Bundle, error) {
	var out Bundle
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		// While a version is pending the current one cannot change (node
		// uploads are refused; administrator writes and resets supersede
		// the pending version), so it is still the one the upload replaces.
		_, current, _, err := lock(ctx, tx, nodeID)
		if err != nil {
			return nil, err
		}
		var st State
		err = tx.QueryRowContext(ctx, `SELECT state FROM bundle_versions WHERE node_id = $1 AND version = $2`, nodeID, v).Scan(&st)
		switch {
		case err != nil:
			return nil, db.Found(err, ErrNotFound)
		case st == StateApproved:
			out, err = get(ctx, tx, nodeID, v)
			return nil, err
		case st != StatePending:
			return nil, fmt.Errorf("%w: version %d is %s", ErrNotPending, v, st)
		}
		if err := setState(ctx, tx, nodeID, current, StateSuperseded); err != nil {
			return nil, err
		}
		if err := setState(ctx, tx, nodeID, v, StateApproved); err != nil {
			return nil, err
		}
		if out, err = get(ctx, tx, nodeID, v); err != nil {
			return nil, err
		}
		return []eventlog.Event{{Type: EventApproved, NodeID: nodeID, Time: db.UTC(now), Details: eventlog.Details(
			DetailVersion, version(v), DetailAuthor, author, DetailPreviousVersion, version(current))}}, nil
	})
	return db.Result(out, err, "approve bundle %d of node %s", v, nodeID)
}

// Reset drops the current and pending versions and records the reset.
func (s *SQLStore) Reset(ctx context.Context, nodeID, author string, now time.Time, keep int) (Meta, error) {
	if author == "" {
		return Meta{}, fmt.Errorf("reset bundle of node %s: author is empty", nodeID)
	}
	m := Meta{NodeID: nodeID, State: StateReset, Author: author, CreatedAt: db.UTC(now)}
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		last, current, pending, err := lock(ctx, tx, nodeID)
		switch {
		case err != nil:
			return nil, err
		case current == 0 && pending == 0:
			return nil, ErrNotFound
		}
		m.Version = last + 1
		if err := s.add(ctx, tx, Bundle{Meta: m}, keep, current, pending); err != nil {
			return nil, err
		}
		return []eventlog.Event{{Type: EventReset, NodeID: nodeID, Time: m.CreatedAt, Details: eventlog.Details(
			DetailVersion, version(m.Version), DetailAuthor, author)}}, nil
	})
	return db.Result(m, err, "reset bundle of node %s", nodeID)
}

// Delete forgets every version of nodeID; its versions go with it (ON
// DELETE CASCADE).
func (s *SQLStore) Delete(ctx context.Context, nodeID string) error {
	_, err := s.DB.ExecContext(ctx, `DELETE FROM bundle_nodes WHERE node_id = $1`, nodeID)
	return db.Wrap(err, "delete bundles of node %s", nodeID)
}

// lock creates the node's row if needed and locks it until the transaction
// ends (the no-op update takes the row lock on PostgreSQL; SQLite's
// transactions hold the whole database), so that writes to one node
// serialise on both engines. It returns the highest version number used so
// far and the current and pending version numbers, 0 for none.
func lock(ctx context.Context, tx *sql.Tx, nodeID string) (last, current, pending int64, err error) {
	err = tx.QueryRowContext(ctx, `INSERT INTO bundle_nodes (node_id, last_version) VALUES ($1, 0)
		ON CONFLICT (node_id) DO UPDATE SET last_version = bundle_nodes.last_version
		RETURNING last_version`, nodeID).Scan(&last)
	if err != nil {
		return 0, 0, 0, err
	}
	live, err := db.Collect(ctx, tx, scanMeta, `SELECT `+metaColumns+` FROM bundle_versions
		WHERE node_id = $1 AND state IN ('approved', 'pending')`, nodeID)
	for _, m := range live {
		if m.State == StateApproved {
			current = m.Version
		} else {
			pending = m.Version
		}
	}
	return last, current, pending, err
}

// setState changes the state of version v (none when v is 0).
func setState(ctx context.Context, tx *sql.Tx, nodeID string, v int64, st State) error {
	if v == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE bundle_versions SET state = $1 WHERE node_id = $2 AND version = $3`, string(st), nodeID, v)
	return err
}

// add supersedes the versions given, inserts b as the node's newest
// version, and trims history to the newest keep versions.
func (s *SQLStore) add(ctx context.Context, tx *sql.Tx, b Bundle, keep int, superseded ...int64) error {
	for _, v := range superseded {
		if err := setState(ctx, tx, b.NodeID, v, StateSuperseded); err != nil {
			return err
		}
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	d := s.DB.Dialect
	if _, err := tx.ExecContext(ctx, `INSERT INTO bundle_versions (`+columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		b.NodeID, b.Version, string(b.State), b.Size, b.Digest, int64(b.KEMID), b.Author, d.Time(b.CreatedAt), db.Bytes(b.Sealed)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE bundle_nodes SET last_version = $1 WHERE node_id = $2`, b.Version, b.NodeID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM bundle_versions
		WHERE node_id = $1 AND version <= $2 AND state IN ('superseded', 'reset')`, b.NodeID, b.Version-int64(keep))
	return err
}

// get returns a version with its content.
func get(ctx context.Context, tx *sql.Tx, nodeID string, v int64) (Bundle, error) {
	return scanBundle(tx.QueryRowContext(ctx, `SELECT `+columns+` FROM bundle_versions WHERE node_id = $1 AND version = $2`, nodeID, v))
}

// version formats a version number for event details; "" (left out) for 0.
func version(v int64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatInt(v, 10)
}
