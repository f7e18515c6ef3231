package castore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/db"
)

// SQLStore is the Store on SQLite (`berthd dev`, one machine) or on
// PostgreSQL, shared by every replica of the CA service.
type SQLStore struct {
	db *db.DB
}

var _ Store = (*SQLStore)(nil)

// Open opens the database at where (a path for SQLite, a DSN for
// PostgreSQL) and brings the CA tables up to date.
func Open(ctx context.Context, d db.Dialect, where string) (*SQLStore, error) {
	h, err := db.OpenSchema(ctx, d, where, schema)
	if err != nil {
		return nil, fmt.Errorf("ca store: %w", err)
	}
	return &SQLStore{db: h}, nil
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

const issuedColumns = `serial, node_id, not_before, not_after, issued_at, der, request_id, key_sha256`

// issuedSelect reads certificates with their revocations; filters name the
// certificate's columns with the prefix i.
const issuedSelect = `SELECT i.serial, i.node_id, i.not_before, i.not_after, i.issued_at, i.der, i.request_id, i.key_sha256,
	r.reason, r.revoked_at, r.node_revoked
	FROM ca_issued i LEFT JOIN ca_revocations r ON r.serial = i.serial`

const revocationColumns = `serial, node_id, reason, revoked_at, node_revoked`

type scanner interface{ Scan(dest ...any) error }

func scanIssued(row scanner) (Issued, error) {
	var (
		c           Issued
		reason      sql.NullString
		revokedAt   time.Time
		nodeRevoked sql.NullBool
	)
	if err := row.Scan(&c.Serial, &c.NodeID, db.ScanTime(&c.NotBefore), db.ScanTime(&c.NotAfter), db.ScanTime(&c.IssuedAt),
		&c.DER, &c.RequestID, &c.KeySHA256, &reason, db.ScanTime(&revokedAt), &nodeRevoked); err != nil {
		return Issued{}, err
	}
	c.DER, c.KeySHA256 = nilIfEmpty(c.DER), nilIfEmpty(c.KeySHA256)
	if reason.Valid { // the LEFT JOIN found a revocation
		c.Revocation = &Revocation{Serial: c.Serial, NodeID: c.NodeID, Reason: reason.String, RevokedAt: revokedAt, Node: nodeRevoked.Bool}
	}
	return c, nil
}

func scanRevocation(row scanner) (Revocation, error) {
	var r Revocation
	err := row.Scan(&r.Serial, &r.NodeID, &r.Reason, db.ScanTime(&r.RevokedAt), &r.Node)
	return r, err
}

// RecordIssued stores c.
func (s *SQLStore) RecordIssued(ctx context.Context, c Issued) error {
	d := s.db.Dialect
	_, err := s.db.ExecContext(ctx, `INSERT INTO ca_issued (`+issuedColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		c.Serial, c.NodeID, d.Time(c.NotBefore), d.Time(c.NotAfter), d.Time(c.IssuedAt), nonNil(c.DER), c.RequestID, nonNil(c.KeySHA256))
	if db.IsUniqueViolation(err) {
		return fmt.Errorf("record issued %s: %w", c.Serial, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("record issued %s: %w", c.Serial, err)
	}
	return nil
}

// GetIssued returns the certificate with the given serial.
func (s *SQLStore) GetIssued(ctx context.Context, serial string) (Issued, error) {
	c, err := scanIssued(s.db.QueryRowContext(ctx, issuedSelect+` WHERE i.serial = $1`, serial))
	if db.IsNoRows(err) {
		return Issued{}, fmt.Errorf("get issued %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("get issued %s: %w", serial, err)
	}
	return c, nil
}

// GetIssuedByRequest returns the certificate issued for requestID.
func (s *SQLStore) GetIssuedByRequest(ctx context.Context, requestID string) (Issued, error) {
	if requestID == "" {
		return Issued{}, fmt.Errorf("get issued for request: empty request ID: %w", ErrNotFound)
	}
	c, err := scanIssued(s.db.QueryRowContext(ctx, issuedSelect+` WHERE i.request_id = $1`, requestID))
	if db.IsNoRows(err) {
		return Issued{}, fmt.Errorf("get issued for request %s: %w", requestID, ErrNotFound)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("get issued for request %s: %w", requestID, err)
	}
	return c, nil
}

// issuedWhere builds the filter shared by ListIssued and CountIssued.
func (s *SQLStore) issuedWhere(nodeID string, since time.Time) (string, []any) {
	q := ` WHERE TRUE`
	var args []any
	if nodeID != "" {
		args = append(args, nodeID)
		q += fmt.Sprintf(` AND i.node_id = $%d`, len(args))
	}
	if !since.IsZero() {
		args = append(args, s.db.Dialect.Time(since))
		q += fmt.Sprintf(` AND i.issued_at >= $%d`, len(args))
	}
	return q, args
}

// ListIssued returns matching certificates, oldest first.
func (s *SQLStore) ListIssued(ctx context.Context, nodeID string, since time.Time) ([]Issued, error) {
	where, args := s.issuedWhere(nodeID, since)
	rows, err := s.db.QueryContext(ctx, issuedSelect+where+` ORDER BY i.issued_at, i.serial`, args...)
	if err != nil {
		return nil, fmt.Errorf("list issued: %w", err)
	}
	cs, err := collect(rows, scanIssued)
	if err != nil {
		return nil, fmt.Errorf("list issued: %w", err)
	}
	return cs, nil
}

// CountIssued counts matching certificates.
func (s *SQLStore) CountIssued(ctx context.Context, nodeID string, since time.Time) (int64, error) {
	where, args := s.issuedWhere(nodeID, since)
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM ca_issued i`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count issued: %w", err)
	}
	return n, nil
}

// Revoke records a revocation unless one exists, and returns the one stored.
func (s *SQLStore) Revoke(ctx context.Context, r Revocation) (Revocation, error) {
	// Insert-if-issued and do-nothing-if-revoked in one statement; the read
	// that follows needs no transaction, as a revocation only ever grows
	// from a certificate's to its node's.
	if _, err := s.db.ExecContext(ctx, `INSERT INTO ca_revocations (`+revocationColumns+`)
		SELECT serial, node_id, $1, $2, $3 FROM ca_issued WHERE serial = $4
		ON CONFLICT (serial) DO NOTHING`, r.Reason, s.db.Dialect.Time(r.RevokedAt), r.Node, r.Serial); err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	got, err := scanRevocation(s.db.QueryRowContext(ctx, `SELECT `+revocationColumns+` FROM ca_revocations WHERE serial = $1`, r.Serial))
	if db.IsNoRows(err) {
		return Revocation{}, fmt.Errorf("revoke %s: %w", r.Serial, ErrNotFound)
	}
	if err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	return got, nil
}

// RevokeNode revokes the node's certificates but those for key keep (an
// empty keep keeps none: certificates recorded before 0002 have an empty
// key hash). A certificate revoked alone before (a replaced board's)
// becomes a node revocation when the node is revoked, with a new time so
// that caches polling by time see it.
func (s *SQLStore) RevokeNode(ctx context.Context, nodeID string, keep []byte, r Revocation) (int64, error) {
	args := []any{r.Reason, s.db.Dialect.Time(r.RevokedAt), r.Node, nodeID}
	kept := ""
	if len(keep) > 0 {
		args, kept = append(args, keep), ` AND key_sha256 <> $5`
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO ca_revocations (`+revocationColumns+`)
	SELECT serial, node_id, $1, $2, $3 FROM ca_issued WHERE node_id = $4`+kept+`
	ON CONFLICT (serial) DO UPDATE SET node_revoked = excluded.node_revoked, revoked_at = excluded.revoked_at
	WHERE excluded.node_revoked AND NOT ca_revocations.node_revoked`, args...)
	if err != nil {
		return 0, fmt.Errorf("revoke node %s: %w", nodeID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("revoke node %s: %w", nodeID, err)
	}
	return n, nil
}

// ListRevocations returns revocations since the given time, oldest first.
func (s *SQLStore) ListRevocations(ctx context.Context, since time.Time) ([]Revocation, error) {
	q := `SELECT ` + revocationColumns + ` FROM ca_revocations`
	var args []any
	if !since.IsZero() {
		q += ` WHERE revoked_at >= $1`
		args = append(args, s.db.Dialect.Time(since))
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY revoked_at, serial`, args...)
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	rs, err := collect(rows, scanRevocation)
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	return rs, nil
}

// collect scans every row; nil when there is none.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// nonNil stores a missing byte string as an empty one: the columns are NOT
// NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
