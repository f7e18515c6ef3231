package regstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// SQLiteStore is the Store on an embedded SQLite database, for `berthd dev`
// and single-machine deployments.
type SQLiteStore struct {
	db *sql.DB
	// byKey is prepared once because every boot runs it; database/sql keeps
	// one prepared copy per pooled connection.
	byKey  *sql.Stmt
	events *eventlog.SQLLog
}

var _ Store = (*SQLiteStore)(nil)

// NewSQLite opens the SQLite database at path, creating it and its directory
// if needed, and brings its schema up to date.
func NewSQLite(ctx context.Context, path string) (*SQLiteStore, error) {
	d, err := db.OpenSQLiteSchema(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("registration store: %w", err)
	}
	byKey, err := d.PrepareContext(ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE key_sha256 = ?`)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("registration store: %w", err)
	}
	return &SQLiteStore{db: d, byKey: byKey, events: eventlog.NewLog(&db.DB{DB: d, Dialect: db.SQLite}, events)}, nil
}

// Events is the node lifecycle log.
func (s *SQLiteStore) Events() eventlog.Log { return s.events }

// commit appends ev and commits; then it wakes this process's watchers.
func (s *SQLiteStore) commit(ctx context.Context, tx *sql.Tx, evs ...eventlog.Event) error {
	if err := s.events.Append(ctx, tx, evs...); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.events.Notify()
	return nil
}

// Close closes the database.
func (s *SQLiteStore) Close() {
	s.byKey.Close()
	s.db.Close()
}

type scanner interface{ Scan(dest ...any) error }

func scanSQLiteToken(row scanner) (Token, error) {
	var (
		t                  Token
		expires, created   int64
		labels             string
		autoApprove, revok bool
	)
	if err := row.Scan(&t.ID, &t.SecretHash, &expires, &t.UsesLeft, &autoApprove, &labels,
		&t.Description, &revok, &created, &t.MinIdentity, &t.AllowSiteSecret); err != nil {
		return Token{}, err
	}
	t.ExpiresAt, t.CreatedAt = fromMicros(expires), fromMicros(created)
	t.AutoApprove, t.Revoked = autoApprove, revok
	if err := json.Unmarshal([]byte(labels), &t.Labels); err != nil {
		return Token{}, fmt.Errorf("token %s labels: %w", t.ID, err)
	}
	t.Labels, t.SecretHash = nilIfEmptyMap(t.Labels), nilIfEmpty(t.SecretHash)
	return t, nil
}

func scanSQLiteNode(row scanner) (Node, error) {
	var (
		n                    Node
		status, macs, labels string
		kem                  int64
		certSerial, chain    sql.NullString
		notBefore, notAfter  sql.NullInt64
		created, updated     int64
	)
	if err := row.Scan(&n.ID, &status, &n.KeySHA256, &n.HardwareUUID, &macs, &n.Hostname, &n.Serial, &labels,
		&kem, &n.BundleKey, &n.CSR, &n.TokenID, &n.ReplacementAllowed,
		&certSerial, &notBefore, &notAfter, &chain,
		&n.CertificatesIssued, &created, &updated, &n.IdentitySource); err != nil {
		return Node{}, err
	}
	n.Status, n.BundleKEM = Status(status), uint16(kem)
	n.CreatedAt, n.UpdatedAt = fromMicros(created), fromMicros(updated)
	n.BundleKey, n.CSR = nilIfEmpty(n.BundleKey), nilIfEmpty(n.CSR)
	if err := json.Unmarshal([]byte(macs), &n.MACs); err != nil {
		return Node{}, fmt.Errorf("node %s MACs: %w", n.ID, err)
	}
	if err := json.Unmarshal([]byte(labels), &n.Labels); err != nil {
		return Node{}, fmt.Errorf("node %s labels: %w", n.ID, err)
	}
	n.MACs, n.Labels = nilIfEmpty(n.MACs), nilIfEmptyMap(n.Labels)
	if certSerial.Valid {
		c := &Cert{Serial: certSerial.String, NotBefore: fromMicros(notBefore.Int64), NotAfter: fromMicros(notAfter.Int64)}
		if err := json.Unmarshal([]byte(chain.String), &c.Chain); err != nil {
			return Node{}, fmt.Errorf("node %s chain: %w", n.ID, err)
		}
		c.Chain = nilIfEmpty(c.Chain)
		n.Cert = c
	}
	return n, nil
}

// jsonText encodes v for a JSON TEXT column; nil collections become empty
// ones so that the column is never JSON null.
func jsonText(v any) string {
	switch x := v.(type) {
	case map[string]string:
		if x == nil {
			return "{}"
		}
	case []string:
		if x == nil {
			return "[]"
		}
	case [][]byte:
		if x == nil {
			return "[]"
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and slices of strings or bytes always encode
	}
	return string(b)
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// CreateToken stores t.
func (s *SQLiteStore) CreateToken(ctx context.Context, t Token) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO reg_tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, nonNilBytes(t.SecretHash), micros(t.ExpiresAt), t.UsesLeft, t.AutoApprove, jsonText(t.Labels),
		t.Description, t.Revoked, micros(t.CreatedAt), t.MinIdentity, t.AllowSiteSecret)
	if db.IsUniqueViolation(err) {
		return fmt.Errorf("create token %s: %w", t.ID, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

// GetToken returns token id.
func (s *SQLiteStore) GetToken(ctx context.Context, id string) (Token, error) {
	t, err := scanSQLiteToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM reg_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("get token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("get token %s: %w", id, err)
	}
	return t, nil
}

// ListTokens returns tokens by creation time.
func (s *SQLiteStore) ListTokens(ctx context.Context, includeInactive bool, now time.Time) ([]Token, error) {
	q := `SELECT ` + tokenColumns + ` FROM reg_tokens`
	var args []any
	if !includeInactive {
		q += ` WHERE NOT revoked AND expires_at > ? AND uses_left > 0`
		args = append(args, micros(now))
	}
	q += ` ORDER BY created_at, id`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var ts []Token
	for rows.Next() {
		t, err := scanSQLiteToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// RevokeToken marks token id revoked.
func (s *SQLiteStore) RevokeToken(ctx context.Context, id string) (Token, error) {
	t, err := scanSQLiteToken(s.db.QueryRowContext(ctx,
		`UPDATE reg_tokens SET revoked = 1 WHERE id = ? RETURNING `+tokenColumns, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return t, nil
}

// RegisterNode consumes a token use and creates or replaces a node, in one
// transaction.
func (s *SQLiteStore) RegisterNode(ctx context.Context, tokenID string, now time.Time, n Node, replaceID string) (Node, error) {
	if err := checkNode(n); err != nil {
		return Node{}, fmt.Errorf("register node: %w", err)
	}
	// BEGIN IMMEDIATE (see db.OpenSQLite): the token check and the write
	// happen under the write lock, so concurrent registrations serialise.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Node{}, fmt.Errorf("register node: %w", err)
	}
	defer tx.Rollback()

	res, err := tx.ExecContext(ctx, `UPDATE reg_tokens SET uses_left = uses_left - 1
		WHERE id = ? AND NOT revoked AND expires_at > ? AND uses_left > 0`, tokenID, micros(now))
	if err != nil {
		return Node{}, fmt.Errorf("register node: consume token: %w", err)
	}
	if k, err := res.RowsAffected(); err != nil || k != 1 {
		t, err := scanSQLiteToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM reg_tokens WHERE id = ?`, tokenID))
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return Node{}, fmt.Errorf("register node: read token: %w", err)
		}
		return Node{}, fmt.Errorf("register node: token %s: %w", tokenID, tokenError(t, err == nil, now))
	}

	at := micros(now)
	var out Node
	if replaceID == "" {
		out, err = scanSQLiteNode(tx.QueryRowContext(ctx, `INSERT INTO reg_nodes (`+nodeColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING `+nodeColumns,
			n.ID, n.Status, n.KeySHA256, n.HardwareUUID, jsonText(n.MACs), n.Hostname, n.Serial, jsonText(n.Labels),
			n.BundleKEM, nonNilBytes(n.BundleKey), nonNilBytes(n.CSR), tokenID, n.ReplacementAllowed,
			nil, nil, nil, nil,
			n.CertificatesIssued, at, at, n.IdentitySource))
	} else {
		out, err = scanSQLiteNode(tx.QueryRowContext(ctx, `UPDATE reg_nodes SET
			status = ?, key_sha256 = ?, hardware_uuid = ?, macs = ?, hostname = ?, serial = ?, labels = ?,
			bundle_kem = ?, bundle_key = ?, csr = ?, token_id = ?, replacement_allowed = 0,
			cert_serial = NULL, cert_not_before = NULL, cert_not_after = NULL, cert_chain = NULL,
			updated_at = ?, identity_source = ?
			WHERE id = ? AND replacement_allowed RETURNING `+nodeColumns,
			n.Status, n.KeySHA256, n.HardwareUUID, jsonText(n.MACs), n.Hostname, n.Serial, jsonText(n.Labels),
			n.BundleKEM, nonNilBytes(n.BundleKey), nonNilBytes(n.CSR), tokenID, at, n.IdentitySource, replaceID))
		if errors.Is(err, sql.ErrNoRows) {
			return Node{}, fmt.Errorf("register node: replace %s: %w", replaceID, s.missing(ctx, tx, replaceID, ErrPrecondition))
		}
	}
	if db.IsUniqueViolation(err) {
		return Node{}, fmt.Errorf("register node %s: %w", n.ID, ErrConflict)
	}
	if err != nil {
		return Node{}, fmt.Errorf("register node %s: %w", n.ID, err)
	}
	// In the registering transaction, under SQLite's write lock: of two
	// nodes that register with the same MAC at once, the second sees the
	// first.
	others, err := sqliteNodesByHardware(ctx, tx, []string{out.HardwareUUID}, out.MACs)
	if err != nil {
		return Node{}, fmt.Errorf("register node %s: look for duplicate hardware: %w", n.ID, err)
	}
	evs := append([]eventlog.Event{registeredEvent(out, tokenID, replaceID, utc(now))}, duplicateEvent(out, others, utc(now))...)
	if err := s.commit(ctx, tx, evs...); err != nil {
		return Node{}, fmt.Errorf("register node %s: %w", n.ID, err)
	}
	return out, nil
}

// querier is what sqliteNodesByHardware needs of a *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// sqliteNodesByHardware is NodesByHardware on q. The values go in as JSON
// arrays so that any number of them is two parameters. MACs are not
// indexed on SQLite: the MAC test scans the nodes, which suits the
// single-machine deployments SQLite serves.
func sqliteNodesByHardware(ctx context.Context, q querier, uuids, macs []string) ([]Node, error) {
	uuids, macs = nonEmpty(uuids), nonEmpty(macs)
	if len(uuids) == 0 && len(macs) == 0 {
		return nil, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT `+nodeColumns+` FROM reg_nodes
		WHERE hardware_uuid IN (SELECT value FROM json_each(?))
		OR EXISTS (SELECT 1 FROM json_each(reg_nodes.macs) AS m WHERE m.value IN (SELECT value FROM json_each(?)))
		ORDER BY id`, jsonText(uuids), jsonText(macs))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ns []Node
	for rows.Next() {
		n, err := scanSQLiteNode(rows)
		if err != nil {
			return nil, err
		}
		ns = append(ns, n)
	}
	return ns, rows.Err()
}

// NodesByHardware returns the nodes sharing any of the UUIDs or MACs.
func (s *SQLiteStore) NodesByHardware(ctx context.Context, uuids, macs []string) ([]Node, error) {
	ns, err := sqliteNodesByHardware(ctx, s.db, uuids, macs)
	if err != nil {
		return nil, fmt.Errorf("nodes by hardware: %w", err)
	}
	return ns, nil
}

// NoteDuplicate appends a refused claim on node id's hardware.
func (s *SQLiteStore) NoteDuplicate(ctx context.Context, id string, now time.Time, c Claim) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("note duplicate of node %s: %w", id, err)
	}
	defer tx.Rollback()
	if err := s.missing(ctx, tx, id, nil); err != nil {
		return fmt.Errorf("note duplicate of node %s: %w", id, err)
	}
	if err := s.commit(ctx, tx, claimEvent(id, c, utc(now))); err != nil {
		return fmt.Errorf("note duplicate of node %s: %w", id, err)
	}
	return nil
}

// missing explains why a conditional update of node id matched nothing:
// ErrNotFound if the node does not exist, else the given error.
func (s *SQLiteStore) missing(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string, otherwise error) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM reg_nodes WHERE id = ?`, id).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return err
	}
	return otherwise
}

// GetNode returns node id.
func (s *SQLiteStore) GetNode(ctx context.Context, id string) (Node, error) {
	n, err := scanSQLiteNode(s.db.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, fmt.Errorf("get node %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("get node %s: %w", id, err)
	}
	return n, nil
}

// GetNodeByKey returns the node whose identity key hashes to keySHA256.
func (s *SQLiteStore) GetNodeByKey(ctx context.Context, keySHA256 []byte) (Node, error) {
	n, err := scanSQLiteNode(s.byKey.QueryRowContext(ctx, keySHA256))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, fmt.Errorf("get node by key %x: %w", keySHA256, ErrNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("get node by key %x: %w", keySHA256, err)
	}
	return n, nil
}

func (s *SQLiteStore) queryNodes(ctx context.Context, q string, args ...any) ([]Node, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ns []Node
	for rows.Next() {
		n, err := scanSQLiteNode(rows)
		if err != nil {
			return nil, err
		}
		ns = append(ns, n)
	}
	return ns, rows.Err()
}

// NodesByHardwareUUID returns the nodes reporting uuid.
func (s *SQLiteStore) NodesByHardwareUUID(ctx context.Context, uuid string) ([]Node, error) {
	if uuid == "" {
		return nil, nil
	}
	ns, err := s.queryNodes(ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE hardware_uuid = ? ORDER BY id`, uuid)
	if err != nil {
		return nil, fmt.Errorf("nodes by hardware UUID %s: %w", uuid, err)
	}
	return ns, nil
}

// ListNodes returns the nodes matching f.
func (s *SQLiteStore) ListNodes(ctx context.Context, f NodeFilter) ([]Node, error) {
	var (
		where []string
		args  []any
	)
	if f.Status != "" {
		where = append(where, `status = ?`)
		args = append(args, f.Status)
	}
	// json_each rather than a JSON path, so that label keys need no quoting.
	keys := make([]string, 0, len(f.Labels))
	for k := range f.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		where = append(where, `EXISTS (SELECT 1 FROM json_each(reg_nodes.labels) AS l WHERE l.key = ? AND l.value = ?)`)
		args = append(args, k, f.Labels[k])
	}
	if f.AfterID != "" {
		where = append(where, `id > ?`)
		args = append(args, f.AfterID)
	}
	q := `SELECT ` + nodeColumns + ` FROM reg_nodes`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	ns, err := s.queryNodes(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return ns, nil
}

// SetStatus moves node id from one of from to to, with an event when the
// status changes.
func (s *SQLiteStore) SetStatus(ctx context.Context, id string, from []Status, to Status, now time.Time, actor string) (Node, error) {
	if !to.Valid() {
		return Node{}, fmt.Errorf("set status of node %s: unknown status %q", id, to)
	}
	n, err := s.setStatus(ctx, id, from, to, now, actor)
	if err != nil {
		return Node{}, fmt.Errorf("set status of node %s to %s: %w", id, to, err)
	}
	return n, nil
}

func (s *SQLiteStore) setStatus(ctx context.Context, id string, from []Status, to Status, now time.Time, actor string) (Node, error) {
	// BEGIN IMMEDIATE: nobody changes the status between the read and the
	// write.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Node{}, err
	}
	defer tx.Rollback()
	var cur string
	err = tx.QueryRowContext(ctx, `SELECT status FROM reg_nodes WHERE id = ?`, id).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Node{}, ErrNotFound
	case err != nil:
		return Node{}, err
	case !slices.Contains(from, Status(cur)):
		return Node{}, ErrPrecondition
	}
	n, err := scanSQLiteNode(tx.QueryRowContext(ctx,
		`UPDATE reg_nodes SET status = ?, updated_at = ? WHERE id = ? RETURNING `+nodeColumns, to, micros(now), id))
	if err != nil {
		return Node{}, err
	}
	if Status(cur) == to {
		return n, tx.Commit()
	}
	return n, s.commit(ctx, tx, statusEvent(id, Status(cur), to, utc(now), actor))
}

// SetCertificate replaces the node's certificate if it is still prevSerial.
func (s *SQLiteStore) SetCertificate(ctx context.Context, id, prevSerial string, c Cert, now time.Time) (Node, error) {
	if c.Serial == "" {
		return Node{}, fmt.Errorf("set certificate of node %s: empty serial", id)
	}
	n, err := s.setCertificate(ctx, id, prevSerial, c, now)
	if err != nil {
		return Node{}, fmt.Errorf("set certificate of node %s: %w", id, err)
	}
	return n, nil
}

func (s *SQLiteStore) setCertificate(ctx context.Context, id, prevSerial string, c Cert, now time.Time) (Node, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Node{}, err
	}
	defer tx.Rollback()
	n, err := scanSQLiteNode(tx.QueryRowContext(ctx, `UPDATE reg_nodes SET
		cert_serial = ?, cert_not_before = ?, cert_not_after = ?, cert_chain = ?,
		certificates_issued = certificates_issued + 1, updated_at = ?
		WHERE id = ? AND COALESCE(cert_serial, '') = ? RETURNING `+nodeColumns,
		c.Serial, micros(c.NotBefore), micros(c.NotAfter), jsonText(c.Chain), micros(now), id, prevSerial))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, s.missing(ctx, tx, id, ErrConflict)
	}
	if err != nil {
		return Node{}, err
	}
	return n, s.commit(ctx, tx, certificateEvent(id, prevSerial, c, utc(now)))
}

// AllowReplacement marks node id replaceable.
func (s *SQLiteStore) AllowReplacement(ctx context.Context, id string, now time.Time) (Node, error) {
	n, err := scanSQLiteNode(s.db.QueryRowContext(ctx,
		`UPDATE reg_nodes SET replacement_allowed = 1, updated_at = ? WHERE id = ? RETURNING `+nodeColumns, micros(now), id))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Node{}, fmt.Errorf("allow replacement of node %s: %w", id, err)
	}
	return n, nil
}

// DeleteNode deletes node id, with its event.
func (s *SQLiteStore) DeleteNode(ctx context.Context, id string, now time.Time, actor string) error {
	if err := s.deleteNode(ctx, id, now, actor); err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	return nil
}

func (s *SQLiteStore) deleteNode(ctx context.Context, id string, now time.Time, actor string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM reg_nodes WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if k, err := res.RowsAffected(); err != nil {
		return err
	} else if k == 0 {
		return ErrNotFound
	}
	return s.commit(ctx, tx, deletedEvent(id, utc(now), actor))
}
