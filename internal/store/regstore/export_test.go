package regstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// BulkLoad inserts nodes directly, bypassing tokens, so that benchmarks can
// preload many thousands of nodes quickly: one transaction on SQLite, COPY on
// PostgreSQL.
func BulkLoad(ctx context.Context, s Store, nodes []Node) error {
	switch s := s.(type) {
	case *SQLiteStore:
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO reg_nodes (`+nodeColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, n := range nodes {
			if _, err := stmt.ExecContext(ctx, n.ID, n.Status, n.KeySHA256, n.HardwareUUID, jsonText(n.MACs),
				n.Hostname, n.Serial, jsonText(n.Labels), n.BundleKEM, nonNilBytes(n.BundleKey), nonNilBytes(n.CSR),
				n.TokenID, n.ReplacementAllowed, n.CertificatesIssued, micros(n.CreatedAt), micros(n.UpdatedAt)); err != nil {
				return err
			}
		}
		return tx.Commit()
	case *PostgresStore:
		cols := []string{"id", "status", "key_sha256", "hardware_uuid", "macs", "hostname", "serial", "labels",
			"bundle_kem", "bundle_key", "csr", "token_id", "replacement_allowed", "certificates_issued", "created_at", "updated_at"}
		_, err := s.pool.CopyFrom(ctx, pgx.Identifier{"reg_nodes"}, cols, pgx.CopyFromSlice(len(nodes), func(i int) ([]any, error) {
			n := nodes[i]
			return []any{n.ID, string(n.Status), n.KeySHA256, n.HardwareUUID, nonNilStrings(n.MACs), n.Hostname,
				n.Serial, nonNilMap(n.Labels), int32(n.BundleKEM), nonNilBytes(n.BundleKey), nonNilBytes(n.CSR), n.TokenID,
				n.ReplacementAllowed, n.CertificatesIssued, utc(n.CreatedAt), utc(n.UpdatedAt)}, nil
		}))
		if err != nil {
			return err
		}
		// Fresh statistics, as autovacuum would eventually provide, so the
		// planner sees the table as it is.
		_, err = s.pool.Exec(ctx, `ANALYZE reg_nodes`)
		return err
	}
	return fmt.Errorf("BulkLoad: unsupported store %T", s)
}
