package castore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/berth-dev/berth/internal/db"
)

// PostgresStore is the Store on PostgreSQL, shared by every replica of the CA
// service.
type PostgresStore struct {
	pool *pgxpool.Pool
}

var _ Store = (*PostgresStore)(nil)

// NewPostgres connects to the database named by dsn and brings the CA tables
// up to date.
func NewPostgres(ctx context.Context, dsn string) (*PostgresStore, error) {
	pool, err := db.OpenPostgresSchema(ctx, dsn, schema)
	if err != nil {
		return nil, fmt.Errorf("ca store: %w", err)
	}
	return &PostgresStore{pool: pool}, nil
}

// Close closes the connection pool.
func (s *PostgresStore) Close() { s.pool.Close() }

func scanPostgresIssued(row pgx.Row) (Issued, error) {
	var (
		c           Issued
		reason      *string
		revokedAt   *time.Time
		nodeRevoked *bool
	)
	if err := row.Scan(&c.Serial, &c.NodeID, &c.NotBefore, &c.NotAfter, &c.IssuedAt, &c.DER, &c.RequestID, &c.KeySHA256,
		&reason, &revokedAt, &nodeRevoked); err != nil {
		return Issued{}, err
	}
	c.NotBefore, c.NotAfter, c.IssuedAt = c.NotBefore.UTC(), c.NotAfter.UTC(), c.IssuedAt.UTC()
	c.DER, c.KeySHA256 = nilIfEmpty(c.DER), nilIfEmpty(c.KeySHA256)
	if revokedAt != nil {
		c.Revocation = &Revocation{Serial: c.Serial, NodeID: c.NodeID, Reason: *reason, RevokedAt: revokedAt.UTC(), Node: *nodeRevoked}
	}
	return c, nil
}

func scanPostgresRevocation(row pgx.Row) (Revocation, error) {
	var r Revocation
	if err := row.Scan(&r.Serial, &r.NodeID, &r.Reason, &r.RevokedAt, &r.Node); err != nil {
		return Revocation{}, err
	}
	r.RevokedAt = r.RevokedAt.UTC()
	return r, nil
}

// RecordIssued stores c.
func (s *PostgresStore) RecordIssued(ctx context.Context, c Issued) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO ca_issued (`+issuedColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		c.Serial, c.NodeID, utc(c.NotBefore), utc(c.NotAfter), utc(c.IssuedAt), nonNilBytes(c.DER),
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
func (s *PostgresStore) GetIssued(ctx context.Context, serial string) (Issued, error) {
	c, err := scanPostgresIssued(s.pool.QueryRow(ctx, issuedSelect+` WHERE i.serial = $1`, serial))
	if errors.Is(err, pgx.ErrNoRows) {
		return Issued{}, fmt.Errorf("get issued %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("get issued %s: %w", serial, err)
	}
	return c, nil
}

// GetIssuedByRequest returns the certificate issued for requestID.
func (s *PostgresStore) GetIssuedByRequest(ctx context.Context, requestID string) (Issued, error) {
	if requestID == "" {
		return Issued{}, fmt.Errorf("get issued for request: empty request ID: %w", ErrNotFound)
	}
	c, err := scanPostgresIssued(s.pool.QueryRow(ctx, issuedSelect+` WHERE i.request_id = $1`, requestID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Issued{}, fmt.Errorf("get issued for request %s: %w", requestID, ErrNotFound)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("get issued for request %s: %w", requestID, err)
	}
	return c, nil
}

func postgresPlaceholder(i int) string { return fmt.Sprintf("$%d", i) }

// postgresArgs normalises times as they are stored.
func postgresArgs(args []any) []any {
	for i, a := range args {
		if t, ok := a.(time.Time); ok {
			args[i] = utc(t)
		}
	}
	return args
}

// ListIssued returns matching certificates, oldest first.
func (s *PostgresStore) ListIssued(ctx context.Context, nodeID string, since time.Time) ([]Issued, error) {
	where, args := issuedWhere(nodeID, since, postgresPlaceholder)
	rows, err := s.pool.Query(ctx, issuedSelect+where+` ORDER BY i.issued_at, i.serial`,
		postgresArgs(args)...)
	if err != nil {
		return nil, fmt.Errorf("list issued: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Issued, error) { return scanPostgresIssued(r) })
	if err != nil {
		return nil, fmt.Errorf("list issued: %w", err)
	}
	return nilIfEmpty(cs), nil
}

// CountIssued counts matching certificates.
func (s *PostgresStore) CountIssued(ctx context.Context, nodeID string, since time.Time) (int64, error) {
	where, args := issuedWhere(nodeID, since, postgresPlaceholder)
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM ca_issued i`+where, postgresArgs(args)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count issued: %w", err)
	}
	return n, nil
}

// Revoke records a revocation unless one exists, and returns the one stored.
func (s *PostgresStore) Revoke(ctx context.Context, r Revocation) (Revocation, error) {
	// A concurrent Revoke of the same serial waits on the primary key and then
	// does nothing; revocation rows never change afterwards, so the read that
	// follows needs no transaction.
	if _, err := s.pool.Exec(ctx, `INSERT INTO ca_revocations (`+revocationColumns+`)
		SELECT serial, node_id, $1, $2, $3 FROM ca_issued WHERE serial = $4
		ON CONFLICT (serial) DO NOTHING`, r.Reason, utc(r.RevokedAt), r.Node, r.Serial); err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	got, err := scanPostgresRevocation(s.pool.QueryRow(ctx,
		`SELECT `+revocationColumns+` FROM ca_revocations WHERE serial = $1`, r.Serial))
	if errors.Is(err, pgx.ErrNoRows) {
		return Revocation{}, fmt.Errorf("revoke %s: %w", r.Serial, ErrNotFound)
	}
	if err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", r.Serial, err)
	}
	return got, nil
}

// RevokeNode revokes the node's certificates but those for key keep.
func (s *PostgresStore) RevokeNode(ctx context.Context, nodeID string, keep []byte, r Revocation) (int64, error) {
	tag, err := s.pool.Exec(ctx, fmt.Sprintf(revokeNodeSQL, "$1", "$2", "$3", "$4", "$5::bytea"),
		r.Reason, utc(r.RevokedAt), r.Node, nodeID, nonNilBytes(keep))
	if err != nil {
		return 0, fmt.Errorf("revoke node %s: %w", nodeID, err)
	}
	return tag.RowsAffected(), nil
}

// ListRevocations returns revocations since the given time, oldest first.
func (s *PostgresStore) ListRevocations(ctx context.Context, since time.Time) ([]Revocation, error) {
	q := `SELECT ` + revocationColumns + ` FROM ca_revocations`
	var args []any
	if !since.IsZero() {
		q += ` WHERE revoked_at >= $1`
		args = append(args, utc(since))
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY revoked_at, serial`, args...)
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Revocation, error) { return scanPostgresRevocation(r) })
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	return nilIfEmpty(rs), nil
}
