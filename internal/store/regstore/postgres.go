package regstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// PostgresStore is the Store on PostgreSQL, shared by every replica of the
// registration service.
type PostgresStore struct {
	pool   *pgxpool.Pool
	events *eventlog.SQLLog
}

var _ Store = (*PostgresStore)(nil)

// NewPostgres connects to the database named by dsn and brings the
// registration tables up to date.
func NewPostgres(ctx context.Context, dsn string) (*PostgresStore, error) {
	pool, err := db.OpenPostgresSchema(ctx, dsn, schema)
	if err != nil {
		return nil, fmt.Errorf("registration store: %w", err)
	}
	return &PostgresStore{pool: pool, events: eventlog.NewLog(db.FromPool(pool), events)}, nil
}

// Close closes the connection pool.
func (s *PostgresStore) Close() { s.pool.Close() }

// Events is the node lifecycle log.
func (s *PostgresStore) Events() eventlog.Log { return s.events }

// commit appends ev as the transaction's last write (see package eventlog)
// and commits; then it wakes this process's watchers.
func (s *PostgresStore) commit(ctx context.Context, tx pgx.Tx, evs ...eventlog.Event) error {
	if err := s.events.Append(ctx, db.PgxExec{Tx: tx}, evs...); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	s.events.Notify()
	return nil
}

func scanPostgresToken(row pgx.Row) (Token, error) {
	var t Token
	if err := row.Scan(&t.ID, &t.SecretHash, &t.ExpiresAt, &t.UsesLeft, &t.AutoApprove, &t.Labels,
		&t.Description, &t.Revoked, &t.CreatedAt, &t.MinIdentity, &t.AllowSiteSecret); err != nil {
		return Token{}, err
	}
	t.ExpiresAt, t.CreatedAt = t.ExpiresAt.UTC(), t.CreatedAt.UTC()
	t.Labels, t.SecretHash = nilIfEmptyMap(t.Labels), nilIfEmpty(t.SecretHash)
	return t, nil
}

func scanPostgresNode(row pgx.Row) (Node, error) {
	var (
		n                   Node
		status              string
		kem                 int32
		certSerial          *string
		notBefore, notAfter *time.Time
		chain               [][]byte
	)
	if err := row.Scan(&n.ID, &status, &n.KeySHA256, &n.HardwareUUID, &n.MACs, &n.Hostname, &n.Serial, &n.Labels,
		&kem, &n.BundleKey, &n.CSR, &n.TokenID, &n.ReplacementAllowed,
		&certSerial, &notBefore, &notAfter, &chain,
		&n.CertificatesIssued, &n.CreatedAt, &n.UpdatedAt, &n.IdentitySource); err != nil {
		return Node{}, err
	}
	n.Status, n.BundleKEM = Status(status), uint16(kem)
	n.CreatedAt, n.UpdatedAt = n.CreatedAt.UTC(), n.UpdatedAt.UTC()
	n.BundleKey, n.CSR = nilIfEmpty(n.BundleKey), nilIfEmpty(n.CSR)
	n.MACs, n.Labels = nilIfEmpty(n.MACs), nilIfEmptyMap(n.Labels)
	if certSerial != nil {
		c := &Cert{Serial: *certSerial, Chain: nilIfEmpty(chain)}
		if notBefore != nil {
			c.NotBefore = notBefore.UTC()
		}
		if notAfter != nil {
			c.NotAfter = notAfter.UTC()
		}
		n.Cert = c
	}
	return n, nil
}

// Columns are NOT NULL and JSON null is not an empty object, so nil
// collections are written as empty ones.

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilChain(c [][]byte) [][]byte {
	if c == nil {
		return [][]byte{}
	}
	return c
}

// CreateToken stores t.
func (s *PostgresStore) CreateToken(ctx context.Context, t Token) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO reg_tokens (`+tokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		t.ID, nonNilBytes(t.SecretHash), utc(t.ExpiresAt), t.UsesLeft, t.AutoApprove, nonNilMap(t.Labels),
		t.Description, t.Revoked, utc(t.CreatedAt), t.MinIdentity, t.AllowSiteSecret)
	if db.IsUniqueViolation(err) {
		return fmt.Errorf("create token %s: %w", t.ID, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

// GetToken returns token id.
func (s *PostgresStore) GetToken(ctx context.Context, id string) (Token, error) {
	t, err := scanPostgresToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM reg_tokens WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("get token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("get token %s: %w", id, err)
	}
	return t, nil
}

// ListTokens returns tokens by creation time.
func (s *PostgresStore) ListTokens(ctx context.Context, includeInactive bool, now time.Time) ([]Token, error) {
	q := `SELECT ` + tokenColumns + ` FROM reg_tokens`
	var args []any
	if !includeInactive {
		q += ` WHERE NOT revoked AND expires_at > $1 AND uses_left > 0`
		args = append(args, utc(now))
	}
	q += ` ORDER BY created_at, id`
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) { return scanPostgresToken(r) })
	ts = nilIfEmpty(ts)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// RevokeToken marks token id revoked.
func (s *PostgresStore) RevokeToken(ctx context.Context, id string) (Token, error) {
	t, err := scanPostgresToken(s.pool.QueryRow(ctx,
		`UPDATE reg_tokens SET revoked = true WHERE id = $1 RETURNING `+tokenColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return t, nil
}

// RegisterNode consumes a token use and creates or replaces a node, in one
// transaction.
func (s *PostgresStore) RegisterNode(ctx context.Context, tokenID string, now time.Time, n Node, replaceID string) (Node, error) {
	if err := checkNode(n); err != nil {
		return Node{}, fmt.Errorf("register node: %w", err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Node{}, fmt.Errorf("register node: %w", err)
	}
	defer tx.Rollback(ctx)

	// The row lock this UPDATE takes makes concurrent registrations with one
	// token queue; each re-checks uses_left once the previous one commits,
	// so a token is never over-spent.
	tag, err := tx.Exec(ctx, `UPDATE reg_tokens SET uses_left = uses_left - 1
		WHERE id = $1 AND NOT revoked AND expires_at > $2 AND uses_left > 0`, tokenID, utc(now))
	if err != nil {
		return Node{}, fmt.Errorf("register node: consume token: %w", err)
	}
	if tag.RowsAffected() != 1 {
		t, err := scanPostgresToken(tx.QueryRow(ctx, `SELECT `+tokenColumns+` FROM reg_tokens WHERE id = $1`, tokenID))
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return Node{}, fmt.Errorf("register node: read token: %w", err)
		}
		return Node{}, fmt.Errorf("register node: token %s: %w", tokenID, tokenError(t, err == nil, now))
	}

	at := utc(now)
	var out Node
	if replaceID == "" {
		out, err = scanPostgresNode(tx.QueryRow(ctx, `INSERT INTO reg_nodes (`+nodeColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, NULL, $14, $15, $15, $16)
			RETURNING `+nodeColumns,
			n.ID, string(n.Status), n.KeySHA256, n.HardwareUUID, nonNilStrings(n.MACs), n.Hostname, n.Serial, nonNilMap(n.Labels),
			int32(n.BundleKEM), nonNilBytes(n.BundleKey), nonNilBytes(n.CSR), tokenID, n.ReplacementAllowed,
			n.CertificatesIssued, at, n.IdentitySource))
	} else {
		out, err = scanPostgresNode(tx.QueryRow(ctx, `UPDATE reg_nodes SET
			status = $1, key_sha256 = $2, hardware_uuid = $3, macs = $4, hostname = $5, serial = $6, labels = $7,
			bundle_kem = $8, bundle_key = $9, csr = $10, token_id = $11, replacement_allowed = false,
			cert_serial = NULL, cert_not_before = NULL, cert_not_after = NULL, cert_chain = NULL,
			updated_at = $12, identity_source = $14
			WHERE id = $13 AND replacement_allowed RETURNING `+nodeColumns,
			string(n.Status), n.KeySHA256, n.HardwareUUID, nonNilStrings(n.MACs), n.Hostname, n.Serial, nonNilMap(n.Labels),
			int32(n.BundleKEM), nonNilBytes(n.BundleKey), nonNilBytes(n.CSR), tokenID, at, replaceID, n.IdentitySource))
		if errors.Is(err, pgx.ErrNoRows) {
			return Node{}, fmt.Errorf("register node: replace %s: %w", replaceID, missing(ctx, tx, replaceID, ErrPrecondition))
		}
	}
	if db.IsUniqueViolation(err) {
		return Node{}, fmt.Errorf("register node %s: %w", n.ID, ErrConflict)
	}
	if err != nil {
		return Node{}, fmt.Errorf("register node %s: %w", n.ID, err)
	}
	// Read committed: two nodes that register with the same MAC at the
	// same instant may each miss the other, and then neither gets the
	// event; both still show as duplicates (duplicate_of is worked out on
	// every read).
	others, err := postgresNodesByHardware(ctx, tx, []string{out.HardwareUUID}, out.MACs)
	if err != nil {
		return Node{}, fmt.Errorf("register node %s: look for duplicate hardware: %w", n.ID, err)
	}
	evs := append([]eventlog.Event{registeredEvent(out, tokenID, replaceID, at)}, duplicateEvent(out, others, at)...)
	if err := s.commit(ctx, tx, evs...); err != nil {
		return Node{}, fmt.Errorf("register node %s: %w", n.ID, err)
	}
	return out, nil
}

// postgresNodesByHardware is NodesByHardware on q; both tests are indexed
// (hardware_uuid, and GIN on macs).
func postgresNodesByHardware(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, uuids, macs []string) ([]Node, error) {
	uuids, macs = nonEmpty(uuids), nonEmpty(macs)
	if len(uuids) == 0 && len(macs) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT `+nodeColumns+` FROM reg_nodes
		WHERE hardware_uuid = ANY($1) OR macs && $2::text[] ORDER BY id`, nonNilStrings(uuids), nonNilStrings(macs))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Node, error) { return scanPostgresNode(r) })
}

// NodesByHardware returns the nodes sharing any of the UUIDs or MACs.
func (s *PostgresStore) NodesByHardware(ctx context.Context, uuids, macs []string) ([]Node, error) {
	ns, err := postgresNodesByHardware(ctx, s.pool, uuids, macs)
	if err != nil {
		return nil, fmt.Errorf("nodes by hardware: %w", err)
	}
	return ns, nil
}

// NoteDuplicate appends a refused claim on node id's hardware.
func (s *PostgresStore) NoteDuplicate(ctx context.Context, id string, now time.Time, c Claim) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("note duplicate of node %s: %w", id, err)
	}
	defer tx.Rollback(ctx)
	if err := missing(ctx, tx, id, nil); err != nil {
		return fmt.Errorf("note duplicate of node %s: %w", id, err)
	}
	if err := s.commit(ctx, tx, claimEvent(id, c, utc(now))); err != nil {
		return fmt.Errorf("note duplicate of node %s: %w", id, err)
	}
	return nil
}

// missing explains why a conditional update of node id matched nothing:
// ErrNotFound if the node does not exist, else the given error.
func missing(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id string, otherwise error) error {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM reg_nodes WHERE id = $1`, id).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return err
	}
	return otherwise
}

// GetNode returns node id.
func (s *PostgresStore) GetNode(ctx context.Context, id string) (Node, error) {
	n, err := scanPostgresNode(s.pool.QueryRow(ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Node{}, fmt.Errorf("get node %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("get node %s: %w", id, err)
	}
	return n, nil
}

// GetNodeByKey returns the node whose identity key hashes to keySHA256. pgx
// prepares and caches the statement per connection.
func (s *PostgresStore) GetNodeByKey(ctx context.Context, keySHA256 []byte) (Node, error) {
	n, err := scanPostgresNode(s.pool.QueryRow(ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE key_sha256 = $1`, keySHA256))
	if errors.Is(err, pgx.ErrNoRows) {
		return Node{}, fmt.Errorf("get node by key %x: %w", keySHA256, ErrNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("get node by key %x: %w", keySHA256, err)
	}
	return n, nil
}

func (s *PostgresStore) queryNodes(ctx context.Context, q string, args ...any) ([]Node, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Node, error) { return scanPostgresNode(r) })
}

// NodesByHardwareUUID returns the nodes reporting uuid.
func (s *PostgresStore) NodesByHardwareUUID(ctx context.Context, uuid string) ([]Node, error) {
	if uuid == "" {
		return nil, nil
	}
	ns, err := s.queryNodes(ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE hardware_uuid = $1 ORDER BY id`, uuid)
	if err != nil {
		return nil, fmt.Errorf("nodes by hardware UUID %s: %w", uuid, err)
	}
	return nilIfEmpty(ns), nil
}

// ListNodes returns the nodes matching f.
func (s *PostgresStore) ListNodes(ctx context.Context, f NodeFilter) ([]Node, error) {
	q := `SELECT ` + nodeColumns + ` FROM reg_nodes WHERE true`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Status != "" {
		q += ` AND status = ` + arg(string(f.Status))
	}
	if len(f.Labels) > 0 {
		q += ` AND labels @> ` + arg(f.Labels) + `::jsonb`
	}
	if f.AfterID != "" {
		q += ` AND id > ` + arg(f.AfterID)
	}
	q += ` ORDER BY id`
	if f.Limit > 0 {
		q += ` LIMIT ` + arg(f.Limit)
	}
	ns, err := s.queryNodes(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return nilIfEmpty(ns), nil
}

// SetStatus moves node id from one of from to to, with an event when the
// status changes.
func (s *PostgresStore) SetStatus(ctx context.Context, id string, from []Status, to Status, now time.Time, actor string) (Node, error) {
	if !to.Valid() {
		return Node{}, fmt.Errorf("set status of node %s: unknown status %q", id, to)
	}
	n, err := s.setStatus(ctx, id, from, to, now, actor)
	if err != nil {
		return Node{}, fmt.Errorf("set status of node %s to %s: %w", id, to, err)
	}
	return n, nil
}

func (s *PostgresStore) setStatus(ctx context.Context, id string, from []Status, to Status, now time.Time, actor string) (Node, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Node{}, err
	}
	defer tx.Rollback(ctx)
	// The row lock holds the status still until the event is appended.
	var cur string
	err = tx.QueryRow(ctx, `SELECT status FROM reg_nodes WHERE id = $1 FOR UPDATE`, id).Scan(&cur)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Node{}, ErrNotFound
	case err != nil:
		return Node{}, err
	case !slices.Contains(from, Status(cur)):
		return Node{}, ErrPrecondition
	}
	n, err := scanPostgresNode(tx.QueryRow(ctx, `UPDATE reg_nodes SET status = $1, updated_at = $2
		WHERE id = $3 RETURNING `+nodeColumns, string(to), utc(now), id))
	if err != nil {
		return Node{}, err
	}
	if Status(cur) == to {
		return n, tx.Commit(ctx)
	}
	return n, s.commit(ctx, tx, statusEvent(id, Status(cur), to, utc(now), actor))
}

// SetCertificate replaces the node's certificate if it is still prevSerial.
func (s *PostgresStore) SetCertificate(ctx context.Context, id, prevSerial string, c Cert, now time.Time) (Node, error) {
	if c.Serial == "" {
		return Node{}, fmt.Errorf("set certificate of node %s: empty serial", id)
	}
	n, err := s.setCertificate(ctx, id, prevSerial, c, now)
	if err != nil {
		return Node{}, fmt.Errorf("set certificate of node %s: %w", id, err)
	}
	return n, nil
}

func (s *PostgresStore) setCertificate(ctx context.Context, id, prevSerial string, c Cert, now time.Time) (Node, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Node{}, err
	}
	defer tx.Rollback(ctx)
	n, err := scanPostgresNode(tx.QueryRow(ctx, `UPDATE reg_nodes SET
		cert_serial = $1, cert_not_before = $2, cert_not_after = $3, cert_chain = $4,
		certificates_issued = certificates_issued + 1, updated_at = $5
		WHERE id = $6 AND COALESCE(cert_serial, '') = $7 RETURNING `+nodeColumns,
		c.Serial, utc(c.NotBefore), utc(c.NotAfter), nonNilChain(c.Chain), utc(now), id, prevSerial))
	if errors.Is(err, pgx.ErrNoRows) {
		return Node{}, missing(ctx, tx, id, ErrConflict)
	}
	if err != nil {
		return Node{}, err
	}
	return n, s.commit(ctx, tx, certificateEvent(id, prevSerial, c, utc(now)))
}

// AllowReplacement marks node id replaceable.
func (s *PostgresStore) AllowReplacement(ctx context.Context, id string, now time.Time) (Node, error) {
	n, err := scanPostgresNode(s.pool.QueryRow(ctx,
		`UPDATE reg_nodes SET replacement_allowed = true, updated_at = $1 WHERE id = $2 RETURNING `+nodeColumns, utc(now), id))
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Node{}, fmt.Errorf("allow replacement of node %s: %w", id, err)
	}
	return n, nil
}

// DeleteNode deletes node id, with its event.
func (s *PostgresStore) DeleteNode(ctx context.Context, id string, now time.Time, actor string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM reg_nodes WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return s.events.Append(ctx, db.PgxExec{Tx: tx}, deletedEvent(id, utc(now), actor))
	})
	if err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	s.events.Notify()
	return nil
}
