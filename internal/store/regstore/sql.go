package regstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// SQLStore is the Store on SQLite (`berthd dev`, one machine) or on
// PostgreSQL, shared by every replica of the registration service.
type SQLStore struct {
	db *db.DB
	// byKey is prepared once because every boot runs it; database/sql keeps
	// one prepared copy per pooled connection.
	byKey  *sql.Stmt
	events *eventlog.SQLLog
}

var _ Store = (*SQLStore)(nil)

// Open opens the database at where (a path for SQLite, a DSN for
// PostgreSQL) and brings the registration tables up to date.
func Open(ctx context.Context, d db.Dialect, where string) (*SQLStore, error) {
	h, err := db.OpenSchema(ctx, d, where, schema)
	if err != nil {
		return nil, fmt.Errorf("registration store: %w", err)
	}
	byKey, err := h.PrepareContext(ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE key_sha256 = $1`)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("registration store: %w", err)
	}
	return &SQLStore{db: h, byKey: byKey, events: eventlog.NewLog(h, events)}, nil
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
func (s *SQLStore) Close() {
	s.byKey.Close()
	s.db.Close()
}

// Events is the node lifecycle log.
func (s *SQLStore) Events() eventlog.Log { return s.events }

// write runs fn in a transaction that appends the events fn returns as
// its last write (see package eventlog); then it wakes this process's
// watchers.
func (s *SQLStore) write(ctx context.Context, fn func(*sql.Tx) ([]eventlog.Event, error)) error {
	var appended bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		evs, err := fn(tx)
		if err != nil || len(evs) == 0 {
			return err
		}
		appended = true
		return s.events.Append(ctx, tx, evs...)
	})
	if err == nil && appended {
		s.events.Notify()
	}
	return err
}

type scanner interface{ Scan(dest ...any) error }

func scanToken(row scanner) (Token, error) {
	var (
		t      Token
		labels []byte
	)
	if err := row.Scan(&t.ID, &t.SecretHash, db.ScanTime(&t.ExpiresAt), &t.UsesLeft, &t.AutoApprove, &labels,
		&t.Description, &t.Revoked, db.ScanTime(&t.CreatedAt), &t.MinIdentity, &t.AllowSiteSecret); err != nil {
		return Token{}, err
	}
	if err := json.Unmarshal(labels, &t.Labels); err != nil {
		return Token{}, fmt.Errorf("token %s labels: %w", t.ID, err)
	}
	t.Labels, t.SecretHash = nilIfEmptyMap(t.Labels), nilIfEmpty(t.SecretHash)
	return t, nil
}

func scanNode(row scanner) (Node, error) {
	var (
		n                   Node
		kem                 int64
		macs, labels, chain []byte
		certSerial          sql.NullString
		notBefore, notAfter time.Time
	)
	if err := row.Scan(&n.ID, &n.Status, &n.KeySHA256, &n.HardwareUUID, &macs, &n.Hostname, &n.Serial, &labels,
		&kem, &n.BundleKey, &n.CSR, &n.TokenID, &n.ReplacementAllowed,
		&certSerial, db.ScanTime(&notBefore), db.ScanTime(&notAfter), &chain,
		&n.CertificatesIssued, db.ScanTime(&n.CreatedAt), db.ScanTime(&n.UpdatedAt), &n.IdentitySource,
		&n.EKHash, &n.EKCertificate); err != nil {
		return Node{}, err
	}
	n.BundleKEM = uint16(kem)
	n.BundleKey, n.CSR = nilIfEmpty(n.BundleKey), nilIfEmpty(n.CSR)
	if err := json.Unmarshal(macs, &n.MACs); err != nil {
		return Node{}, fmt.Errorf("node %s MACs: %w", n.ID, err)
	}
	if err := json.Unmarshal(labels, &n.Labels); err != nil {
		return Node{}, fmt.Errorf("node %s labels: %w", n.ID, err)
	}
	n.MACs, n.Labels = nilIfEmpty(n.MACs), nilIfEmptyMap(n.Labels)
	if certSerial.Valid {
		c := &Cert{Serial: certSerial.String, NotBefore: notBefore, NotAfter: notAfter}
		if len(chain) > 0 {
			if err := json.Unmarshal(chain, &c.Chain); err != nil {
				return Node{}, fmt.Errorf("node %s chain: %w", n.ID, err)
			}
		}
		c.Chain = nilIfEmpty(c.Chain)
		n.Cert = c
	}
	return n, nil
}

// jsonText encodes v for a JSON column (JSONB on PostgreSQL, TEXT on
// SQLite); nil collections become empty ones so that the column is never
// JSON null. Byte strings encode as base64.
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
func (s *SQLStore) CreateToken(ctx context.Context, t Token) error {
	d := s.db.Dialect
	_, err := s.db.ExecContext(ctx, `INSERT INTO reg_tokens (`+tokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		t.ID, nonNilBytes(t.SecretHash), d.Time(t.ExpiresAt), t.UsesLeft, t.AutoApprove, jsonText(t.Labels),
		t.Description, t.Revoked, d.Time(t.CreatedAt), t.MinIdentity, t.AllowSiteSecret)
	if db.IsUniqueViolation(err) {
		return fmt.Errorf("create token %s: %w", t.ID, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

// GetToken returns token id.
func (s *SQLStore) GetToken(ctx context.Context, id string) (Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM reg_tokens WHERE id = $1`, id))
	if db.IsNoRows(err) {
		return Token{}, fmt.Errorf("get token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("get token %s: %w", id, err)
	}
	return t, nil
}

// ListTokens returns tokens by creation time.
func (s *SQLStore) ListTokens(ctx context.Context, includeInactive bool, now time.Time) ([]Token, error) {
	q := `SELECT ` + tokenColumns + ` FROM reg_tokens`
	var args []any
	if !includeInactive {
		q += ` WHERE NOT revoked AND expires_at > $1 AND uses_left > 0`
		args = append(args, s.db.Dialect.Time(now))
	}
	ts, err := collect(s.db, ctx, q+` ORDER BY created_at, id`, args, scanToken)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// RevokeToken marks token id revoked.
func (s *SQLStore) RevokeToken(ctx context.Context, id string) (Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `UPDATE reg_tokens SET revoked = TRUE WHERE id = $1 RETURNING `+tokenColumns, id))
	if db.IsNoRows(err) {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return t, nil
}

// RegisterNode consumes a token use and creates or replaces a node, in one
// transaction.
func (s *SQLStore) RegisterNode(ctx context.Context, tokenID string, now time.Time, n Node, replaceID string) (Node, error) {
	if err := checkNode(n); err != nil {
		return Node{}, fmt.Errorf("register node: %w", err)
	}
	var out Node
	err := s.write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		var err error
		out, err = s.registerNode(ctx, tx, tokenID, now, n, replaceID)
		if err != nil {
			return nil, err
		}
		// In the registering transaction. On SQLite, under the write lock:
		// of two nodes that register with the same MAC at once, the second
		// sees the first. On PostgreSQL (read committed) two that register
		// at the same instant may each miss the other, and then neither
		// gets the event; both still show as duplicates (duplicate_of is
		// worked out on every read).
		others, err := s.nodesByHardware(ctx, tx, []string{out.HardwareUUID}, out.MACs)
		if err != nil {
			return nil, fmt.Errorf("look for duplicate hardware: %w", err)
		}
		return append([]eventlog.Event{registeredEvent(out, tokenID, replaceID, utc(now))}, duplicateEvent(out, others, utc(now))...), nil
	})
	if err != nil {
		return Node{}, fmt.Errorf("register node %s: %w", n.ID, err)
	}
	return out, nil
}

func (s *SQLStore) registerNode(ctx context.Context, tx *sql.Tx, tokenID string, now time.Time, n Node, replaceID string) (Node, error) {
	d := s.db.Dialect
	// The row lock this UPDATE takes (on SQLite: the write lock of BEGIN
	// IMMEDIATE) makes concurrent registrations with one token queue; each
	// re-checks uses_left once the previous one commits, so a token is never
	// over-spent.
	if tokenID != "" { // "": the caller decided the node needs none
		res, err := tx.ExecContext(ctx, `UPDATE reg_tokens SET uses_left = uses_left - 1
		WHERE id = $1 AND NOT revoked AND expires_at > $2 AND uses_left > 0`, tokenID, d.Time(now))
		if err != nil {
			return Node{}, fmt.Errorf("consume token: %w", err)
		}
		if k, err := res.RowsAffected(); err != nil || k != 1 {
			t, err := scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM reg_tokens WHERE id = $1`, tokenID))
			if err != nil && !db.IsNoRows(err) {
				return Node{}, fmt.Errorf("read token: %w", err)
			}
			return Node{}, fmt.Errorf("token %s: %w", tokenID, tokenError(t, err == nil, now))
		}
	}
	at := d.Time(now)
	var (
		out Node
		err error
	)
	if replaceID == "" {
		out, err = scanNode(tx.QueryRowContext(ctx, `INSERT INTO reg_nodes (`+nodeColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, NULL, $14, $15, $15, $16, $17, $18)
			RETURNING `+nodeColumns,
			n.ID, string(n.Status), n.KeySHA256, n.HardwareUUID, jsonText(n.MACs), n.Hostname, n.Serial, jsonText(n.Labels),
			int64(n.BundleKEM), nonNilBytes(n.BundleKey), nonNilBytes(n.CSR), tokenID, n.ReplacementAllowed,
			n.CertificatesIssued, at, n.IdentitySource, n.EKHash, n.EKCertificate))
	} else {
		out, err = scanNode(tx.QueryRowContext(ctx, `UPDATE reg_nodes SET
			status = $1, key_sha256 = $2, hardware_uuid = $3, macs = $4, hostname = $5, serial = $6, labels = $7,
			bundle_kem = $8, bundle_key = $9, csr = $10, token_id = $11, replacement_allowed = FALSE,
			cert_serial = NULL, cert_not_before = NULL, cert_not_after = NULL, cert_chain = NULL,
			updated_at = $12, identity_source = $14, ek_hash = $15, ek_certificate = $16
			WHERE id = $13 AND replacement_allowed RETURNING `+nodeColumns,
			string(n.Status), n.KeySHA256, n.HardwareUUID, jsonText(n.MACs), n.Hostname, n.Serial, jsonText(n.Labels),
			int64(n.BundleKEM), nonNilBytes(n.BundleKey), nonNilBytes(n.CSR), tokenID, at, replaceID, n.IdentitySource,
			n.EKHash, n.EKCertificate))
		if db.IsNoRows(err) {
			return Node{}, fmt.Errorf("replace %s: %w", replaceID, missing(ctx, tx, replaceID, ErrPrecondition))
		}
	}
	if db.IsUniqueViolation(err) {
		return Node{}, ErrConflict
	}
	return out, err
}

// missing explains why a conditional update of node id matched nothing:
// ErrNotFound if the node does not exist, else the given error.
func missing(ctx context.Context, q db.Querier, id string, otherwise error) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM reg_nodes WHERE id = $1`, id).Scan(&one)
	switch {
	case db.IsNoRows(err):
		return ErrNotFound
	case err != nil:
		return err
	}
	return otherwise
}

// GetNode returns node id.
func (s *SQLStore) GetNode(ctx context.Context, id string) (Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE id = $1`, id))
	if db.IsNoRows(err) {
		return Node{}, fmt.Errorf("get node %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("get node %s: %w", id, err)
	}
	return n, nil
}

// GetNodeByKey returns the node whose identity key hashes to keySHA256.
func (s *SQLStore) GetNodeByKey(ctx context.Context, keySHA256 []byte) (Node, error) {
	n, err := scanNode(s.byKey.QueryRowContext(ctx, keySHA256))
	if db.IsNoRows(err) {
		return Node{}, fmt.Errorf("get node by key %x: %w", keySHA256, ErrNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("get node by key %x: %w", keySHA256, err)
	}
	return n, nil
}

// collect runs q and scans every row; nil when there is none.
func collect[T any](q db.Querier, ctx context.Context, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
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

// NodesByHardwareUUID returns the nodes reporting uuid.
func (s *SQLStore) NodesByHardwareUUID(ctx context.Context, uuid string) ([]Node, error) {
	if uuid == "" {
		return nil, nil
	}
	ns, err := collect(s.db, ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE hardware_uuid = $1 ORDER BY id`, []any{uuid}, scanNode)
	if err != nil {
		return nil, fmt.Errorf("nodes by hardware UUID %s: %w", uuid, err)
	}
	return ns, nil
}

// nodesByHardware is NodesByHardware on q. The values go in as JSON
// arrays, so that any number of them is two parameters; on PostgreSQL both
// tests are indexed (hardware_uuid, and GIN on macs).
func (s *SQLStore) nodesByHardware(ctx context.Context, q db.Querier, uuids, macs []string) ([]Node, error) {
	uuids, macs = nonEmpty(uuids), nonEmpty(macs)
	if len(uuids) == 0 && len(macs) == 0 {
		return nil, nil
	}
	d := s.db.Dialect
	return collect(q, ctx, `SELECT `+nodeColumns+` FROM reg_nodes
		WHERE `+d.JSONIn("hardware_uuid", "$1")+` OR `+d.JSONOverlaps("macs", "$2")+` ORDER BY id`,
		[]any{jsonText(nonNil(uuids)), jsonText(nonNil(macs))}, scanNode)
}

func nonNil(vs []string) []string {
	if vs == nil {
		return []string{}
	}
	return vs
}

// NodesByHardware returns the nodes sharing any of the UUIDs or MACs.
func (s *SQLStore) NodesByHardware(ctx context.Context, uuids, macs []string) ([]Node, error) {
	ns, err := s.nodesByHardware(ctx, s.db, uuids, macs)
	if err != nil {
		return nil, fmt.Errorf("nodes by hardware: %w", err)
	}
	return ns, nil
}

// NoteDuplicate appends a refused claim on node id's hardware.
func (s *SQLStore) NoteDuplicate(ctx context.Context, id string, now time.Time, c Claim) error {
	err := s.write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		if err := missing(ctx, tx, id, nil); err != nil {
			return nil, err
		}
		return []eventlog.Event{claimEvent(id, c, utc(now))}, nil
	})
	if err != nil {
		return fmt.Errorf("note duplicate of node %s: %w", id, err)
	}
	return nil
}

// ListNodes returns the nodes matching f.
func (s *SQLStore) ListNodes(ctx context.Context, f NodeFilter) ([]Node, error) {
	q := `SELECT ` + nodeColumns + ` FROM reg_nodes WHERE TRUE`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Status != "" {
		q += ` AND status = ` + arg(string(f.Status))
	}
	if len(f.Labels) > 0 {
		q += ` AND ` + s.db.Dialect.JSONContains("labels", arg(jsonText(f.Labels)))
	}
	if f.AfterID != "" {
		q += ` AND id > ` + arg(f.AfterID)
	}
	q += ` ORDER BY id`
	if f.Limit > 0 {
		q += ` LIMIT ` + arg(f.Limit)
	}
	ns, err := collect(s.db, ctx, q, args, scanNode)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return ns, nil
}

// SetStatus moves node id from one of from to to, with an event when the
// status changes.
func (s *SQLStore) SetStatus(ctx context.Context, id string, from []Status, to Status, now time.Time, actor string) (Node, error) {
	if !to.Valid() {
		return Node{}, fmt.Errorf("set status of node %s: unknown status %q", id, to)
	}
	var n Node
	err := s.write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		// The row lock holds the status still until the event is appended.
		var cur Status
		err := tx.QueryRowContext(ctx, `SELECT status FROM reg_nodes WHERE id = $1`+s.db.Dialect.ForUpdate(), id).Scan(&cur)
		switch {
		case db.IsNoRows(err):
			return nil, ErrNotFound
		case err != nil:
			return nil, err
		case !slices.Contains(from, cur):
			return nil, ErrPrecondition
		}
		n, err = scanNode(tx.QueryRowContext(ctx, `UPDATE reg_nodes SET status = $1, updated_at = $2
			WHERE id = $3 RETURNING `+nodeColumns, string(to), s.db.Dialect.Time(now), id))
		if err != nil || cur == to {
			return nil, err
		}
		return []eventlog.Event{statusEvent(id, cur, to, utc(now), actor)}, nil
	})
	if err != nil {
		return Node{}, fmt.Errorf("set status of node %s to %s: %w", id, to, err)
	}
	return n, nil
}

// setCert makes c node id's current certificate and counts it; where
// narrows the update (with arguments from $7 on).
func (s *SQLStore) setCert(ctx context.Context, tx *sql.Tx, id string, c Cert, now time.Time, where string, args ...any) (Node, error) {
	d := s.db.Dialect
	return scanNode(tx.QueryRowContext(ctx, `UPDATE reg_nodes SET
		cert_serial = $1, cert_not_before = $2, cert_not_after = $3, cert_chain = $4,
		certificates_issued = certificates_issued + 1, updated_at = $5
		WHERE id = $6`+where+` RETURNING `+nodeColumns,
		append([]any{c.Serial, d.Time(c.NotBefore), d.Time(c.NotAfter), jsonText(c.Chain), d.Time(now), id}, args...)...))
}

// SetCertificate replaces the node's certificate if it is still prevSerial.
func (s *SQLStore) SetCertificate(ctx context.Context, id, prevSerial string, c Cert, now time.Time) (Node, error) {
	if err := checkCert(c); err != nil {
		return Node{}, fmt.Errorf("set certificate of node %s: %w", id, err)
	}
	var n Node
	err := s.write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		var err error
		n, err = s.setCert(ctx, tx, id, c, now, ` AND COALESCE(cert_serial, '') = $7`, prevSerial)
		if db.IsNoRows(err) {
			return nil, missing(ctx, tx, id, ErrConflict)
		}
		if err != nil {
			return nil, err
		}
		return []eventlog.Event{certificateEvent(id, prevSerial, c, utc(now))}, nil
	})
	if err != nil {
		return Node{}, fmt.Errorf("set certificate of node %s: %w", id, err)
	}
	return n, nil
}

// AllowReplacement marks node id replaceable.
func (s *SQLStore) AllowReplacement(ctx context.Context, id string, now time.Time) (Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx,
		`UPDATE reg_nodes SET replacement_allowed = TRUE, updated_at = $1 WHERE id = $2 RETURNING `+nodeColumns, s.db.Dialect.Time(now), id))
	if db.IsNoRows(err) {
		err = ErrNotFound
	}
	if err != nil {
		return Node{}, fmt.Errorf("allow replacement of node %s: %w", id, err)
	}
	return n, nil
}

// DeleteNode deletes node id, with its event.
func (s *SQLStore) DeleteNode(ctx context.Context, id string, now time.Time, actor string) error {
	err := s.write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM reg_nodes WHERE id = $1`, id)
		if err != nil {
			return nil, err
		}
		if k, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if k == 0 {
			return nil, ErrNotFound
		}
		return []eventlog.Event{deletedEvent(id, utc(now), actor)}, nil
	})
	if err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	return nil
}

func scanIntent(row scanner) (Intent, error) {
	var in Intent
	err := row.Scan(&in.RequestID, &in.NodeID, &in.KeySHA256, &in.PrevSerial, &in.Hostname, &in.CSR, db.ScanTime(&in.CreatedAt))
	in.CSR = nilIfEmpty(in.CSR)
	return in, err
}

// ClaimIssuance opens an intent unless one is open for the node. A
// concurrent claim of the same node waits on the unique node_id and then
// does nothing; the read that follows sees the winner's committed row.
//
// On PostgreSQL the SELECT locks the node's row (FOR UPDATE): under READ
// COMMITTED a claim racing the completion of the node's previous intent
// would otherwise read the node from before that completion committed,
// find the unique node_id free once the completed intent was deleted, and
// open a second renewal. With the lock it waits and re-checks the serial.
func (s *SQLStore) ClaimIssuance(ctx context.Context, in Intent) (Intent, bool, error) {
	if err := checkIntent(in); err != nil {
		return Intent{}, false, fmt.Errorf("claim issuance: %w", err)
	}
	// RETURNING, not a second read by request ID: another replica may
	// complete (and delete) the intent between the two, and then the
	// replica that opened it would wrongly find nothing.
	open, err := scanIntent(s.db.QueryRowContext(ctx, `INSERT INTO reg_intents (`+intentColumns+`)
	SELECT $1, id, key_sha256, $4, hostname, csr, $5 FROM reg_nodes
	WHERE id = $2 AND key_sha256 = $3 AND status = 'approved' AND COALESCE(cert_serial, '') = $4`+s.db.Dialect.ForUpdate()+`
	ON CONFLICT (node_id) DO NOTHING RETURNING `+intentColumns, in.RequestID, in.NodeID, in.KeySHA256, in.PrevSerial, s.db.Dialect.Time(in.CreatedAt)))
	switch {
	case err == nil:
		return open, true, nil
	case !db.IsNoRows(err):
		return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, err)
	}
	open, err = scanIntent(s.db.QueryRowContext(ctx, `SELECT `+intentColumns+` FROM reg_intents WHERE node_id = $1`, in.NodeID))
	switch {
	case err == nil:
		return open, false, nil
	case !db.IsNoRows(err):
		return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, err)
	}
	// No intent to return: none could be opened because the node changed,
	// or ours was completed at once by a replica that read it by node (a
	// retry of the same boot, after the replica it first reached died).
	// Either way the node is settled, as after a conflict.
	return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, missing(ctx, s.db, in.NodeID, ErrConflict))
}

// CompleteIssuance closes an intent with the CA's certificate.
func (s *SQLStore) CompleteIssuance(ctx context.Context, requestID string, c Cert, now time.Time) (Node, bool, error) {
	if err := checkCert(c); err != nil {
		return Node{}, false, fmt.Errorf("complete issuance %s: %w", requestID, err)
	}
	var (
		n         Node
		installed bool
	)
	err := s.write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		n, installed = Node{}, false
		// The node's row lock comes first, as in a claim, so that the two
		// queue on it rather than deadlock on the node and the intent;
		// then deleting the intent makes concurrent completions find
		// nothing and count nothing.
		var nodeID string
		err := tx.QueryRowContext(ctx, `SELECT node_id FROM reg_intents WHERE request_id = $1`, requestID).Scan(&nodeID)
		if db.IsNoRows(err) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		var (
			status Status
			key    []byte
			serial sql.NullString
		)
		lockErr := tx.QueryRowContext(ctx, `SELECT status, key_sha256, cert_serial FROM reg_nodes WHERE id = $1`+s.db.Dialect.ForUpdate(),
			nodeID).Scan(&status, &key, &serial)
		if lockErr != nil && !db.IsNoRows(lockErr) {
			return nil, lockErr
		}
		in, err := scanIntent(tx.QueryRowContext(ctx, `DELETE FROM reg_intents WHERE request_id = $1 RETURNING `+intentColumns, requestID))
		if db.IsNoRows(err) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		err = lockErr
		switch {
		case db.IsNoRows(err):
			return nil, nil
		case err != nil:
			return nil, err
		case !installable(in, status, key, serial.String):
			n, err = scanNode(tx.QueryRowContext(ctx, `UPDATE reg_nodes SET certificates_issued = certificates_issued + 1
				WHERE id = $1 RETURNING `+nodeColumns, in.NodeID))
			return nil, err
		}
		if n, err = s.setCert(ctx, tx, in.NodeID, c, now, ""); err != nil {
			return nil, err
		}
		installed = true
		return []eventlog.Event{certificateEvent(in.NodeID, in.PrevSerial, c, utc(now))}, nil
	})
	if err != nil {
		return Node{}, false, fmt.Errorf("complete issuance %s: %w", requestID, err)
	}
	return n, installed, nil
}

// ListIntents returns open intents, oldest first.
func (s *SQLStore) ListIntents(ctx context.Context, before time.Time, limit int) ([]Intent, error) {
	q := `SELECT ` + intentColumns + ` FROM reg_intents WHERE created_at <= $1 ORDER BY created_at, request_id`
	args := []any{s.db.Dialect.Time(before)}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	ins, err := collect(s.db, ctx, q, args, scanIntent)
	if err != nil {
		return nil, fmt.Errorf("list intents: %w", err)
	}
	return ins, nil
}

// ListUncertified returns approved nodes without a certificate or an open
// intent. Nodes are few in this state (between a registration and its
// issuance), so the scan of the approved nodes this does every reconciler
// pass stays on the (status, id) index and costs little.
func (s *SQLStore) ListUncertified(ctx context.Context, before time.Time, limit int) ([]Node, error) {
	q := `SELECT ` + nodeColumns + ` FROM reg_nodes WHERE status = 'approved' AND cert_serial IS NULL AND updated_at <= $1
		AND NOT EXISTS (SELECT 1 FROM reg_intents WHERE reg_intents.node_id = reg_nodes.id)
		ORDER BY updated_at, id`
	args := []any{s.db.Dialect.Time(before)}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	ns, err := collect(s.db, ctx, q, args, scanNode)
	if err != nil {
		return nil, fmt.Errorf("list uncertified nodes: %w", err)
	}
	return ns, nil
}

// ImportEKs enrols eks in one transaction: an insert that finds the hash
// taken does nothing, and the label is updated instead.
func (s *SQLStore) ImportEKs(ctx context.Context, eks []EnrolledEK, now time.Time) (added, updated int, err error) {
	err = s.write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		added, updated = 0, 0 // a retried transaction counts again
		for _, ek := range eks {
			res, err := tx.ExecContext(ctx, `INSERT INTO reg_eks (hash, label, created_at) VALUES ($1, $2, $3)
				ON CONFLICT (hash) DO NOTHING`, ek.Hash, ek.Label, s.db.Dialect.Time(now))
			if err != nil {
				return nil, fmt.Errorf("EK %s: %w", ek.Hash, err)
			}
			if k, err := res.RowsAffected(); err != nil {
				return nil, err
			} else if k == 1 {
				added++
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE reg_eks SET label = $1 WHERE hash = $2`, ek.Label, ek.Hash); err != nil {
				return nil, fmt.Errorf("EK %s: %w", ek.Hash, err)
			}
			updated++
		}
		return nil, nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("import EKs: %w", err)
	}
	return added, updated, nil
}

// GetEK returns the enrolled EK hash.
func (s *SQLStore) GetEK(ctx context.Context, hash string) (EnrolledEK, error) {
	ek := EnrolledEK{Hash: hash}
	err := s.db.QueryRowContext(ctx, `SELECT label, created_at FROM reg_eks WHERE hash = $1`, hash).Scan(&ek.Label, db.ScanTime(&ek.CreatedAt))
	if db.IsNoRows(err) {
		return EnrolledEK{}, fmt.Errorf("get EK %s: %w", hash, ErrNotFound)
	}
	if err != nil {
		return EnrolledEK{}, fmt.Errorf("get EK %s: %w", hash, err)
	}
	return ek, nil
}
