// Package bundlestore is the bundles service's store: the sealed
// configuration bundles of every node, in versions, with the one a node
// gets, the one waiting for approval, and a short history.
//
// Every version of a node's bundle is one record, numbered from 1 up per
// node; a number is never used twice for one node (until Delete forgets the
// node). Its State says what it is:
//
//   - approved: the current version, the one the node gets. At most one.
//   - pending: a node's upload held for approval. At most one. The node
//     keeps getting the approved version meanwhile, and cannot upload
//     another until this one is approved or dropped.
//   - superseded: a version that was current and was replaced, or a
//     pending one that an administrator's write or a reset dropped.
//   - reset: a marker that the bundle was reset (by Author, at CreatedAt).
//     It has no content. After a reset the node has no current version, so
//     Get says ErrNotFound and the next Put expects version 0, as for a
//     node that never had a bundle.
//
// Writes compare and swap on the current version: Put names the version it
// replaces (0 for none) and fails with ErrStale if that is not the current
// one. Every error leaves the store as it was.
//
// History is trimmed on every write that adds a version: superseded and
// reset records older than the newest keep versions go; the current and
// pending versions stay whatever their age. Versions in history keep their
// sealed bytes, so a node takes the space of at most keep+1 bundles.
//
// # Events
//
// The store keeps an event log (package eventlog) that the management
// engine follows by cursor. Every write appends its event in the
// transaction that makes the change, so the two commit together, and a
// refused write appends nothing:
//
//	Put      bundle_updated: version, state (approved or pending), author,
//	         and dropped_pending (the version an administrator's write
//	         superseded) when there was one
//	Approve  bundle_approved: version, author, and previous_version (the
//	         version it superseded) when there was one; approving the
//	         current version again changes nothing and appends nothing
//	Reset    bundle_reset: version (of the reset record), author
//	Delete   bundle_deleted: actor; none for a node without versions
//	SetApprovalPolicy
//	         bundle_settings_changed (of no node): approval (required,
//	         auto, or default when cleared), actor; clearing a policy that
//	         is not set appends nothing
//
// Every event also names who made the change as actor (for the first three,
// the author), as the other services' logs do. Details whose value would
// be empty are left out.
package bundlestore

import (
	"cmp"
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

// State is where a version stands; see the package documentation.
type State string

// The states of a version.
const (
	StateApproved   State = "approved"
	StatePending    State = "pending"
	StateSuperseded State = "superseded"
	StateReset      State = "reset"
)

// DefaultKeep is how many versions history keeps when not told.
const DefaultKeep = 10

// Meta describes a version without its content.
type Meta struct {
	NodeID  string
	Version int64
	State   State
	// Size is the length of the sealed bundle in bytes; 0 for a reset.
	Size int64
	// Digest is the lower-case hex SHA-256 of the sealed bundle; empty for
	// a reset.
	Digest string
	// KEMID is the HPKE KEM the bundle is sealed with; 0 for a reset.
	KEMID uint16
	// Author is who wrote (or reset) it, e.g. "node:<id>" or "admin:<name>".
	Author    string
	CreatedAt time.Time
}

// Bundle is a version with its content.
type Bundle struct {
	Meta
	// Sealed is the sealed bundle, ciphertext the store cannot read.
	Sealed []byte
}

// PutOptions says how Put stores a new version.
type PutOptions struct {
	// RequireApproval holds the new version as pending. Without it the
	// version becomes current at once.
	RequireApproval bool
	// ReplacePending lets the write go ahead while a version is pending,
	// superseding it: an administrator's write wins over a node's upload.
	// Without it Put fails with ErrPendingExists.
	ReplacePending bool
	// Keep is how many versions history keeps; 0 or less means DefaultKeep.
	Keep int
	// Version, when not 0, is the number the new version must get: Put
	// fails with a *VersionError unless it is the node's next number. A
	// bundle signed for a version number sets it, so that a write racing
	// it (a reset, another write) cannot make it land under a number it
	// is not signed for.
	Version int64
}

// VersionError is a Put whose PutOptions.Version is not the node's next
// version number, Next.
type VersionError struct{ Version, Next int64 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("version %d is not the next version, %d", e.Version, e.Next)
}

// Event types of the bundle log; see the package documentation.
const (
	EventUpdated  = "bundle_updated"
	EventApproved = "bundle_approved"
	EventReset    = "bundle_reset"
	// EventDeleted and EventSettingsChanged record administrators'
	// changes that are not versions: a node's bundles forgotten, the
	// approval policy set.
	EventDeleted         = "bundle_deleted"
	EventSettingsChanged = "bundle_settings_changed"
)

// EventTypes returns every event type the store appends.
func EventTypes() []string {
	return []string{EventUpdated, EventApproved, EventReset, EventDeleted, EventSettingsChanged}
}

// Keys of event details.
const (
	DetailVersion         = "version"
	DetailState           = "state"
	DetailAuthor          = "author"
	DetailDroppedPending  = "dropped_pending"
	DetailPreviousVersion = "previous_version"
	DetailActor           = "actor"
	DetailApproval        = "approval"
)

// Errors returned, wrapped, by every Store.
var (
	// ErrNotFound: no such bundle or version.
	ErrNotFound = errors.New("not found")
	// ErrStale: the expected version of a Put is not the current one.
	ErrStale = errors.New("expected version is not the current version")
	// ErrPendingExists: a version already waits for approval.
	ErrPendingExists = errors.New("a version is already pending approval")
	// ErrNotPending: Approve named a version that is neither pending nor current.
	ErrNotPending = errors.New("version is not pending approval")
)

// Policy is the stored approval policy of node uploads, and who set it.
type Policy struct {
	Approval  string // "required", "auto", or "" when not set
	UpdatedBy string
	UpdatedAt time.Time
}

// Store holds the bundles service's state. Implementations are safe for
// concurrent use by several goroutines and several processes (replicas) on
// one database: every write to a node's bundles is serialised. Times are
// stored in UTC at microsecond precision.
type Store interface {
	// Put stores a new version of nodeID's bundle if the current version is
	// expected (0 = none): current at once, or pending with
	// opts.RequireApproval. The caller fills in Sealed, Digest, KEMID,
	// Author and CreatedAt; the store sets NodeID, Version, State and Size
	// and returns the version stored. ErrPendingExists if a version is
	// pending (unless opts.ReplacePending), else ErrStale if expected is not
	// current, else a *VersionError if opts.Version is set and is not the
	// next number; whatever the error, nothing changes. A malformed bundle (no content,
	// digest, author or creation time, a negative expected version) is
	// refused with a plain error.
	Put(ctx context.Context, nodeID string, expected int64, b Bundle, opts PutOptions) (Bundle, error)
	// Get returns the current (approved) version; ErrNotFound if there is
	// none: never written, only pending, or reset.
	Get(ctx context.Context, nodeID string) (Bundle, error)
	// Pending returns the version waiting for approval; ErrNotFound if none.
	Pending(ctx context.Context, nodeID string) (Bundle, error)
	// ListCurrent returns the current versions of the nodes whose IDs
	// sort after afterID, in node ID order, at most limit (<= 0: all);
	// with nodeIDs, only of those nodes.
	ListCurrent(ctx context.Context, afterID string, limit int, nodeIDs ...string) ([]Bundle, error)
	// History describes the versions kept, newest first; none for a node
	// without any.
	History(ctx context.Context, nodeID string) ([]Meta, error)
	// Approve makes pending version `version` current and supersedes the
	// previous current one, recording who approved (author) at now.
	// Approving the current version again returns it unchanged.
	// ErrNotFound if there is no such version, ErrNotPending if it is
	// neither pending nor current.
	Approve(ctx context.Context, nodeID string, version int64, author string, now time.Time) (Bundle, error)
	// Reset supersedes the current and the pending version and records a
	// reset version by author at now; the node then has no bundle until the
	// next Put (which expects 0). ErrNotFound if there is neither a current
	// nor a pending version. keep trims history as for Put.
	Reset(ctx context.Context, nodeID, author string, now time.Time, keep int) (Meta, error)
	// Delete forgets every version of nodeID, for a node that is deleted,
	// by actor at now. It is not an error if there are none. Version
	// numbers start at 1 again.
	Delete(ctx context.Context, nodeID, actor string, now time.Time) error
	// ApprovalPolicy returns the approval policy an administrator stored
	// (Policy.Approval "" when none was, or it was cleared).
	ApprovalPolicy(ctx context.Context) (Policy, error)
	// SetApprovalPolicy stores approval ("required" or "auto") by actor at
	// now; "" clears it. Any other value is refused with a plain error.
	SetApprovalPolicy(ctx context.Context, approval, actor string, now time.Time) (Policy, error)
	// Events is the bundle event log, which the writes above append to.
	Events() eventlog.Log
	// Close releases the database.
	Close()
}

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
		return eventlog.One(EventUpdated, nodeID, b.CreatedAt, DetailVersion, version(b.Version), DetailState, string(b.State),
			DetailAuthor, b.Author, DetailDroppedPending, version(pending), DetailActor, b.Author), nil
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

// ListCurrent returns the current versions after afterID, by node ID.
func (s *SQLStore) ListCurrent(ctx context.Context, afterID string, limit int, nodeIDs ...string) ([]Bundle, error) {
	p := db.Params{string(StateApproved), afterID}
	q := `SELECT ` + columns + ` FROM bundle_versions WHERE state = $1 AND node_id > $2`
	if len(nodeIDs) > 0 {
		q += ` AND ` + p.In("node_id", nodeIDs)
	}
	q += ` ORDER BY node_id` + p.Limit(limit)
	bs, err := db.Collect(ctx, s.DB, scanBundle, q, p...)
	return db.Result(bs, err, "list current bundles")
}

// History describes the versions kept, newest first.
func (s *SQLStore) History(ctx context.Context, nodeID string) ([]Meta, error) {
	ms, err := db.Collect(ctx, s.DB, scanMeta, `SELECT `+metaColumns+` FROM bundle_versions WHERE node_id = $1 ORDER BY version DESC`, nodeID)
	return db.Result(ms, err, "bundle history of node %s", nodeID)
}

// Approve makes a pending version current.
func (s *SQLStore) Approve(ctx context.Context, nodeID string, v int64, author string, now time.Time) (Bundle, error) {
	out, err := eventlog.Do(ctx, s.Store, func(tx *sql.Tx) (Bundle, []eventlog.Event, error) {
		// While a version is pending the current one cannot change (node
		// uploads are refused; administrator writes and resets supersede
		// the pending version), so it is still the one the upload replaces.
		_, current, _, err := lock(ctx, tx, nodeID)
		if err != nil {
			return Bundle{}, nil, err
		}
		var st State
		err = tx.QueryRowContext(ctx, `SELECT state FROM bundle_versions WHERE node_id = $1 AND version = $2`, nodeID, v).Scan(&st)
		switch {
		case err != nil:
			return Bundle{}, nil, db.Found(err, ErrNotFound)
		case st == StateApproved:
			out, err := get(ctx, tx, nodeID, v)
			return out, nil, err
		case st != StatePending:
			return Bundle{}, nil, fmt.Errorf("%w: version %d is %s", ErrNotPending, v, st)
		}
		if err := setState(ctx, tx, nodeID, current, StateSuperseded); err != nil {
			return Bundle{}, nil, err
		}
		if err := setState(ctx, tx, nodeID, v, StateApproved); err != nil {
			return Bundle{}, nil, err
		}
		out, err := get(ctx, tx, nodeID, v)
		return out, eventlog.One(EventApproved, nodeID, now, DetailVersion, version(v), DetailAuthor, author,
			DetailPreviousVersion, version(current), DetailActor, author), err
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
		return eventlog.One(EventReset, nodeID, m.CreatedAt, DetailVersion, version(m.Version), DetailAuthor, author,
			DetailActor, author), nil
	})
	return db.Result(m, err, "reset bundle of node %s", nodeID)
}

// Delete forgets every version of nodeID; its versions go with it (ON
// DELETE CASCADE).
func (s *SQLStore) Delete(ctx context.Context, nodeID, actor string, now time.Time) error {
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM bundle_nodes WHERE node_id = $1`, nodeID)
		if n, err := db.RowsAffected(res, err); err != nil || n == 0 {
			return nil, err
		}
		return eventlog.One(EventDeleted, nodeID, now, DetailActor, actor), nil
	})
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

// settingApproval names the approval policy in bundle_settings.
const settingApproval = "approval"

// ApprovalPolicy returns the stored approval policy.
func (s *SQLStore) ApprovalPolicy(ctx context.Context) (Policy, error) {
	var p Policy
	err := s.DB.QueryRowContext(ctx, `SELECT value, updated_by, updated_at FROM bundle_settings WHERE name = $1`, settingApproval).
		Scan(&p.Approval, &p.UpdatedBy, db.ScanTime(&p.UpdatedAt))
	if db.IsNoRows(err) {
		return Policy{}, nil
	}
	return db.Result(p, err, "read the approval policy")
}

// SetApprovalPolicy stores or clears the approval policy, with its event.
func (s *SQLStore) SetApprovalPolicy(ctx context.Context, approval, actor string, now time.Time) (Policy, error) {
	switch approval {
	case "", "required", "auto":
	default:
		return Policy{}, fmt.Errorf("set the approval policy: unknown policy %q", approval)
	}
	p := Policy{Approval: approval, UpdatedBy: actor, UpdatedAt: db.UTC(now)}
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		var (
			res sql.Result
			err error
		)
		if approval == "" {
			res, err = tx.ExecContext(ctx, `DELETE FROM bundle_settings WHERE name = $1`, settingApproval)
		} else {
			res, err = tx.ExecContext(ctx, `INSERT INTO bundle_settings (name, value, updated_at, updated_by) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
				settingApproval, approval, s.DB.Dialect.Time(now), actor)
		}
		if n, err := db.RowsAffected(res, err); err != nil || n == 0 {
			return nil, err
		}
		return eventlog.One(EventSettingsChanged, "", now, DetailApproval, cmp.Or(approval, "default"), DetailActor, actor), nil
	})
	if approval == "" {
		p = Policy{}
	}
	return db.Result(p, err, "set the approval policy")
}
