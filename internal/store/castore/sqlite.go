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

const issuedColumns = `serial, node_id, not_before, not_after, issued_at, der`

const revocationColumns = `serial, node_id, reason, revoked_at`

type scanner interface{ Scan(dest ...any) error }

func scanSQLiteIssued(row scanner) (Issued, error) {
	var (
		c                   Issued
		notBefore, notAfter int64
		issuedAt            int64
	)
	if err := row.Scan(&c.Serial, &c.NodeID, &notBefore, &notAfter, &issuedAt, &c.DER); err != nil {
		return Issued{}, err
	}
	c.NotBefore, c.NotAfter, c.IssuedAt = fromMicros(notBefore), fromMicros(notAfter), fromMicros(issuedAt)
	c.DER = nilIfEmpty(c.DER)
	return c, nil
}

func scanSQLiteRevocation(row scanner) (Revocation, error) {
	var (
		r         Revocation
		revokedAt int64
	)
	if err := row.Scan(&r.Serial, &r.NodeID, &r.Reason, &revokedAt); err != nil {
		return Revocation{}, err
	}
	r.RevokedAt = fromMicros(revokedAt)
	return r, nil
}

// RecordIssued stores c.
func (s *SQLiteStore) RecordIssued(ctx context.Context, c Issued) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO ca_issued (`+issuedColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Serial, c.NodeID, micros(c.NotBefore), micros(c.NotAfter), micros(c.IssuedAt), nonNilBytes(c.DER))
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
	c, err := scanSQLiteIssued(s.db.QueryRowContext(ctx, `SELECT `+issuedColumns+` FROM ca_issued WHERE serial = ?`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return Issued{}, fmt.Errorf("get issued %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("get issued %s: %w", serial, err)
	}
	return c, nil
}

// issuedWhere builds the filter shared by ListIssued and CountIssued.
func issuedWhere(nodeID string, since time.Time, placeholder func(int) string) (string, []any) {
	q := ` WHERE true`
	var args []any
	if nodeID != "" {
		args = append(args, nodeID)
		q += ` AND node_id = ` + placeholder(len(args))
	}
	if !since.IsZero() {
		args = append(args, since)
		q += ` AND issued_at >= ` + placeholder(len(args))
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
	rows, err := s.db.QueryContext(ctx, `SELECT `+issuedColumns+` FROM ca_issued`+where+` ORDER BY issued_at, serial`,
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
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM ca_issued`+where, sqliteArgs(args)...).Scan(&n); err != nil {
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
		SELECT serial, node_id, ?, ? FROM ca_issued WHERE serial = ?
		ON CONFLICT (serial) DO NOTHING`, r.Reason, micros(r.RevokedAt), r.Serial); err != nil {
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
