package regstore

import (
	"context"
	"database/sql"

	"github.com/berth-dev/berth/internal/db"
)

// The registration path's statements (token use, node insert and
// replacement, duplicate-hardware lookups, intents, issuance completion,
// token and node reads), which Open prepares on SQLite.
const (
	tokenByID  = `SELECT ` + tokenColumns + ` FROM reg_tokens WHERE id = $1`
	nodeByID   = `SELECT ` + nodeColumns + ` FROM reg_nodes WHERE id = $1`
	nodeExists = `SELECT 1 FROM reg_nodes WHERE id = $1`
	useToken   = `UPDATE reg_tokens SET uses_left = uses_left - 1
		WHERE id = $1 AND NOT revoked AND expires_at > $2 AND uses_left > 0`
	insertNode = `INSERT INTO reg_nodes (` + nodeColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, NULL, $14, $15, $15, $16, $17, $18,
		$19, '', NULL, 0, '', '')
		RETURNING ` + nodeColumns
	// replaceNode, countIssued and installCert are updateNode's.
	replaceNode = `status = $1, key_sha256 = $2, hardware_uuid = $3, macs = $4, hostname = $5, serial = $6, labels = $7,
		bundle_kem = $8, bundle_key = $9, csr = $10, token_id = $11, replacement_allowed = FALSE,
		cert_serial = NULL, cert_not_before = NULL, cert_not_after = NULL, cert_chain = NULL,
		updated_at = $12, identity_source = $14, ek_hash = $15, ek_certificate = $16,
		ak_public = $17, boot_pcr_digest = '', boot_pcr_digest_at = NULL, boot_policy_violation = '',
		status_reason = ''
		WHERE id = $13 AND replacement_allowed`
	countIssued = `certificates_issued = certificates_issued + 1 WHERE id = $1`
	installCert = `cert_serial = $1, cert_not_before = $2, cert_not_after = $3, cert_chain = $4,
		certificates_issued = certificates_issued + 1, updated_at = $5 WHERE id = $6`
	openFirstIntent = `INSERT INTO reg_intents (` + intentColumns + `)
		VALUES ($1, $2, $3, '', $4, $5, $6)
		ON CONFLICT (node_id) DO NOTHING RETURNING ` + intentColumns
	intentByNode    = `SELECT ` + intentColumns + ` FROM reg_intents WHERE node_id = $1`
	intentByRequest = `SELECT ` + intentColumns + ` FROM reg_intents WHERE request_id = $1`
	deleteIntent    = `DELETE FROM reg_intents WHERE request_id = $1`
	// installIntent installs the certificate of intent $1 on its node if
	// it is installable (see installable): the node approved, with the
	// intent's key and the certificate the intent replaces. One statement,
	// and the node's row lock is its first lock, as in intentWithNodeSQL.
	installIntent = `cert_serial = $2, cert_not_before = $3, cert_not_after = $4, cert_chain = $5,
		certificates_issued = certificates_issued + 1, updated_at = $6
		WHERE id = (SELECT node_id FROM reg_intents WHERE request_id = $1) AND status = $7
		AND EXISTS (SELECT 1 FROM reg_intents i WHERE i.request_id = $1 AND i.key_sha256 = reg_nodes.key_sha256
			AND i.prev_serial = COALESCE(reg_nodes.cert_serial, ''))`
	closeIntent = `DELETE FROM reg_intents WHERE request_id = $1 RETURNING prev_serial`
)

func updateNodeSQL(setWhere string) string {
	return `UPDATE reg_nodes SET ` + setWhere + ` RETURNING ` + nodeColumns
}

func claimIntentSQL(d db.Dialect) string {
	return `INSERT INTO reg_intents (` + intentColumns + `)
		SELECT $1, id, key_sha256, $4, hostname, csr, $5 FROM reg_nodes
		WHERE id = $2 AND key_sha256 = $3 AND status = 'approved' AND COALESCE(cert_serial, '') = $4` + d.ForUpdate() + `
		ON CONFLICT (node_id) DO NOTHING RETURNING ` + intentColumns
}

// intentWithNodeSQL reads an intent with its node's state, taking the
// node's row lock on PostgreSQL.
func intentWithNodeSQL(d db.Dialect) string {
	lock := d.ForUpdate()
	if lock != "" {
		lock += " OF n"
	}
	return `SELECT i.request_id, i.node_id, i.key_sha256, i.prev_serial, i.hostname, i.csr, i.created_at,
		n.status, n.key_sha256, n.cert_serial
		FROM reg_intents i JOIN reg_nodes n ON n.id = i.node_id WHERE i.request_id = $1` + lock
}

// statements keeps the registration path's statements prepared, on
// SQLite: its driver parses a statement again on every call, a tenth of
// berthd dev's CPU per registration, where a prepared one stays prepared on
// each pooled connection (database/sql keeps a copy per connection, and
// SQLite's connections are never retired). PostgreSQL's driver keeps its
// own cache of prepared statements.
//
// They are all prepared at Open, never on first use: a first use inside a
// transaction would prepare through the pool, waiting for a second
// connection while holding one, and in a storm every other connection is
// held by a writer waiting (busy_timeout, 10 s) for that very transaction's
// write lock. Within a transaction, Tx.StmtContext prepares a statement on
// the transaction's own connection. The map is only read after Open.
type statements map[string]*sql.Stmt

// prepareHot prepares the registration path's statements on SQLite, and
// none on PostgreSQL.
func prepareHot(ctx context.Context, d *db.DB) (statements, error) {
	if d.Dialect != db.SQLite {
		return nil, nil
	}
	st := statements{}
	for _, q := range []string{tokenByID, nodeByID, nodeExists, useToken, insertNode, updateNodeSQL(replaceNode),
		updateNodeSQL(countIssued), updateNodeSQL(installCert), openFirstIntent, intentByNode, intentByRequest,
		deleteIntent, updateNodeSQL(installIntent), closeIntent, claimIntentSQL(d.Dialect), intentWithNodeSQL(d.Dialect), nodesByHardwareSQL(d.Dialect, false),
		nodesByHardwareSQL(d.Dialect, true)} {
		p, err := d.PrepareContext(ctx, q)
		if err != nil {
			st.close()
			return nil, err
		}
		st[q] = p
	}
	return st, nil
}

func (st statements) close() {
	for _, p := range st {
		p.Close()
	}
}

// prepared runs queries through the store's prepared statements, in tx
// (or outside a transaction when tx is nil); any other query, and every
// query on PostgreSQL, runs as it is.
type prepared struct {
	st statements
	q  db.Querier
	tx *sql.Tx
}

var _ db.Querier = prepared{}

// hot is q for the statements of the registration path: prepared ones on
// SQLite, q itself on PostgreSQL.
func (s *SQLStore) hot(tx *sql.Tx) db.Querier {
	switch {
	case s.DB.Dialect == db.Postgres && tx != nil:
		return tx
	case s.DB.Dialect == db.Postgres:
		return s.DB
	case tx != nil:
		return prepared{s.stmts, tx, tx}
	}
	return prepared{s.stmts, s.DB, nil}
}

// stmt is query prepared, bound to the transaction if there is one; nil
// if it was not prepared at Open.
func (p prepared) stmt(ctx context.Context, query string) *sql.Stmt {
	st := p.st[query]
	if st != nil && p.tx != nil {
		st = p.tx.StmtContext(ctx, st)
	}
	return st
}

func (p prepared) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.q.ExecContext(ctx, query, args...)
}

func (p prepared) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.q.QueryContext(ctx, query, args...)
}

func (p prepared) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.q.QueryRowContext(ctx, query, args...)
}
