// Package castore is the CA service's store: the record of every certificate
// issued and of every revocation, from which revocation lists are built.
package castore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/db"
)

// Issued is a certificate the CA signed.
type Issued struct {
	Serial    string // lower-case hex
	NodeID    string
	NotBefore time.Time
	NotAfter  time.Time
	IssuedAt  time.Time
	DER       []byte
	// RequestID is the registration service's ID of the request that asked
	// for it; Sign is idempotent on it. Empty for certificates recorded
	// before request IDs existed.
	RequestID string
	// KeySHA256 is the SHA-256 of the certificate's public key (SPKI).
	KeySHA256 []byte
	// Revocation is the certificate's revocation, nil while it is valid.
	// GetIssuedByRequest and ListIssued fill it; RecordIssued ignores it.
	Revocation *Revocation
}

// Revocation records that an issued certificate must no longer be trusted.
type Revocation struct {
	Serial    string
	NodeID    string // always that of the issued certificate
	Reason    string
	RevokedAt time.Time
	// Node says the node itself was revoked or deleted, so that services
	// deny its node ID, not only this certificate. It is false when only
	// the certificate was revoked: a replaced board's, whose node lives on
	// under a new key.
	Node bool
}

// Errors returned, wrapped, by every Store.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// Store holds the CA service's state. Implementations are safe for concurrent
// use by several goroutines and several processes (replicas) on one database.
// Times are stored in UTC at microsecond precision.
type Store interface {
	// RecordIssued stores c; ErrConflict if its serial, or its non-empty
	// RequestID, is already recorded. Two replicas racing on one request
	// therefore record one certificate; the loser reads the winner's with
	// GetIssuedByRequest.
	RecordIssued(ctx context.Context, c Issued) error
	// GetIssuedByRequest returns the certificate issued for a request ID;
	// ErrNotFound if none (an empty ID never matches).
	GetIssuedByRequest(ctx context.Context, requestID string) (Issued, error)
	// ListIssued returns the certificates issued to nodeID ("" = any) at or
	// after since (zero = ever), oldest first (ties by serial).
	ListIssued(ctx context.Context, nodeID string, since time.Time) ([]Issued, error)
	// CountIssued counts what ListIssued would return, for rate limits.
	CountIssued(ctx context.Context, nodeID string, since time.Time) (int64, error)
	// Revoke records a revocation of an issued serial (ErrNotFound if never
	// issued); revoking again returns the existing revocation unchanged. The
	// NodeID is taken from the issued certificate, whatever r says.
	Revoke(ctx context.Context, r Revocation) (Revocation, error)
	// RevokeNode revokes, in one statement, every certificate issued to
	// nodeID whose key hash is not keep (nil keep: every one), with r's
	// Reason, RevokedAt and Node; certificates already revoked keep their
	// revocation. It returns how many it revoked now. A node with no
	// certificates is not an error.
	RevokeNode(ctx context.Context, nodeID string, keep []byte, r Revocation) (int64, error)
	// ListRevocations returns revocations made at or after since (zero =
	// all), oldest first (ties by serial).
	ListRevocations(ctx context.Context, since time.Time) ([]Revocation, error)
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
// PostgreSQL, shared by every replica of the CA service.
type SQLStore struct {
	db *db.DB
	// record batches RecordIssued's inserts: every registration of a storm
	// records its certificate at once.
	record *db.Group[struct{}]
}

var _ Store = (*SQLStore)(nil)

// Open opens the database at where (a path for SQLite, a DSN for
// PostgreSQL) and brings the CA tables up to date; "ca" names them in
// schema_migrations.
func Open(ctx context.Context, d db.Dialect, where string) (*SQLStore, error) {
	h, err := db.OpenSchema(ctx, d, where, db.Schema{Service: "ca", FS: migrations})
	return db.Result(&SQLStore{db: h, record: &db.Group[struct{}]{DB: h}}, err, "ca store")
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

func scanIssued(row db.Scanner) (Issued, error) {
	var (
		c           Issued
		reason      sql.NullString
		revokedAt   time.Time
		nodeRevoked sql.NullBool
	)
	if err := row.Scan(&c.Serial, &c.NodeID, db.ScanTime(&c.NotBefore), db.ScanTime(&c.NotAfter), db.ScanTime(&c.IssuedAt),
		db.ScanBytes(&c.DER), &c.RequestID, db.ScanBytes(&c.KeySHA256), &reason, db.ScanTime(&revokedAt), &nodeRevoked); err != nil {
		return Issued{}, err
	}
	if reason.Valid { // the LEFT JOIN found a revocation
		c.Revocation = &Revocation{Serial: c.Serial, NodeID: c.NodeID, Reason: reason.String, RevokedAt: revokedAt, Node: nodeRevoked.Bool}
	}
	return c, nil
}

func scanRevocation(row db.Scanner) (Revocation, error) {
	var r Revocation
	err := row.Scan(&r.Serial, &r.NodeID, &r.Reason, db.ScanTime(&r.RevokedAt), &r.Node)
	return r, err
}

// RecordIssued stores c.
func (s *SQLStore) RecordIssued(ctx context.Context, c Issued) error {
	d := s.db.Dialect
	_, err := s.record.Tx(ctx, func(ctx context.Context, tx *sql.Tx) (struct{}, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO ca_issued (`+issuedColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			c.Serial, c.NodeID, d.Time(c.NotBefore), d.Time(c.NotAfter), d.Time(c.IssuedAt), db.Bytes(c.DER), c.RequestID, db.Bytes(c.KeySHA256))
		return struct{}{}, err
	})
	if db.IsUniqueViolation(err) {
		err = ErrConflict
	}
	return db.Wrap(err, "record issued %s", c.Serial)
}

// GetIssuedByRequest returns the certificate issued for requestID.
func (s *SQLStore) GetIssuedByRequest(ctx context.Context, requestID string) (Issued, error) {
	if requestID == "" {
		return Issued{}, fmt.Errorf("get issued for request: empty request ID: %w", ErrNotFound)
	}
	c, err := scanIssued(s.db.QueryRowContext(ctx, issuedSelect+` WHERE i.request_id = $1`, requestID))
	return db.Result(c, db.Found(err, ErrNotFound), "get issued for request %s", requestID)
}

// issuedWhere builds the filter shared by ListIssued and CountIssued.
func (s *SQLStore) issuedWhere(nodeID string, since time.Time) (string, db.Params) {
	q, p := ` WHERE TRUE`, db.Params{}
	if nodeID != "" {
		q += ` AND i.node_id = ` + p.Add(nodeID)
	}
	if !since.IsZero() {
		q += ` AND i.issued_at >= ` + p.Add(s.db.Dialect.Time(since))
	}
	return q, p
}

// ListIssued returns matching certificates, oldest first.
func (s *SQLStore) ListIssued(ctx context.Context, nodeID string, since time.Time) ([]Issued, error) {
	where, p := s.issuedWhere(nodeID, since)
	cs, err := db.Collect(ctx, s.db, scanIssued, issuedSelect+where+` ORDER BY i.issued_at, i.serial`, p...)
	return db.Result(cs, err, "list issued")
}

// CountIssued counts matching certificates.
func (s *SQLStore) CountIssued(ctx context.Context, nodeID string, since time.Time) (int64, error) {
	where, p := s.issuedWhere(nodeID, since)
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM ca_issued i`+where, p...).Scan(&n)
	return db.Result(n, err, "count issued")
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
	return db.Result(got, db.Found(err, ErrNotFound), "revoke %s", r.Serial)
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
	n, err := db.RowsAffected(s.db.ExecContext(ctx, `INSERT INTO ca_revocations (`+revocationColumns+`)
	SELECT serial, node_id, $1, $2, $3 FROM ca_issued WHERE node_id = $4`+kept+`
	ON CONFLICT (serial) DO UPDATE SET node_revoked = excluded.node_revoked, revoked_at = excluded.revoked_at
	WHERE excluded.node_revoked AND NOT ca_revocations.node_revoked`, args...))
	return db.Result(n, err, "revoke node %s", nodeID)
}

// ListRevocations returns revocations since the given time, oldest first.
func (s *SQLStore) ListRevocations(ctx context.Context, since time.Time) ([]Revocation, error) {
	q, p := `SELECT `+revocationColumns+` FROM ca_revocations`, db.Params{}
	if !since.IsZero() {
		q += ` WHERE revoked_at >= ` + p.Add(s.db.Dialect.Time(since))
	}
	rs, err := db.Collect(ctx, s.db, scanRevocation, q+` ORDER BY revoked_at, serial`, p...)
	return db.Result(rs, err, "list revocations")
}
