package regstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

func scanPostgresIntent(row pgx.Row) (Intent, error) {
	var in Intent
	if err := row.Scan(&in.RequestID, &in.NodeID, &in.KeySHA256, &in.PrevSerial, &in.Hostname, &in.CSR, &in.CreatedAt); err != nil {
		return Intent{}, err
	}
	in.CreatedAt = in.CreatedAt.UTC()
	in.CSR = nilIfEmpty(in.CSR)
	return in, nil
}

// ClaimIssuance opens an intent unless one is open for the node.
func (s *PostgresStore) ClaimIssuance(ctx context.Context, in Intent) (Intent, bool, error) {
	if err := checkIntent(in); err != nil {
		return Intent{}, false, fmt.Errorf("claim issuance: %w", err)
	}
	// A concurrent claim of the same node waits on the unique node_id and
	// then does nothing; the read below sees the winner's committed row.
	tag, err := s.pool.Exec(ctx, fmt.Sprintf(claimSQL, "$1", "$2", "$3", "$4", "$5"),
		in.RequestID, in.NodeID, in.KeySHA256, in.PrevSerial, utc(in.CreatedAt))
	if err != nil {
		return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, err)
	}
	if tag.RowsAffected() == 1 {
		open, err := scanPostgresIntent(s.pool.QueryRow(ctx, `SELECT `+intentColumns+` FROM reg_intents WHERE request_id = $1`, in.RequestID))
		if err != nil {
			return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, err)
		}
		return open, true, nil
	}
	open, err := scanPostgresIntent(s.pool.QueryRow(ctx, `SELECT `+intentColumns+` FROM reg_intents WHERE node_id = $1`, in.NodeID))
	if err == nil {
		return open, false, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, err)
	}
	return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, missing(ctx, s.pool, in.NodeID, ErrConflict))
}

// CompleteIssuance closes an intent with the CA's certificate.
func (s *PostgresStore) CompleteIssuance(ctx context.Context, requestID string, c Cert, now time.Time) (Node, bool, error) {
	if err := checkCert(c); err != nil {
		return Node{}, false, fmt.Errorf("complete issuance %s: %w", requestID, err)
	}
	n, installed, err := s.completeIssuance(ctx, requestID, c, now)
	if err != nil {
		return Node{}, false, fmt.Errorf("complete issuance %s: %w", requestID, err)
	}
	return n, installed, nil
}

func (s *PostgresStore) completeIssuance(ctx context.Context, requestID string, c Cert, now time.Time) (Node, bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Node{}, false, err
	}
	defer tx.Rollback(ctx)
	// Deleting the intent first makes concurrent completions queue on its
	// row: the second finds nothing and counts nothing.
	in, err := scanPostgresIntent(tx.QueryRow(ctx, `DELETE FROM reg_intents WHERE request_id = $1 RETURNING `+intentColumns, requestID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Node{}, false, ErrNotFound
	}
	if err != nil {
		return Node{}, false, err
	}
	// The row lock holds the node's status, key and serial still.
	var (
		status string
		key    []byte
		serial *string
	)
	err = tx.QueryRow(ctx, `SELECT status, key_sha256, cert_serial FROM reg_nodes WHERE id = $1 FOR UPDATE`, in.NodeID).Scan(&status, &key, &serial)
	if errors.Is(err, pgx.ErrNoRows) {
		return Node{}, false, tx.Commit(ctx)
	}
	if err != nil {
		return Node{}, false, err
	}
	cur := ""
	if serial != nil {
		cur = *serial
	}
	if !installable(in, Status(status), key, cur) {
		n, err := scanPostgresNode(tx.QueryRow(ctx, `UPDATE reg_nodes SET certificates_issued = certificates_issued + 1
			WHERE id = $1 RETURNING `+nodeColumns, in.NodeID))
		if err != nil {
			return Node{}, false, err
		}
		return n, false, tx.Commit(ctx)
	}
	n, err := scanPostgresNode(tx.QueryRow(ctx, `UPDATE reg_nodes SET
		cert_serial = $1, cert_not_before = $2, cert_not_after = $3, cert_chain = $4,
		certificates_issued = certificates_issued + 1, updated_at = $5
		WHERE id = $6 RETURNING `+nodeColumns,
		c.Serial, utc(c.NotBefore), utc(c.NotAfter), nonNilChain(c.Chain), utc(now), in.NodeID))
	if err != nil {
		return Node{}, false, err
	}
	return n, true, s.commit(ctx, tx, certificateEvent(in.NodeID, in.PrevSerial, c, utc(now)))
}

// ListIntents returns open intents, oldest first.
func (s *PostgresStore) ListIntents(ctx context.Context, before time.Time, limit int) ([]Intent, error) {
	q := `SELECT ` + intentColumns + ` FROM reg_intents WHERE created_at <= $1 ORDER BY created_at, request_id`
	args := []any{utc(before)}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list intents: %w", err)
	}
	ins, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Intent, error) { return scanPostgresIntent(r) })
	if err != nil {
		return nil, fmt.Errorf("list intents: %w", err)
	}
	return nilIfEmpty(ins), nil
}
