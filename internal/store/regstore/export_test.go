package regstore

import (
	"context"
	"database/sql"
	"slices"

	"github.com/berth-dev/berth/internal/db"
)

// BulkLoad inserts nodes directly, bypassing tokens, so that benchmarks can
// preload many thousands of nodes quickly: one transaction of multi-row
// inserts.
func BulkLoad(ctx context.Context, st Store, nodes []Node) error {
	s := st.(*SQLStore)
	d := s.DB.Dialect
	err := s.DB.Tx(ctx, func(tx *sql.Tx) error {
		for chunk := range slices.Chunk(nodes, 1000) {
			q := `INSERT INTO reg_nodes (` + nodeColumns + `) VALUES `
			var p db.Params
			for i, n := range chunk {
				if i > 0 {
					q += ", "
				}
				q += p.Values(n.ID, string(n.Status), n.KeySHA256, n.HardwareUUID, db.JSON(n.MACs), n.Hostname,
					n.Serial, db.JSON(n.Labels), int64(n.BundleKEM), db.Bytes(n.BundleKey), db.Bytes(n.CSR), n.TokenID,
					n.ReplacementAllowed, nil, nil, nil, nil, n.CertificatesIssued, d.Time(n.CreatedAt), d.Time(n.UpdatedAt),
					n.IdentitySource, n.EKHash, n.EKCertificate, db.Bytes(n.AKPublic), n.BootPCRDigest, nil, n.BootNonceTime,
					n.BootPolicyViolation, n.StatusReason)
			}
			if _, err := tx.ExecContext(ctx, q, p...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || d != db.Postgres {
		return err
	}
	// Fresh statistics, as autovacuum would eventually provide, so the
	// planner sees the table as it is.
	_, err = s.DB.ExecContext(ctx, `ANALYZE reg_nodes`)
	return err
}
