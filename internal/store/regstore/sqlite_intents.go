package regstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

func scanSQLiteIntent(row scanner) (Intent, error) {
	var (
		in      Intent
		created int64
	)
	if err := row.Scan(&in.RequestID, &in.NodeID, &in.KeySHA256, &in.PrevSerial, &in.Hostname, &in.CSR, &created); err != nil {
		return Intent{}, err
	}
	in.CreatedAt = fromMicros(created)
	in.CSR = nilIfEmpty(in.CSR)
	return in, nil
}

// ClaimIssuance opens an intent unless one is open for the node.
func (s *SQLiteStore) ClaimIssuance(ctx context.Context, in Intent) (Intent, bool, error) {
	if err := checkIntent(in); err != nil {
		return Intent{}, false, fmt.Errorf("claim issuance: %w", err)
	}
	res, err := s.db.ExecContext(ctx, fmt.Sprintf(claimSQL, "?1", "?2", "?3", "?4", "?5"),
		in.RequestID, in.NodeID, in.KeySHA256, in.PrevSerial, micros(in.CreatedAt))
	if err != nil {
		return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, err)
	}
	if k, err := res.RowsAffected(); err != nil {
		return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, err)
	} else if k == 1 {
		open, err := scanSQLiteIntent(s.db.QueryRowContext(ctx, `SELECT `+intentColumns+` FROM reg_intents WHERE request_id = ?`, in.RequestID))
		if err != nil {
			return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, err)
		}
		return open, true, nil
	}
	open, err := scanSQLiteIntent(s.db.QueryRowContext(ctx, `SELECT `+intentColumns+` FROM reg_intents WHERE node_id = ?`, in.NodeID))
	if err == nil {
		return open, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, err)
	}
	return Intent{}, false, fmt.Errorf("claim issuance for node %s: %w", in.NodeID, s.missing(ctx, s.db, in.NodeID, ErrConflict))
}

// CompleteIssuance closes an intent with the CA's certificate.
func (s *SQLiteStore) CompleteIssuance(ctx context.Context, requestID string, c Cert, now time.Time) (Node, bool, error) {
	if err := checkCert(c); err != nil {
		return Node{}, false, fmt.Errorf("complete issuance %s: %w", requestID, err)
	}
	n, installed, err := s.completeIssuance(ctx, requestID, c, now)
	if err != nil {
		return Node{}, false, fmt.Errorf("complete issuance %s: %w", requestID, err)
	}
	return n, installed, nil
}

func (s *SQLiteStore) completeIssuance(ctx context.Context, requestID string, c Cert, now time.Time) (Node, bool, error) {
	// BEGIN IMMEDIATE: the node cannot change between the read and the write.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Node{}, false, err
	}
	defer tx.Rollback()
	in, err := scanSQLiteIntent(tx.QueryRowContext(ctx, `DELETE FROM reg_intents WHERE request_id = ? RETURNING `+intentColumns, requestID))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, false, ErrNotFound
	}
	if err != nil {
		return Node{}, false, err
	}
	var (
		status string
		key    []byte
		serial sql.NullString
	)
	err = tx.QueryRowContext(ctx, `SELECT status, key_sha256, cert_serial FROM reg_nodes WHERE id = ?`, in.NodeID).Scan(&status, &key, &serial)
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, false, tx.Commit()
	}
	if err != nil {
		return Node{}, false, err
	}
	if !installable(in, Status(status), key, serial.String) {
		n, err := scanSQLiteNode(tx.QueryRowContext(ctx, `UPDATE reg_nodes SET certificates_issued = certificates_issued + 1
			WHERE id = ? RETURNING `+nodeColumns, in.NodeID))
		if err != nil {
			return Node{}, false, err
		}
		return n, false, tx.Commit()
	}
	n, err := scanSQLiteNode(tx.QueryRowContext(ctx, `UPDATE reg_nodes SET
		cert_serial = ?, cert_not_before = ?, cert_not_after = ?, cert_chain = ?,
		certificates_issued = certificates_issued + 1, updated_at = ?
		WHERE id = ? RETURNING `+nodeColumns,
		c.Serial, micros(c.NotBefore), micros(c.NotAfter), jsonText(c.Chain), micros(now), in.NodeID))
	if err != nil {
		return Node{}, false, err
	}
	return n, true, s.commit(ctx, tx, certificateEvent(in.NodeID, in.PrevSerial, c, utc(now)))
}

// ListIntents returns open intents, oldest first.
func (s *SQLiteStore) ListIntents(ctx context.Context, before time.Time, limit int) ([]Intent, error) {
	q := `SELECT ` + intentColumns + ` FROM reg_intents WHERE created_at <= ? ORDER BY created_at, request_id`
	args := []any{micros(before)}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list intents: %w", err)
	}
	defer rows.Close()
	var ins []Intent
	for rows.Next() {
		in, err := scanSQLiteIntent(rows)
		if err != nil {
			return nil, fmt.Errorf("list intents: %w", err)
		}
		ins = append(ins, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list intents: %w", err)
	}
	return ins, nil
}
