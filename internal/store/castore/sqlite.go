package castore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/db"
)

// SQLiteStore is the Store on an embedded SQLite database, for `berthd dev`
// and single-machine deployments.
type SQLiteStore struct {
	db *sql.DB
}

var _ Store = (*SQLiteStore)(nil)

// NewSQLite opens the SQLite database at path, creating it and its directory
// if needed, and brings its schema up to date.
func NewSQLite(ctx context.Context, path string) (*SQLiteStore, error) {
	d, err := db.OpenSQLiteSchema(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("ca store: %w", err)
	}
	return &SQLiteStore{db: d}, nil
}

// Close closes the database.
func (s *SQLiteStore) Close() { s.db.Close() }

const issuedColumns = `serial, node_id, not_before, not_after, issued_at, der, request_id, key_sha256`

// issuedSelect reads certificates with their revocations; filters name the
// certificate's columns with the prefix i.
const issuedSelect = `SELECT i.serial, i.node_id, i.not_before, i.not_after, i.issued_at, i.der, i.request_id, i.key_sha256,
	r.reason, r.revoked_at, r.node_revoked
	FROM ca_issued i LEFT JOIN ca_revocations r ON r.serial = i.serial`

const revocationColumns = `serial, node_id, reason, revoked_at, node_revoked`

// revokeNodeSQL revokes a node's certificates (an empty keep keeps none:
// certificates recorded before 0002 have an empty key hash); a certificate revoked alone
// before (a replaced board's) becomes a node revocation when the node is
// revoked, with a new time so that caches polling by time see it.
const revokeNodeSQL = `INSERT INTO ca_revocations (` + revocationColumns + `)
	SELECT serial, node_id, %[1]s, %[2]s, %[3]s FROM ca_issued
	WHERE node_id = %[4]s AND (length(%[5]s) = 0 OR key_sha256 <> %[5]s)
	ON CONFLICT (serial) DO UPDATE SET node_revoked = excluded.node_revoked, revoked_at = excluded.revoked_at
	WHERE excluded.node_revoked AND NOT ca_revocations.node_revoked`

type scanner interface{ Scan(dest ...any) error }

func scanSQLiteIssued(row scanner) (Issued, error) {
	var (
		c                   Issued
		notBefore, notAfter int64
		issuedAt            int64
		reason              sql.NullString
		revokedAt           sql.NullInt64
		nodeRevoked         sql.NullBool
	)
	if err := row.Scan(&c.Serial, &c.NodeID, &notBefore, &notAfter, &issuedAt, &c.DER, &c.RequestID, &c.KeySHA256,
		&reason, &revokedAt, &nodeRevoked); err != nil {
		return Issued{}, err
	}
	c.NotBefore, c.NotAfter, c.IssuedAt = fromMicros(notBefore), fromMicros(notAfter), fromMicros(issuedAt)
	c.DER, c.KeySHA256 = nilIfEmpty(c.DER), nilIfEmpty(c.KeySHA256)
	if revokedAt.Valid {
		c.Revocation = &Revocation{Serial: c.Serial, NodeID: c.NodeID, Reason: reason.String,
			RevokedAt: fromMicros(revokedAt.Int64), Node: nodeRevoked.Bool}
	}
	return c, nil
}

func scanSQLiteRevocation(row scanner) (Revocation, error) {
	var (
		r         Revocation
		revokedAt int64
	)
	if err := row.Scan(&r.Serial, &r.NodeID, &r.Reason, &revokedAt, &r.Node); err != nil {
		return Revocation{}, err
	}
	r.RevokedAt = fromMicros(revokedAt)
	return r, nil
}

// RecordIssued stores c.
func (s *SQLiteStore) RecordIssued(ctx context.Context, c Issued) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO ca_issued (`+issuedColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Serial, c.NodeID, micros(c.NotBefore), micros(c.NotAfter), micros(c.IssuedAt), nonNilBytes(c.DER),
		c.RequestID, nonNilBytes(c.KeySHA256))
	if db.IsUniqueViolation(err) {
		return fmt.Errorf("record issued %s: %w", c.Serial, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("record issued %s: %w", c.Serial, err)
	}
	return nil
}

// GetIssued returns the certificate with the given serial.
func (s *SQLiteStore) GetIssued(ctx context.Context, serial string) (Issued, error) {
	c, err := scanSQLiteIssued(s.db.QueryRowContext(ctx, issuedSelect+` WHERE i.serial = ?`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return Issued{}, fmt.Errorf("get issued %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("get issued %s: %w", serial, err)
	}
	return c, nil
}

// GetIssuedByRequest returns the certificate issued for requestID.
func (s *SQLiteStore) GetIssuedByRequest(ctx context.Context, requestID string) (Issued, error) {
	if requestID == "" {
		return Issued{}, fmt.Errorf("get issued for request: empty request ID: %w", ErrNotFound)
	}
	c, err := scanSQLiteIssued(s.db.QueryRowContext(ctx, issuedSelect+` WHERE i.request_id = ?`, requestID))
	if errors.Is(err, sql.ErrNoRows) {
		return Issued{}, fmt.Errorf("get issued for request %s: %w", requestID, ErrNotFound)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("get issued for request %s: %w", requestID, err)
	}
	return c, nil
}

// issuedWhere builds the filter shared by ListIssued and CountIssued.
func issuedWhere(nodeID string, since time.Time, placeholder func(int) string) (string, []any) {
	q := ` WHERE true`
	var args []any
	if nodeID != "" {
		args = append(args, nodeID)
		q += ` AND i.node_id = ` + placeholder(len(args))
	}
	if !since.IsZero() {
		args = append(args, since)
		q += ` AND i.issued_at >= ` + placeholder(len(args))
	}
	return q, args
}

func sqlitePlaceholder(int) string { return "?" }

// sqliteArgs converts times to the SQLite encoding.
func sqliteArgs(args []any) []any {
	for i, a := range args {
		if t, ok := a.(time.Time); ok {
			args[i] = micros(t)
		}
	}
	return args
}

// ListIssued returns matching certificates, oldest first.
func (s *SQLiteStore) ListIssued(ctx context.Context, nodeID string, since time.Time) ([]Issued, error) {
	where, args := issuedWhere(nodeID, since, sqlitePlaceholder)
	rows, err := s.db.QueryContext(ctx, issuedSelect+where+` ORDER BY i.issued_at, i.serial`,
		sqliteArgs(args)...)
	if err != nil {
		return nil, fmt.Errorf("list issued: %w", err)
	}
	defer rows.Close()
	var cs []Issued
	for rows.Next() {
		c, err := scanSQLiteIssued(rows)
		if err != nil {
			return nil, fmt.Errorf("list issued: %w", err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list issued: %w", err)
	}
	return cs, nil
}

// CountIssued counts matching certificates.
func (s *SQLiteStore) CountIssued(ctx context.Context, nodeID string, since time.Time) (int64, error) {
	where, args := issuedWhere(nodeID, since, sqlitePlaceholder)
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM ca_issued i`+where, sqliteArgs(args)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count issued: %w", err)
	}
	return n, nil
}

// Revoke records a revocation unless one exists, and returns the one stored.
func (s *SQLiteStore) Revoke(ctx context.Context, r Revocation) (Revocation, error) {
	// Insert-if-issued and do-nothing-if-revoked in one statement; revocation
	// rows never change afterwards, so the read that follows needs no
	// transaction.
	if _, err := s.db.ExecContext(ctx, `INSERT INTO ca_revocations (`+revocationColumns+`)
		SELECT serial, node_id, ?, ?, ? FROM ca_issued WHERE serial = ?
		ON CONFLICT (serial) DO NOTHING`, r.Reason, micros(r.RevokedAt), r.Node, r.Serial); err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	got, err := scanSQLiteRevocation(s.db.QueryRowContext(ctx,
		`SELECT `+revocationColumns+` FROM ca_revocations WHERE serial = ?`, r.Serial))
	if errors.Is(err, sql.ErrNoRows) {
		return Revocation{}, fmt.Errorf("revoke %s: %w", r.Serial, ErrNotFound)
	}
	if err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	return got, nil
}

// RevokeNode revokes the node's certificates but those for key keep.
func (s *SQLiteStore) RevokeNode(ctx context.Context, nodeID string, keep []byte, r Revocation) (int64, error) {
	res, err := s.db.ExecContext(ctx, fmt.Sprintf(revokeNodeSQL, "?1", "?2", "?3", "?4", "?5"),
		r.Reason, micros(r.RevokedAt), r.Node, nodeID, nonNilBytes(keep))
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
func (s *SQLiteStore) ListRevocations(ctx context.Context, since time.Time) ([]Revocation, error) {
	q := `SELECT ` + revocationColumns + ` FROM ca_revocations`
	var args []any
	if !since.IsZero() {
		q += ` WHERE revoked_at >= ?`
		args = append(args, micros(since))
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY revoked_at, serial`, args...)
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	defer rows.Close()
	var rs []Revocation
	for rows.Next() {
		r, err := scanSQLiteRevocation(rows)
		if err != nil {
			return nil, fmt.Errorf("list revocations: %w", err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	return rs, nil
}
