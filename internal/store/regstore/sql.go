package regstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
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
// PostgreSQL, shared by every replica of the registration service.
type SQLStore struct {
	eventlog.Store
	// byKey is prepared once because every boot runs it; database/sql keeps
	// one prepared copy per pooled connection.
	byKey *sql.Stmt
	// stmts are the registration path's other statements, prepared at
	// Open on SQLite (hot).
	stmts statements
}

var _ Store = (*SQLStore)(nil)

// Open opens the database at where (a path for SQLite, a DSN for
// PostgreSQL) and brings the registration tables up to date;
// "registration" names them in schema_migrations.
func Open(ctx context.Context, d db.Dialect, where string) (*SQLStore, error) {
	s, err := eventlog.OpenStore(ctx, d, where, db.Schema{Service: "registration", FS: migrations}, eventlog.NewTable("reg"))
	if err != nil {
		return nil, fmt.Errorf("registration store: %w", err)
	}
	byKey, err := s.DB.PrepareContext(ctx, `SELECT `+nodeColumns+` FROM reg_nodes WHERE key_sha256 = $1`)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("registration store: %w", err)
	}
	stmts, err := prepareHot(ctx, s.DB)
	if err != nil {
		byKey.Close()
		s.Close()
		return nil, fmt.Errorf("registration store: %w", err)
	}
	return &SQLStore{Store: s, byKey: byKey, stmts: stmts}, nil
}

// Close closes the database.
func (s *SQLStore) Close() {
	s.byKey.Close()
	s.stmts.close()
	s.Store.Close()
}

// The column lists every query of a row type selects, in the order its
// scan function reads.
const (
	nodeColumns = `id, status, key_sha256, hardware_uuid, macs, hostname, serial, labels,
	bundle_kem, bundle_key, csr, token_id, replacement_allowed,
	cert_serial, cert_not_before, cert_not_after, cert_chain,
	certificates_issued, created_at, updated_at, identity_source, ek_hash, ek_certificate,
	ak_public, boot_pcr_digest, boot_pcr_digest_at, boot_nonce_time, boot_policy_violation, status_reason`
	intentColumns = `request_id, node_id, key_sha256, prev_serial, hostname, csr, created_at`
	tokenColumns  = `id, secret_hash, expires_at, uses_left, auto_approve, labels, description, revoked, created_at,
	min_identity, allow_site_secret`
	apiTokenColumns = `id, name, role, secret_hash, created_at, expires_at, last_used_at, revoked_at, created_by`
)

func scanAPIToken(row db.Scanner) (APIToken, error) {
	var t APIToken
	err := row.Scan(&t.ID, &t.Name, &t.Role, &t.SecretHash, db.ScanTime(&t.CreatedAt), db.ScanTime(&t.ExpiresAt),
		db.ScanTime(&t.LastUsedAt), db.ScanTime(&t.RevokedAt), &t.CreatedBy)
	return t, err
}

func scanToken(row db.Scanner) (Token, error) {
	var t Token
	err := row.Scan(&t.ID, db.ScanBytes(&t.SecretHash), db.ScanTime(&t.ExpiresAt), &t.UsesLeft, &t.AutoApprove, db.ScanJSON(&t.Labels),
		&t.Description, &t.Revoked, db.ScanTime(&t.CreatedAt), &t.MinIdentity, &t.AllowSiteSecret)
	return t, err
}

func scanNode(row db.Scanner) (Node, error) {
	var (
		n                   Node
		kem                 int64
		certSerial          sql.NullString
		notBefore, notAfter time.Time
		chain               [][]byte
	)
	if err := row.Scan(&n.ID, &n.Status, &n.KeySHA256, &n.HardwareUUID, db.ScanJSON(&n.MACs), &n.Hostname, &n.Serial, db.ScanJSON(&n.Labels),
		&kem, db.ScanBytes(&n.BundleKey), db.ScanBytes(&n.CSR), &n.TokenID, &n.ReplacementAllowed,
		&certSerial, db.ScanTime(&notBefore), db.ScanTime(&notAfter), db.ScanJSON(&chain),
		&n.CertificatesIssued, db.ScanTime(&n.CreatedAt), db.ScanTime(&n.UpdatedAt), &n.IdentitySource,
		&n.EKHash, &n.EKCertificate,
		db.ScanBytes(&n.AKPublic), &n.BootPCRDigest, db.ScanTime(&n.BootPCRDigestAt), &n.BootNonceTime, &n.BootPolicyViolation, &n.StatusReason); err != nil {
		return Node{}, err
	}
	n.BundleKEM = uint16(kem)
	if certSerial.Valid {
		n.Cert = &Cert{Serial: certSerial.String, NotBefore: notBefore, NotAfter: notAfter, Chain: chain}
	}
	return n, nil
}

func scanIntent(row db.Scanner) (Intent, error) {
	var in Intent
	err := row.Scan(&in.RequestID, &in.NodeID, &in.KeySHA256, &in.PrevSerial, &in.Hostname, db.ScanBytes(&in.CSR), db.ScanTime(&in.CreatedAt))
	return in, err
}

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusApproved, StatusRejected, StatusRevoked:
		return true
	}
	return false
}

// checkNode and checkIntent refuse what the schema would refuse
// anyway, with an error that says why rather than a constraint name.
func checkNode(n Node) error {
	switch {
	case n.ID == "":
		return errors.New("node ID is empty")
	case len(n.KeySHA256) != sha256.Size:
		return fmt.Errorf("key hash is %d bytes, want %d", len(n.KeySHA256), sha256.Size)
	case !n.Status.Valid():
		return fmt.Errorf("unknown status %q", n.Status)
	}
	return nil
}

func checkIntent(in Intent) error {
	switch {
	case in.RequestID == "":
		return errors.New("request ID is empty")
	case in.NodeID == "":
		return errors.New("node ID is empty")
	case len(in.KeySHA256) != sha256.Size:
		return fmt.Errorf("key hash is %d bytes, want %d", len(in.KeySHA256), sha256.Size)
	}
	return nil
}

// tokenError explains why token t (found reports whether it exists) could not
// be used at now.
func tokenError(t Token, found bool, now time.Time) error {
	switch {
	case !found || t.Revoked:
		return ErrTokenInvalid
	case !now.Before(t.ExpiresAt):
		return ErrTokenExpired
	case t.UsesLeft <= 0:
		return ErrTokenExhausted
	}
	// Active now, yet the conditional update missed it: a concurrent writer
	// changed it in between. Report it as used up, which is what such a
	// writer does.
	return ErrTokenExhausted
}

// installable says whether an issuance's certificate becomes the node's
// current one: the node is as it was when the intent was opened.
func installable(in Intent, status Status, key []byte, serial string) bool {
	return status == StatusApproved && bytes.Equal(key, in.KeySHA256) && serial == in.PrevSerial
}

// nonEmpty drops empty strings, which stand for "unknown" and match
// nothing.
func nonEmpty(vs []string) []string {
	return slices.DeleteFunc(slices.Clone(vs), func(v string) bool { return v == "" })
}

// getToken reads token id on q; ErrNotFound if absent.
func getToken(ctx context.Context, q db.Querier, id string) (Token, error) {
	t, err := scanToken(q.QueryRowContext(ctx, tokenByID, id))
	return t, db.Found(err, ErrNotFound)
}

// getNode reads node id on q; ErrNotFound if absent.
func getNode(ctx context.Context, q db.Querier, id string) (Node, error) {
	n, err := scanNode(q.QueryRowContext(ctx, nodeByID, id))
	return n, db.Found(err, ErrNotFound)
}

// updateNode runs "UPDATE reg_nodes SET <setWhere>" and returns the node
// as it changed it; sql.ErrNoRows when it changed none.
func updateNode(ctx context.Context, tx db.Querier, setWhere string, args ...any) (Node, error) {
	return scanNode(tx.QueryRowContext(ctx, updateNodeSQL(setWhere), args...))
}

// lockNode reads cols of node id into dest and, on PostgreSQL, locks its
// row until tx ends; ErrNotFound if absent.
func (s *SQLStore) lockNode(ctx context.Context, tx *sql.Tx, id, cols string, dest ...any) error {
	err := tx.QueryRowContext(ctx, `SELECT `+cols+` FROM reg_nodes WHERE id = $1`+s.DB.Dialect.ForUpdate(), id).Scan(dest...)
	return db.Found(err, ErrNotFound)
}

// CreateToken stores t, with its event.
func (s *SQLStore) CreateToken(ctx context.Context, t Token) error {
	d := s.DB.Dialect
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO reg_tokens (`+tokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			t.ID, db.Bytes(t.SecretHash), d.Time(t.ExpiresAt), t.UsesLeft, t.AutoApprove, db.JSON(t.Labels),
			t.Description, t.Revoked, d.Time(t.CreatedAt), t.MinIdentity, t.AllowSiteSecret)
		if db.IsUniqueViolation(err) {
			return nil, ErrConflict
		}
		return eventlog.One(EventTokenCreated, "", t.CreatedAt, DetailToken, t.ID, DetailActor, t.CreatedBy), err
	})
	return db.Wrap(err, "create token %s", t.ID)
}

// GetToken returns token id.
func (s *SQLStore) GetToken(ctx context.Context, id string) (Token, error) {
	t, err := getToken(ctx, s.hot(nil), id)
	return db.Result(t, err, "get token %s", id)
}

// ListTokens returns tokens by creation time.
func (s *SQLStore) ListTokens(ctx context.Context, includeInactive bool, now time.Time) ([]Token, error) {
	q, p := `SELECT `+tokenColumns+` FROM reg_tokens`, db.Params{}
	if !includeInactive {
		q += ` WHERE NOT revoked AND expires_at > ` + p.Add(s.DB.Dialect.Time(now)) + ` AND uses_left > 0`
	}
	ts, err := db.Collect(ctx, s.DB, scanToken, q+` ORDER BY created_at, id`, p...)
	return db.Result(ts, err, "list tokens")
}

// RevokeToken marks token id revoked; the event only the first time.
func (s *SQLStore) RevokeToken(ctx context.Context, id string, now time.Time, actor string) (Token, error) {
	t, err := eventlog.Do(ctx, s.Store, func(tx *sql.Tx) (Token, []eventlog.Event, error) {
		t, err := scanToken(tx.QueryRowContext(ctx, `UPDATE reg_tokens SET revoked = TRUE WHERE id = $1 AND NOT revoked RETURNING `+tokenColumns, id))
		if db.IsNoRows(err) {
			t, err = getToken(ctx, tx, id)
			return t, nil, err
		}
		return t, eventlog.One(EventTokenRevoked, "", now, DetailToken, id, DetailActor, actor), err
	})
	return db.Result(t, err, "revoke token %s", id)
}

// RegisterNode consumes a token use and creates or replaces a node, in one
// transaction.
func (s *SQLStore) RegisterNode(ctx context.Context, tokenID string, now time.Time, n Node, replaceID string) (Node, error) {
	out, _, err := s.register(ctx, tokenID, now, n, replaceID, "", false)
	return out, err
}

// RegisterIssuing is RegisterNode that also opens the first issuance of a
// node it leaves approved, in the same transaction, and refuses hardware
// another node holds.
func (s *SQLStore) RegisterIssuing(ctx context.Context, tokenID string, now time.Time, n Node, replaceID, requestID string) (Node, Intent, error) {
	return s.register(ctx, tokenID, now, n, replaceID, requestID, true)
}

// register is RegisterIssuing, or RegisterNode when not claiming.
func (s *SQLStore) register(ctx context.Context, tokenID string, now time.Time, n Node, replaceID, requestID string, claiming bool) (Node, Intent, error) {
	if err := checkNode(n); err != nil {
		return Node{}, Intent{}, fmt.Errorf("register node: %w", err)
	}
	type registered struct {
		n    Node
		open Intent
	}
	// Grouped: a fleet registers at once, with one token whose row each
	// registration updates.
	r, err := eventlog.DoGrouped(ctx, s.Store, func(ctx context.Context, tx *sql.Tx) (registered, []eventlog.Event, error) {
		q := s.hot(tx)
		if err := s.spendToken(ctx, q, tokenID, now); err != nil {
			return registered{}, nil, err
		}
		// After the token's row lock (on SQLite: under the write lock), so
		// that of two nodes that register with the same hardware and token
		// at once, the second sees the first. On PostgreSQL (read
		// committed) two with different tokens, at the same instant, may
		// each miss the other: then neither is refused or gets the event,
		// but both still show as duplicates (duplicate_of is worked out on
		// every read).
		others, err := s.nodesClaiming(ctx, q, n)
		if err != nil {
			return registered{}, nil, fmt.Errorf("look for duplicate hardware: %w", err)
		}
		if claiming {
			if err := claimedBy(n, replaceID, others); err != nil {
				return registered{}, nil, err
			}
		}
		out, err := s.registerNode(ctx, q, tokenID, now, n, replaceID)
		if err != nil {
			return registered{}, nil, err
		}
		var open Intent
		if requestID != "" && out.Status == StatusApproved {
			if open, err = s.openFirstIssuance(ctx, q, out, requestID, now); err != nil {
				return registered{}, nil, fmt.Errorf("open issuance: %w", err)
			}
		}
		typ := EventRegistered
		if replaceID != "" {
			typ = EventReplaced
		}
		evs := eventlog.One(typ, out.ID, now, DetailStatus, string(out.Status), DetailToken, tokenID, DetailHostname, out.Hostname,
			DetailIdentitySource, out.IdentitySource)
		return registered{out, open}, append(evs, duplicateEvent(out, others, now)...), nil
	})
	r, err = db.Result(r, err, "register node %s", n.ID)
	return r.n, r.open, err
}

// claimedBy is the refusal of n when one of the nodes sharing its
// hardware or key, others, holds its key or reports its hardware UUID (see
// RegisterIssuing), or nil.
func claimedBy(n Node, replaceID string, others []Node) error {
	for _, o := range others {
		if bytes.Equal(o.KeySHA256, n.KeySHA256) {
			return &KeyRegisteredError{Node: o}
		}
	}
	if n.HardwareUUID == "" { // unknown: nobody's to claim
		return nil
	}
	replaceable := ""
	for _, o := range others {
		if o.HardwareUUID != n.HardwareUUID || o.ID == replaceID {
			continue
		}
		if !o.ReplacementAllowed {
			return &HardwareClaimedError{NodeID: o.ID}
		}
		replaceable = cmp.Or(replaceable, o.ID)
	}
	if replaceable != "" && replaceID == "" {
		return &HardwareClaimedError{NodeID: replaceable, Replaceable: true}
	}
	return nil
}

// openFirstIssuance opens, in the registering transaction tx, the issuance
// of n's first certificate: the intent ClaimIssuance would open right
// after, without a transaction of its own. A replaced node may still have
// an issuance of its old key open (one per node): then none is opened, and
// the zero Intent says so.
func (s *SQLStore) openFirstIssuance(ctx context.Context, tx db.Querier, n Node, requestID string, now time.Time) (Intent, error) {
	open, err := scanIntent(tx.QueryRowContext(ctx, openFirstIntent,
		requestID, n.ID, n.KeySHA256, n.Hostname, db.Bytes(n.CSR), s.DB.Dialect.Time(now)))
	if db.IsNoRows(err) {
		return Intent{}, nil
	}
	return open, err
}

// spendToken consumes one use of token tokenID in tx; nothing for "" (the
// caller decided the node needs none). The row lock its UPDATE takes (on
// SQLite: the write lock of BEGIN IMMEDIATE) makes concurrent
// registrations with one token queue; each re-checks uses_left once the
// previous one commits, so a token is never over-spent.
func (s *SQLStore) spendToken(ctx context.Context, tx db.Querier, tokenID string, now time.Time) error {
	if tokenID == "" {
		return nil
	}
	res, err := tx.ExecContext(ctx, useToken, tokenID, s.DB.Dialect.Time(now))
	if err != nil {
		return fmt.Errorf("consume token: %w", err)
	}
	if k, err := res.RowsAffected(); err != nil || k != 1 {
		t, err := getToken(ctx, tx, tokenID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("read token: %w", err)
		}
		return fmt.Errorf("token %s: %w", tokenID, tokenError(t, err == nil, now))
	}
	return nil
}

// registerNode creates n, or overwrites node replaceID with it, in tx.
func (s *SQLStore) registerNode(ctx context.Context, tx db.Querier, tokenID string, now time.Time, n Node, replaceID string) (Node, error) {
	at := s.DB.Dialect.Time(now)
	var (
		out Node
		err error
	)
	if replaceID == "" {
		out, err = scanNode(tx.QueryRowContext(ctx, insertNode,
			n.ID, string(n.Status), n.KeySHA256, n.HardwareUUID, db.JSON(n.MACs), n.Hostname, n.Serial, db.JSON(n.Labels),
			int64(n.BundleKEM), db.Bytes(n.BundleKey), db.Bytes(n.CSR), tokenID, n.ReplacementAllowed,
			n.CertificatesIssued, at, n.IdentitySource, n.EKHash, n.EKCertificate, db.Bytes(n.AKPublic)))
	} else {
		out, err = updateNode(ctx, tx, replaceNode,
			string(n.Status), n.KeySHA256, n.HardwareUUID, db.JSON(n.MACs), n.Hostname, n.Serial, db.JSON(n.Labels),
			int64(n.BundleKEM), db.Bytes(n.BundleKey), db.Bytes(n.CSR), tokenID, at, replaceID, n.IdentitySource,
			n.EKHash, n.EKCertificate, db.Bytes(n.AKPublic))
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
	if err := q.QueryRowContext(ctx, nodeExists, id).Scan(&one); err != nil {
		return db.Found(err, ErrNotFound)
	}
	return otherwise
}

// GetNode returns node id.
func (s *SQLStore) GetNode(ctx context.Context, id string) (Node, error) {
	n, err := getNode(ctx, s.hot(nil), id)
	return db.Result(n, err, "get node %s", id)
}

// GetNodeByKey returns the node whose identity key hashes to keySHA256.
func (s *SQLStore) GetNodeByKey(ctx context.Context, keySHA256 []byte) (Node, error) {
	n, err := scanNode(s.byKey.QueryRowContext(ctx, keySHA256))
	return db.Result(n, db.Found(err, ErrNotFound), "get node by key %x", keySHA256)
}

// nodesByHardware is NodesByHardware on q. The values go in as JSON
// arrays, so that any number of them is two parameters; on PostgreSQL both
// tests are indexed (hardware_uuid, and GIN on macs), and the query is
// planned at every run (Replanned), since the planner sees neither array
// and a plan kept from an empty table scans every node.
func (s *SQLStore) nodesByHardware(ctx context.Context, q db.Querier, uuids, macs []string) ([]Node, error) {
	uuids, macs = nonEmpty(uuids), nonEmpty(macs)
	if len(uuids) == 0 && len(macs) == 0 {
		return nil, nil
	}
	return db.Collect(ctx, q, scanNode, nodesByHardwareSQL(s.DB.Dialect, false), s.DB.Dialect.Replanned(s.DB.Dialect.Strings(uuids), s.DB.Dialect.Strings(macs))...)
}

// nodesClaiming is nodesByHardware of n's UUID and MACs, and the node
// holding n's key if any, in one query. A registration that succeeds finds
// no node with its key (it is unique), so the duplicate_hardware event
// sees the same nodes either way.
func (s *SQLStore) nodesClaiming(ctx context.Context, q db.Querier, n Node) ([]Node, error) {
	uuids, macs := nonEmpty([]string{n.HardwareUUID}), nonEmpty(n.MACs)
	return db.Collect(ctx, q, scanNode, nodesByHardwareSQL(s.DB.Dialect, true),
		s.DB.Dialect.Replanned(s.DB.Dialect.Strings(uuids), s.DB.Dialect.Strings(macs), n.KeySHA256)...)
}

// nodesByHardwareSQL is nodesByHardware's query on d, or with byKey
// nodesClaiming's.
func nodesByHardwareSQL(d db.Dialect, byKey bool) string {
	where := d.In("hardware_uuid", "$1") + ` OR ` + d.Overlaps("macs", "$2")
	if byKey {
		where += ` OR key_sha256 = $3`
	}
	if d != db.Postgres {
		// SQLite indexes no JSON array: its MACs are in reg_node_macs,
		// and each side of the union is an index lookup, where the OR
		// of the conditions read every node.
		key := ""
		if byKey {
			key = ` UNION SELECT id FROM reg_nodes WHERE key_sha256 = $3`
		}
		where = `id IN (SELECT id FROM reg_nodes WHERE ` + d.In("hardware_uuid", "$1") + `
			UNION SELECT node_id FROM reg_node_macs WHERE ` + d.In("mac", "$2") + key + `)`
	}
	return `SELECT ` + nodeColumns + ` FROM reg_nodes WHERE ` + where + ` ORDER BY id`
}

// NodesByHardware returns the nodes sharing any of the UUIDs or MACs.
func (s *SQLStore) NodesByHardware(ctx context.Context, uuids, macs []string) ([]Node, error) {
	ns, err := s.nodesByHardware(ctx, s.hot(nil), uuids, macs)
	return db.Result(ns, err, "nodes by hardware")
}

// NoteDuplicate appends a refused claim on node id's hardware.
func (s *SQLStore) NoteDuplicate(ctx context.Context, id string, now time.Time, c Claim) error {
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		if err := missing(ctx, tx, id, nil); err != nil {
			return nil, err
		}
		return eventlog.One(EventDuplicateHardware, id, now, DetailHardwareUUID, c.HardwareUUID,
			DetailClaimantKey, hex.EncodeToString(c.KeySHA256), DetailIdentitySource, c.IdentitySource), nil
	})
	return db.Wrap(err, "note duplicate of node %s", id)
}

// ListNodes returns the nodes matching f.
func (s *SQLStore) ListNodes(ctx context.Context, f NodeFilter) ([]Node, error) {
	q, p := `SELECT `+nodeColumns+` FROM reg_nodes WHERE TRUE`, db.Params{}
	if f.Status != "" {
		q += ` AND status = ` + p.Add(string(f.Status))
	}
	if len(f.Labels) > 0 {
		q += ` AND ` + s.DB.Dialect.JSONContains("labels", p.Add(db.JSON(f.Labels)))
	}
	if f.AfterID != "" {
		q += ` AND id > ` + p.Add(f.AfterID)
	}
	q += ` ORDER BY id` + p.Limit(f.Limit) // before p is read
	ns, err := db.Collect(ctx, s.DB, scanNode, q, p...)
	return db.Result(ns, err, "list nodes")
}

// SetStatus moves node id from one of from to to, with an event when the
// status changes.
func (s *SQLStore) SetStatus(ctx context.Context, id string, from []Status, to Status, now time.Time, actor, reason string) (Node, error) {
	if !to.Valid() {
		return Node{}, fmt.Errorf("set status of node %s: unknown status %q", id, to)
	}
	n, err := eventlog.Do(ctx, s.Store, func(tx *sql.Tx) (Node, []eventlog.Event, error) {
		// The row lock holds the status still until the event is appended.
		var (
			cur       Status
			curReason string
		)
		if err := s.lockNode(ctx, tx, id, "status, status_reason", &cur, &curReason); err != nil {
			return Node{}, nil, err
		}
		if !slices.Contains(from, cur) {
			return Node{}, nil, ErrPrecondition
		}
		n, err := updateNode(ctx, tx, `status = $1, updated_at = $2, status_reason = $3 WHERE id = $4`,
			string(to), s.DB.Dialect.Time(now), reason, id)
		if err != nil || cur == to && curReason == reason {
			return n, nil, err
		}
		// The event's type is the new status.
		return n, eventlog.One(string(to), id, now, DetailStatus, string(to), DetailPreviousStatus, string(cur),
			DetailActor, actor, DetailReason, reason), nil
	})
	return db.Result(n, err, "set status of node %s to %s", id, to)
}

// SetLabels changes node id's labels under its row lock.
func (s *SQLStore) SetLabels(ctx context.Context, id string, set map[string]string, remove []string, max int, now time.Time, actor string) (Node, error) {
	n, err := eventlog.Do(ctx, s.Store, func(tx *sql.Tx) (Node, []eventlog.Event, error) {
		var labels map[string]string
		if err := s.lockNode(ctx, tx, id, "labels", db.ScanJSON(&labels)); err != nil {
			return Node{}, nil, err
		}
		if labels == nil {
			labels = map[string]string{}
		}
		var setNow, removed []string
		for _, k := range slices.Sorted(maps.Keys(set)) {
			if old, ok := labels[k]; !ok || old != set[k] {
				labels[k] = set[k]
				setNow = append(setNow, k+"="+set[k])
			}
		}
		for _, k := range slices.Sorted(slices.Values(remove)) {
			if _, ok := labels[k]; ok {
				delete(labels, k)
				removed = append(removed, k)
			}
		}
		if len(labels) > max {
			return Node{}, nil, ErrTooManyLabels
		}
		if len(setNow) == 0 && len(removed) == 0 {
			n, err := getNode(ctx, tx, id)
			return n, nil, err
		}
		n, err := updateNode(ctx, tx, `labels = $1, updated_at = $2 WHERE id = $3`, db.JSON(labels), s.DB.Dialect.Time(now), id)
		return n, eventlog.One(EventLabeled, id, now,
			DetailActor, actor, DetailLabelsSet, strings.Join(setNow, ","), DetailLabelsRemoved, strings.Join(removed, ",")), err
	})
	return db.Result(n, err, "set labels of node %s", id)
}

// AllowReplacement marks node id replaceable.
func (s *SQLStore) AllowReplacement(ctx context.Context, id string, now time.Time, actor string) (Node, error) {
	n, err := eventlog.Do(ctx, s.Store, func(tx *sql.Tx) (Node, []eventlog.Event, error) {
		n, err := updateNode(ctx, tx, `replacement_allowed = TRUE, updated_at = $1 WHERE id = $2 AND NOT replacement_allowed`,
			s.DB.Dialect.Time(now), id)
		if db.IsNoRows(err) {
			n, err = getNode(ctx, tx, id)
			return n, nil, err
		}
		return n, eventlog.One(EventReplacementAllowed, id, now, DetailActor, actor), err
	})
	return db.Result(n, err, "allow replacement of node %s", id)
}

// DeleteNode deletes node id, with its event.
func (s *SQLStore) DeleteNode(ctx context.Context, id string, now time.Time, actor string) error {
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		k, err := db.RowsAffected(tx.ExecContext(ctx, `DELETE FROM reg_nodes WHERE id = $1`, id))
		if err != nil || k == 0 {
			return nil, cmp.Or(err, ErrNotFound)
		}
		return eventlog.One(EventDeleted, id, now, DetailActor, actor), nil
	})
	return db.Wrap(err, "delete node %s", id)
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
	// replica that opened it would wrongly find nothing. Grouped with the
	// other issuances' writes; on PostgreSQL each statement still reads
	// what committed before it (READ COMMITTED).
	type claim struct {
		open    Intent
		claimed bool
	}
	c, err := eventlog.DoGrouped(ctx, s.Store, func(ctx context.Context, tx *sql.Tx) (claim, []eventlog.Event, error) {
		q := s.hot(tx)
		open, err := scanIntent(q.QueryRowContext(ctx, claimIntentSQL(s.DB.Dialect), in.RequestID, in.NodeID, in.KeySHA256, in.PrevSerial, s.DB.Dialect.Time(in.CreatedAt)))
		c := claim{open, err == nil}
		if db.IsNoRows(err) {
			c.open, err = scanIntent(q.QueryRowContext(ctx, intentByNode, in.NodeID))
		}
		if db.IsNoRows(err) {
			// No intent to return: none could be opened because the node
			// changed, or ours was completed at once by a replica that read
			// it by node (a retry of the same boot, after the replica it
			// first reached died). Either way the node is settled, as after
			// a conflict.
			err = missing(ctx, q, in.NodeID, ErrConflict)
		}
		return c, nil, err
	})
	c, err = db.Result(c, err, "claim issuance for node %s", in.NodeID)
	return c.open, c.claimed, err
}

// CompleteIssuance closes an intent with the CA's certificate.
func (s *SQLStore) CompleteIssuance(ctx context.Context, requestID string, c Cert, now time.Time) (Node, bool, error) {
	return s.completeIssuance(ctx, requestID, c, now, false)
}

// InstallIssuance closes an intent with the CA's certificate if it becomes
// the node's current one, and changes nothing otherwise.
func (s *SQLStore) InstallIssuance(ctx context.Context, requestID string, c Cert, now time.Time) (Node, bool, error) {
	return s.completeIssuance(ctx, requestID, c, now, true)
}

// completeIssuance is CompleteIssuance, or with installOnly
// InstallIssuance.
func (s *SQLStore) completeIssuance(ctx context.Context, requestID string, c Cert, now time.Time, installOnly bool) (Node, bool, error) {
	if c.Serial == "" { // what the schema would refuse anyway, said plainly
		return Node{}, false, fmt.Errorf("complete issuance %s: empty serial", requestID)
	}
	type result struct {
		n         Node
		installed bool
	}
	// The node's row lock (PostgreSQL) is taken first, by the install or
	// as the intent is read, as in a claim, so that the two queue on it
	// rather than deadlock on the node and the intent; then deleting the
	// intent makes concurrent completions find nothing and count nothing
	// (intentWithNodeSQL). The install is the usual case; the read tells
	// the others apart.
	r, err := eventlog.DoGrouped(ctx, s.Store, func(ctx context.Context, tx *sql.Tx) (result, []eventlog.Event, error) {
		q := s.hot(tx)
		n, prev, err := s.installIntent(ctx, q, requestID, c, now)
		switch {
		case err == nil:
			return result{n, true}, certificateEvent(n.ID, prev, c, now), nil
		case !errors.Is(err, errNotInstallable):
			return result{}, nil, err
		}
		var (
			in     Intent
			status Status
			key    []byte
			serial sql.NullString
		)
		err = q.QueryRowContext(ctx, intentWithNodeSQL(s.DB.Dialect), requestID).Scan(
			&in.RequestID, &in.NodeID, &in.KeySHA256, &in.PrevSerial, &in.Hostname, db.ScanBytes(&in.CSR), db.ScanTime(&in.CreatedAt),
			&status, &key, &serial)
		gone := db.IsNoRows(err)
		if gone { // no such intent, or its node is gone
			in, err = scanIntent(q.QueryRowContext(ctx, intentByRequest, requestID))
		}
		if err != nil {
			return result{}, nil, db.Found(err, ErrNotFound)
		}
		ok := !gone && installable(in, status, key, serial.String)
		if !ok && installOnly {
			return result{}, nil, nil
		}
		if k, err := db.RowsAffected(q.ExecContext(ctx, deleteIntent, requestID)); err != nil || k != 1 {
			return result{}, nil, cmp.Or(err, ErrNotFound) // completed meanwhile by another caller
		}
		switch {
		case gone:
			return result{}, nil, nil
		case !ok:
			n, err := updateNode(ctx, q, countIssued, in.NodeID)
			return result{n: n}, nil, err
		}
		d := s.DB.Dialect
		n, err = updateNode(ctx, q, installCert, c.Serial, d.Time(c.NotBefore), d.Time(c.NotAfter), db.JSON(c.Chain), d.Time(now), in.NodeID)
		return result{n, true}, certificateEvent(in.NodeID, in.PrevSerial, c, now), err
	})
	r, err = db.Result(r, err, "complete issuance %s", requestID)
	return r.n, r.installed, err
}

// errNotInstallable: installIntent changed nothing, and completeIssuance
// looks at the intent and its node to tell why.
var errNotInstallable = errors.New("intent not installable as it is")

// installIntent is the usual completion, in two statements: the
// certificate installed by intent requestID on its node, and the intent
// closed. It returns the node and the serial the certificate replaces, or
// errNotInstallable having changed nothing.
func (s *SQLStore) installIntent(ctx context.Context, q db.Querier, requestID string, c Cert, now time.Time) (Node, string, error) {
	d := s.DB.Dialect
	n, err := updateNode(ctx, q, installIntent, requestID, c.Serial, d.Time(c.NotBefore), d.Time(c.NotAfter), db.JSON(c.Chain),
		d.Time(now), string(StatusApproved))
	if db.IsNoRows(err) {
		return Node{}, "", errNotInstallable
	}
	if err != nil {
		return Node{}, "", err
	}
	// The node's row lock held, nobody else can close the intent now; but
	// the caller's transaction must not keep the install without it.
	var prev string
	if err := q.QueryRowContext(ctx, closeIntent, requestID).Scan(&prev); err != nil {
		return Node{}, "", fmt.Errorf("close intent after installing: %w", db.Found(err, ErrNotFound))
	}
	return n, prev, nil
}

// ListIntents returns open intents, oldest first.
func (s *SQLStore) ListIntents(ctx context.Context, before time.Time, n int) ([]Intent, error) {
	p := db.Params{s.DB.Dialect.Time(before)}
	q := `SELECT ` + intentColumns + ` FROM reg_intents WHERE created_at <= $1
		ORDER BY created_at, request_id` + p.Limit(n)
	ins, err := db.Collect(ctx, s.DB, scanIntent, q, p...)
	return db.Result(ins, err, "list intents")
}

// ListUncertified returns approved nodes without a certificate or an open
// intent. Nodes are few in this state (between a registration and its
// issuance), so the scan of the approved nodes this does every reconciler
// pass stays on the (status, id) index and costs little.
func (s *SQLStore) ListUncertified(ctx context.Context, before time.Time, n int) ([]Node, error) {
	p := db.Params{s.DB.Dialect.Time(before)}
	q := `SELECT ` + nodeColumns + ` FROM reg_nodes
		WHERE status = 'approved' AND cert_serial IS NULL AND updated_at <= $1
		AND NOT EXISTS (SELECT 1 FROM reg_intents WHERE reg_intents.node_id = reg_nodes.id)
		ORDER BY updated_at, id` + p.Limit(n)
	ns, err := db.Collect(ctx, s.DB, scanNode, q, p...)
	return db.Result(ns, err, "list uncertified nodes")
}

// CountNodes counts the nodes by status and identity source, on the
// status index.
func (s *SQLStore) CountNodes(ctx context.Context) ([]NodeCount, error) {
	cs, err := db.Collect(ctx, s.DB, func(r db.Scanner) (NodeCount, error) {
		var c NodeCount
		return c, r.Scan(&c.Status, &c.IdentitySource, &c.N)
	}, `SELECT status, identity_source, count(*) FROM reg_nodes GROUP BY status, identity_source ORDER BY status, identity_source`)
	return db.Result(cs, err, "count nodes")
}

// ImportEKs enrols eks in one transaction: an insert that finds the hash
// taken does nothing, and the label is updated instead.
func (s *SQLStore) ImportEKs(ctx context.Context, eks []EnrolledEK, now time.Time, actor string) (added, updated int, err error) {
	err = s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		added, updated = 0, 0 // a retried transaction counts again
		for _, ek := range eks {
			k, err := db.RowsAffected(tx.ExecContext(ctx, `INSERT INTO reg_eks (hash, label, created_at) VALUES ($1, $2, $3)
				ON CONFLICT (hash) DO NOTHING`, ek.Hash, ek.Label, s.DB.Dialect.Time(now)))
			if err != nil {
				return nil, fmt.Errorf("EK %s: %w", ek.Hash, err)
			}
			if k == 1 {
				added++
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE reg_eks SET label = $1 WHERE hash = $2`, ek.Label, ek.Hash); err != nil {
				return nil, fmt.Errorf("EK %s: %w", ek.Hash, err)
			}
			updated++
		}
		return eventlog.One(EventEKsImported, "", now,
			DetailAdded, strconv.Itoa(added), DetailUpdated, strconv.Itoa(updated), DetailActor, actor), nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("import EKs: %w", err)
	}
	return added, updated, nil
}

// GetEK returns the enrolled EK hash.
func (s *SQLStore) GetEK(ctx context.Context, hash string) (EnrolledEK, error) {
	ek := EnrolledEK{Hash: hash}
	err := s.DB.QueryRowContext(ctx, `SELECT label, created_at FROM reg_eks WHERE hash = $1`, hash).Scan(&ek.Label, db.ScanTime(&ek.CreatedAt))
	return db.Result(ek, db.Found(err, ErrNotFound), "get EK %s", hash)
}

// duplicateEvent records that n shares hardware with others (their rows),
// or nothing when it shares none.
func duplicateEvent(n Node, others []Node, now time.Time) []eventlog.Event {
	var ids, macs []string
	uuid := ""
	for _, o := range others {
		if o.ID == n.ID {
			continue
		}
		ids = append(ids, o.ID)
		if n.HardwareUUID != "" && o.HardwareUUID == n.HardwareUUID {
			uuid = n.HardwareUUID
		}
		for _, m := range o.MACs {
			if slices.Contains(n.MACs, m) && !slices.Contains(macs, m) {
				macs = append(macs, m)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(macs)
	return eventlog.One(EventDuplicateHardware, n.ID, now,
		DetailDuplicateOf, strings.Join(ids, ","), DetailHardwareUUID, uuid, DetailMACs, strings.Join(macs, ","))
}

// certificateEvent records a new current certificate.
func certificateEvent(id, prevSerial string, c Cert, now time.Time) []eventlog.Event {
	typ := EventCertificateRenewed
	if prevSerial == "" {
		typ = EventCertificateIssued
	}
	return eventlog.One(typ, id, now,
		DetailSerial, c.Serial, DetailNotAfter, c.NotAfter.UTC().Format(time.RFC3339), DetailPreviousSerial, prevSerial)
}

// nullTime is t as a nullable time column: NULL for the zero time.
func nullTime(d db.Dialect, t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return d.Time(t)
}

// CreateAPIToken stores t.
func (s *SQLStore) CreateAPIToken(ctx context.Context, t APIToken) error {
	switch {
	case t.ID == "" || len(t.SecretHash) != sha256.Size:
		return fmt.Errorf("create API token: empty ID or hash not %d bytes", sha256.Size)
	case t.Role != "viewer" && t.Role != "operator" && t.Role != "admin":
		return fmt.Errorf("create API token: unknown role %q", t.Role)
	}
	d := s.DB.Dialect
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO reg_api_tokens (`+apiTokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			t.ID, t.Name, t.Role, t.SecretHash, d.Time(t.CreatedAt), nullTime(d, t.ExpiresAt), nullTime(d, t.LastUsedAt),
			nullTime(d, t.RevokedAt), t.CreatedBy)
		if db.IsUniqueViolation(err) {
			return nil, ErrConflict
		}
		return eventlog.One(EventAPITokenCreated, "", t.CreatedAt,
			DetailAPIToken, t.ID, DetailName, t.Name, DetailRole, t.Role, DetailActor, t.CreatedBy), err
	})
	return db.Wrap(err, "create API token %s", t.ID)
}

// GetAPIToken returns API token id: one lookup by primary key, on every
// call that presents a token.
func (s *SQLStore) GetAPIToken(ctx context.Context, id string) (APIToken, error) {
	t, err := getAPIToken(ctx, s.DB, id)
	return db.Result(t, err, "get API token %s", id)
}

func getAPIToken(ctx context.Context, q db.Querier, id string) (APIToken, error) {
	t, err := scanAPIToken(q.QueryRowContext(ctx, `SELECT `+apiTokenColumns+` FROM reg_api_tokens WHERE id = $1`, id))
	return t, db.Found(err, ErrNotFound)
}

// ListAPITokens returns API tokens by creation time.
func (s *SQLStore) ListAPITokens(ctx context.Context, includeInactive bool, now time.Time) ([]APIToken, error) {
	q, p := `SELECT `+apiTokenColumns+` FROM reg_api_tokens`, db.Params{}
	if !includeInactive {
		q += ` WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ` + p.Add(s.DB.Dialect.Time(now)) + `)`
	}
	ts, err := db.Collect(ctx, s.DB, scanAPIToken, q+` ORDER BY created_at, id`, p...)
	return db.Result(ts, err, "list API tokens")
}

// RevokeAPIToken revokes API token id, keeping an earlier revocation's
// time; only the first revocation appends its event.
func (s *SQLStore) RevokeAPIToken(ctx context.Context, id string, now time.Time, actor string) (APIToken, error) {
	t, err := eventlog.Do(ctx, s.Store, func(tx *sql.Tx) (APIToken, []eventlog.Event, error) {
		t, err := scanAPIToken(tx.QueryRowContext(ctx, `UPDATE reg_api_tokens SET revoked_at = $1
			WHERE id = $2 AND revoked_at IS NULL RETURNING `+apiTokenColumns, s.DB.Dialect.Time(now), id))
		if db.IsNoRows(err) {
			t, err = getAPIToken(ctx, tx, id)
			return t, nil, err
		}
		return t, eventlog.One(EventAPITokenRevoked, "", now, DetailAPIToken, t.ID, DetailName, t.Name, DetailActor, actor), err
	})
	return db.Result(t, err, "revoke API token %s", id)
}

// TouchAPITokens moves LastUsedAt forward, never back: replicas flush their
// batches in any order. IDs go in sorted, so concurrent flushes lock rows in
// one order.
func (s *SQLStore) TouchAPITokens(ctx context.Context, used map[string]time.Time) error {
	d := s.DB.Dialect
	err := s.DB.Tx(ctx, func(tx *sql.Tx) error {
		for _, id := range slices.Sorted(maps.Keys(used)) {
			if _, err := tx.ExecContext(ctx, `UPDATE reg_api_tokens SET last_used_at = CASE WHEN last_used_at IS NULL
				THEN $1 ELSE `+d.Greatest("last_used_at", "$1")+` END WHERE id = $2`, d.Time(used[id]), id); err != nil {
				return err
			}
		}
		return nil
	})
	return db.Wrap(err, "touch API tokens")
}

// bootEvents records what changed between a node's previous boot evidence
// and its new one.
func bootEvents(id, prevDigest, digest, prevViolation, violation string, now time.Time) []eventlog.Event {
	var evs []eventlog.Event
	if digest != prevDigest {
		evs = eventlog.One(EventBootDigestChanged, id, now, DetailDigest, digest, DetailPreviousDigest, prevDigest)
	}
	return append(evs, violationEvents(id, prevViolation, violation, now)...)
}

func violationEvents(id, prev, violation string, now time.Time) []eventlog.Event {
	switch {
	case violation == prev:
		return nil
	case violation == "":
		return eventlog.One(EventBootPolicyCleared, id, now, DetailPreviousReason, prev)
	}
	return eventlog.One(EventBootPolicyViolation, id, now, DetailReason, violation, DetailPreviousReason, prev)
}

// RecordBoot records an accepted boot quote. The node's row is locked
// while its nonce time is compared, so of two quotes with one nonce only
// the first is accepted.
func (s *SQLStore) RecordBoot(ctx context.Context, id string, b Boot, now time.Time) (Node, error) {
	n, err := eventlog.Do(ctx, s.Store, func(tx *sql.Tx) (Node, []eventlog.Event, error) {
		var (
			nonceTime             int64
			digest, prevViolation string
		)
		if err := s.lockNode(ctx, tx, id, "boot_nonce_time, boot_pcr_digest, boot_policy_violation", &nonceTime, &digest, &prevViolation); err != nil {
			return Node{}, nil, err
		}
		if b.NonceTime <= nonceTime {
			return Node{}, nil, ErrStaleNonce
		}
		n, err := updateNode(ctx, tx, `boot_pcr_digest = $1, boot_pcr_digest_at = $2, boot_nonce_time = $3, boot_policy_violation = $4
			WHERE id = $5`, b.PCRDigest, s.DB.Dialect.Time(now), b.NonceTime, b.PolicyViolation, id)
		return n, bootEvents(id, digest, b.PCRDigest, prevViolation, b.PolicyViolation, now), err
	})
	return db.Result(n, err, "record boot of node %s", id)
}

// SetBootPolicyViolation changes a node's policy violation, if it differs.
func (s *SQLStore) SetBootPolicyViolation(ctx context.Context, id, violation string, now time.Time) (Node, error) {
	n, err := eventlog.Do(ctx, s.Store, func(tx *sql.Tx) (Node, []eventlog.Event, error) {
		var prev string
		if err := s.lockNode(ctx, tx, id, "boot_policy_violation", &prev); err != nil {
			return Node{}, nil, err
		}
		if prev == violation {
			n, err := getNode(ctx, tx, id)
			return n, nil, err
		}
		n, err := updateNode(ctx, tx, `boot_policy_violation = $1 WHERE id = $2`, violation, id)
		return n, violationEvents(id, prev, violation, now), err
	})
	return db.Result(n, err, "set boot policy violation of node %s", id)
}

const pcrPolicyColumns = `label_key, label_value, digests, enforce, updated_at`

func scanPCRPolicy(row db.Scanner) (PCRPolicy, error) {
	var p PCRPolicy
	err := row.Scan(&p.LabelKey, &p.LabelValue, db.ScanJSON(&p.Digests), &p.Enforce, db.ScanTime(&p.UpdatedAt))
	return p, err
}

// SetPCRPolicy upserts a label's policy.
func (s *SQLStore) SetPCRPolicy(ctx context.Context, p PCRPolicy, actor string) (PCRPolicy, error) {
	out, err := eventlog.Do(ctx, s.Store, func(tx *sql.Tx) (PCRPolicy, []eventlog.Event, error) {
		out, err := scanPCRPolicy(tx.QueryRowContext(ctx, `INSERT INTO reg_pcr_policies (`+pcrPolicyColumns+`) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (label_key, label_value) DO UPDATE SET digests = excluded.digests, enforce = excluded.enforce, updated_at = excluded.updated_at
			RETURNING `+pcrPolicyColumns,
			p.LabelKey, p.LabelValue, db.JSON(p.Digests), p.Enforce, s.DB.Dialect.Time(p.UpdatedAt)))
		return out, eventlog.One(EventPCRPolicySet, "", p.UpdatedAt,
			DetailLabel, p.LabelKey+"="+p.LabelValue, DetailEnforce, strconv.FormatBool(p.Enforce), DetailActor, actor), err
	})
	return db.Result(out, err, "set PCR policy %s=%s", p.LabelKey, p.LabelValue)
}

// ListPCRPolicies returns every policy.
func (s *SQLStore) ListPCRPolicies(ctx context.Context) ([]PCRPolicy, error) {
	ps, err := db.Collect(ctx, s.DB, scanPCRPolicy, `SELECT `+pcrPolicyColumns+` FROM reg_pcr_policies ORDER BY label_key, label_value`)
	return db.Result(ps, err, "list PCR policies")
}

// DeletePCRPolicy removes a label's policy.
func (s *SQLStore) DeletePCRPolicy(ctx context.Context, key, value string, now time.Time, actor string) error {
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		var one int
		err := tx.QueryRowContext(ctx, `DELETE FROM reg_pcr_policies WHERE label_key = $1 AND label_value = $2 RETURNING 1`, key, value).Scan(&one)
		return eventlog.One(EventPCRPolicyDeleted, "", now, DetailLabel, key+"="+value, DetailActor, actor), db.Found(err, ErrNotFound)
	})
	return db.Wrap(err, "delete PCR policy %s=%s", key, value)
}

// Secret returns the named secret, storing candidate if there is none.
// The insert that loses a race does nothing; the read that follows sees
// the winner's.
func (s *SQLStore) Secret(ctx context.Context, name string, candidate []byte) ([]byte, error) {
	if len(candidate) == 0 {
		return nil, fmt.Errorf("secret %s: empty candidate", name)
	}
	var v []byte
	_, err := s.DB.ExecContext(ctx, `INSERT INTO reg_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, candidate)
	if err == nil {
		err = s.DB.QueryRowContext(ctx, `SELECT value FROM reg_secrets WHERE name = $1`, name).Scan(db.ScanBytes(&v))
	}
	return db.Result(v, err, "secret %s", name)
}

// EKLabels returns the enrolled labels of hashes.
func (s *SQLStore) EKLabels(ctx context.Context, hashes []string) (map[string]string, error) {
	hashes = nonEmpty(hashes)
	if len(hashes) == 0 {
		return nil, nil
	}
	type pair struct{ hash, label string }
	ps, err := db.Collect(ctx, s.DB, func(row db.Scanner) (pair, error) {
		var p pair
		return p, row.Scan(&p.hash, &p.label)
	}, `SELECT hash, label FROM reg_eks WHERE `+s.DB.Dialect.In("hash", "$1"), s.DB.Dialect.Strings(hashes))
	if err != nil {
		return nil, db.Wrap(err, "EK labels")
	}
	out := make(map[string]string, len(ps))
	for _, p := range ps {
		out[p.hash] = p.label
	}
	return out, nil
}
