package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// sqliteChunk is how many events one INSERT carries: SQLite binds at most
// 32766 parameters.
const sqliteChunk = 500

// AppendSQLite appends events, in the order given, to t inside tx. SQLite
// has one writer at a time, so cursors follow commit order without a lock;
// call the log's Notify once tx has committed.
func AppendSQLite(ctx context.Context, tx *sql.Tx, t Table, events ...Event) error {
	if err := checkEvents(events); err != nil {
		return fmt.Errorf("append to %s: %w", t.events, err)
	}
	for chunk := range slices.Chunk(events, sqliteChunk) {
		// SQLite assigns rowids in the order of the VALUES list.
		q := `INSERT INTO ` + t.events + ` (at, node_id, type, details) VALUES ` + repeatJoin("(?, ?, ?, ?)", len(chunk))
		args := make([]any, 0, 4*len(chunk))
		for _, e := range chunk {
			d, err := detailsJSON(e.Details)
			if err != nil {
				return fmt.Errorf("append to %s: %w", t.events, err)
			}
			args = append(args, e.Time.UnixMicro(), e.NodeID, e.Type, d)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("append to %s: %w", t.events, err)
		}
	}
	return nil
}

// SQLiteLog is a log on an embedded SQLite database.
type SQLiteLog struct {
	db *sql.DB
	t  Table
	n  Notifier
}

var _ Log = (*SQLiteLog)(nil)

// NewSQLiteLog returns the log t in db. Its tables must exist (Schema). db
// should come from db.OpenSQLite, whose transactions take the write lock up
// front.
func NewSQLiteLog(db *sql.DB, t Table) *SQLiteLog {
	return &SQLiteLog{db: db, t: t}
}

// Notify wakes this process's followers; call it after a transaction that
// appended has committed.
func (l *SQLiteLog) Notify() { l.n.Notify() }

// Appended returns a channel closed at the next Notify.
func (l *SQLiteLog) Appended() <-chan struct{} { return l.n.C() }

// Read returns a page of events after q.After; one statement, one snapshot.
func (l *SQLiteLog) Read(ctx context.Context, q Query) (Page, error) {
	limit := pageLimit(q)
	where := `cursor > ?`
	args := []any{q.After}
	if len(q.NodeIDs) > 0 {
		where += ` AND node_id IN (` + repeatJoin("?", len(q.NodeIDs)) + `)`
		for _, id := range q.NodeIDs {
			args = append(args, id)
		}
	}
	if len(q.Types) > 0 {
		where += ` AND type IN (` + repeatJoin("?", len(q.Types)) + `)`
		for _, t := range q.Types {
			args = append(args, t)
		}
	}
	rows, err := l.db.QueryContext(ctx, readQuery(l.t, where, "?"), append(args, limit)...)
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
			cursor, at           sql.NullInt64
			nodeID, typ, details sql.NullString
		)
		if err := rows.Scan(&page.DeletedThrough, &head, &cursor, &at, &nodeID, &typ, &details); err != nil {
			return Page{}, fmt.Errorf("read %s: %w", l.t.events, err)
		}
		if !cursor.Valid {
			continue // the LEFT JOIN's row when nothing matched
		}
		d, err := parseDetails([]byte(details.String))
		if err != nil {
			return Page{}, fmt.Errorf("read %s: cursor %d: %w", l.t.events, cursor.Int64, err)
		}
		page.Events = append(page.Events, Event{
			Cursor: cursor.Int64, Time: time.UnixMicro(at.Int64).UTC(), NodeID: nodeID.String, Type: typ.String, Details: d,
		})
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("read %s: %w", l.t.events, err)
	}
	page.Next = pageNext(q, limit, page.Events, max(head, page.DeletedThrough))
	return page, nil
}

// Bounds returns the watermark, oldest and newest cursor.
func (l *SQLiteLog) Bounds(ctx context.Context) (Bounds, error) {
	var b Bounds
	if err := l.db.QueryRowContext(ctx, boundsQuery(l.t)).Scan(&b.DeletedThrough, &b.Oldest, &b.Head); err != nil {
		return Bounds{}, fmt.Errorf("bounds of %s: %w", l.t.events, err)
	}
	b.Head = max(b.Head, b.DeletedThrough)
	return b, nil
}

// DeleteBefore deletes the oldest events before the first one at or after
// t, in batches.
func (l *SQLiteLog) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
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

func (l *SQLiteLog) deleteBatch(ctx context.Context, t time.Time) (int64, bool, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT cursor, at FROM `+l.t.events+` ORDER BY cursor LIMIT ?`, deleteBatch)
	if err != nil {
		return 0, false, err
	}
	var (
		cursors []int64
		times   []time.Time
	)
	for rows.Next() {
		var c, at int64
		if err := rows.Scan(&c, &at); err != nil {
			rows.Close()
			return 0, false, err
		}
		cursors, times = append(cursors, c), append(times, time.UnixMicro(at).UTC())
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, false, err
	}
	through, whole := prefixEnd(cursors, times, t)
	if through == 0 {
		return 0, false, nil
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM `+l.t.events+` WHERE cursor <= ?`, through)
	if err != nil {
		return 0, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE `+l.t.watermark+` SET deleted_through = MAX(deleted_through, ?) WHERE id = 1`, through); err != nil {
		return 0, false, err
	}
	if err := tx.Commit(); err != nil {
		return 0, false, err
	}
	return n, whole && len(cursors) == deleteBatch, nil
}

// repeatJoin repeats s n times, comma separated.
func repeatJoin(s string, n int) string {
	return strings.TrimSuffix(strings.Repeat(s+", ", n), ", ")
}
