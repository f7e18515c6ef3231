package eventlog

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AppendPostgres appends events, in the order given, to t inside tx. It
// first takes t's advisory transaction lock, which is held until tx ends, so
// that cursors are handed out in commit order; make it the transaction's
// last write (see the package documentation), and call the log's Notify
// once tx has committed.
func AppendPostgres(ctx context.Context, tx pgx.Tx, t Table, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	if err := checkEvents(events); err != nil {
		return fmt.Errorf("append to %s: %w", t.events, err)
	}
	at := make([]time.Time, len(events))
	nodes := make([]string, len(events))
	types := make([]string, len(events))
	details := make([]string, len(events))
	for i, e := range events {
		d, err := detailsJSON(e.Details)
		if err != nil {
			return fmt.Errorf("append to %s: %w", t.events, err)
		}
		at[i], nodes[i], types[i], details[i] = utc(e.Time), e.NodeID, e.Type, d
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, t.lockKey); err != nil {
		return fmt.Errorf("append to %s: lock: %w", t.events, err)
	}
	// Identity values follow the ORDER BY of an INSERT … SELECT.
	_, err := tx.Exec(ctx, `INSERT INTO `+t.events+` (at, node_id, type, details)
		SELECT at, node_id, type, details::jsonb
		FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[])
			WITH ORDINALITY AS e(at, node_id, type, details, ord)
		ORDER BY ord`, at, nodes, types, details)
	if err != nil {
		return fmt.Errorf("append to %s: %w", t.events, err)
	}
	return nil
}

// PostgresLog is a log on PostgreSQL, shared by every replica of its
// service.
type PostgresLog struct {
	pool *pgxpool.Pool
	t    Table
	n    Notifier
}

var _ Log = (*PostgresLog)(nil)

// NewPostgresLog returns the log t in the database of pool. Its tables must
// exist (Schema).
func NewPostgresLog(pool *pgxpool.Pool, t Table) *PostgresLog {
	return &PostgresLog{pool: pool, t: t}
}

// Notify wakes this process's followers; call it after a transaction that
// appended has committed.
func (l *PostgresLog) Notify() { l.n.Notify() }

// Appended returns a channel closed at the next Notify.
func (l *PostgresLog) Appended() <-chan struct{} { return l.n.C() }

// Read returns a page of events after q.After. One statement reads the page
// and the bounds, so they come from one snapshot.
func (l *PostgresLog) Read(ctx context.Context, q Query) (Page, error) {
	limit := pageLimit(q)
	where := `cursor > $1`
	args := []any{q.After}
	if len(q.NodeIDs) > 0 {
		args = append(args, q.NodeIDs)
		where += ` AND node_id = ANY($` + strconv.Itoa(len(args)) + `)`
	}
	if len(q.Types) > 0 {
		args = append(args, q.Types)
		where += ` AND type = ANY($` + strconv.Itoa(len(args)) + `)`
	}
	args = append(args, limit)
	rows, err := l.pool.Query(ctx, readQuery(l.t, where, "$"+strconv.Itoa(len(args))), args...)
	if err != nil {
		return Page{}, fmt.Errorf("read %s: %w", l.t.events, err)
	}
	defer rows.Close()
	var (
		page Page
		head int64
	)
	for rows.Next() {
		var (
			cursor       *int64
			at           *time.Time
			nodeID, typ  *string
			detailsBytes []byte
		)
		if err := rows.Scan(&page.DeletedThrough, &head, &cursor, &at, &nodeID, &typ, &detailsBytes); err != nil {
			return Page{}, fmt.Errorf("read %s: %w", l.t.events, err)
		}
		if cursor == nil {
			continue // the LEFT JOIN's row when nothing matched
		}
		d, err := parseDetails(detailsBytes)
		if err != nil {
			return Page{}, fmt.Errorf("read %s: cursor %d: %w", l.t.events, *cursor, err)
		}
		page.Events = append(page.Events, Event{Cursor: *cursor, Time: at.UTC(), NodeID: *nodeID, Type: *typ, Details: d})
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("read %s: %w", l.t.events, err)
	}
	page.Next = pageNext(q, limit, page.Events, max(head, page.DeletedThrough))
	return page, nil
}

// readQuery reads one page and, in the same statement, the watermark and
// the newest cursor. The LEFT JOIN yields one row of NULL event columns when
// no event matches. Both dialects share it.
func readQuery(t Table, where, limit string) string {
	return `SELECT w.deleted_through, COALESCE((SELECT MAX(cursor) FROM ` + t.events + `), 0),
		e.cursor, e.at, e.node_id, e.type, e.details
	FROM ` + t.watermark + ` w LEFT JOIN (
		SELECT cursor, at, node_id, type, details FROM ` + t.events + `
		WHERE ` + where + ` ORDER BY cursor LIMIT ` + limit + `
	) e ON true
	WHERE w.id = 1
	ORDER BY e.cursor`
}

// boundsQuery reads the watermark, oldest and newest cursor in one
// statement. Both dialects share it.
func boundsQuery(t Table) string {
	return `SELECT deleted_through,
		COALESCE((SELECT MIN(cursor) FROM ` + t.events + `), 0),
		COALESCE((SELECT MAX(cursor) FROM ` + t.events + `), 0)
	FROM ` + t.watermark + ` WHERE id = 1`
}

// Bounds returns the watermark, oldest and newest cursor.
func (l *PostgresLog) Bounds(ctx context.Context) (Bounds, error) {
	var b Bounds
	if err := l.pool.QueryRow(ctx, boundsQuery(l.t)).Scan(&b.DeletedThrough, &b.Oldest, &b.Head); err != nil {
		return Bounds{}, fmt.Errorf("bounds of %s: %w", l.t.events, err)
	}
	b.Head = max(b.Head, b.DeletedThrough)
	return b, nil
}

// DeleteBefore deletes the oldest events before the first one at or after
// t, in batches. Cursors still being appended are newer than any a snapshot
// sees (see Cursor order), so none is deleted unseen.
func (l *PostgresLog) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	var total int64
	for {
		n, more, err := l.deleteBatch(ctx, utc(t))
		total += n
		if err != nil {
			return total, fmt.Errorf("delete from %s: %w", l.t.events, err)
		}
		if !more {
			return total, nil
		}
	}
}

func (l *PostgresLog) deleteBatch(ctx context.Context, t time.Time) (n int64, more bool, err error) {
	err = pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT cursor, at FROM `+l.t.events+` ORDER BY cursor LIMIT $1`, deleteBatch)
		if err != nil {
			return err
		}
		var (
			cursors []int64
			times   []time.Time
		)
		for rows.Next() {
			var (
				c  int64
				at time.Time
			)
			if err := rows.Scan(&c, &at); err != nil {
				rows.Close()
				return err
			}
			cursors, times = append(cursors, c), append(times, at)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		through, whole := prefixEnd(cursors, times, t)
		if through == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, `DELETE FROM `+l.t.events+` WHERE cursor <= $1`, through)
		if err != nil {
			return err
		}
		n, more = tag.RowsAffected(), whole && len(cursors) == deleteBatch
		_, err = tx.Exec(ctx, `UPDATE `+l.t.watermark+` SET deleted_through = GREATEST(deleted_through, $1) WHERE id = 1`, through)
		return err
	})
	if err != nil {
		return 0, false, err
	}
	return n, more, nil
}
