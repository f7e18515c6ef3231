package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/berth-dev/berth/internal/db"
)

// appendChunk is how many events one INSERT carries, well inside the
// parameters one statement may bind on both engines.
const appendChunk = 500

// SQLLog is a log in a service's database, on either engine. Every replica
// of the service opens its own on the shared database.
type SQLLog struct {
	Notifier // woken after this process's appends commit
	db       *db.DB
	t        Table
}

var _ Log = (*SQLLog)(nil)

// NewLog returns the log t in d. Its tables must exist (Schema).
func NewLog(d *db.DB, t Table) *SQLLog { return &SQLLog{db: d, t: t} }

// Store is what a store with an event log is made of: its database, with
// its tables up to date, and its log.
type Store struct {
	DB  *db.DB
	Log *SQLLog
	// group batches WriteGrouped's transactions.
	group *db.Group[[]Event]
}

// OpenStore opens the database at where (a path for SQLite, a DSN for
// PostgreSQL), brings schema up to date and returns it with its log t.
func OpenStore(ctx context.Context, d db.Dialect, where string, schema db.Schema, t Table) (Store, error) {
	h, err := db.OpenSchema(ctx, d, where, schema)
	if err != nil {
		return Store{}, err
	}
	l := NewLog(h, t)
	return Store{DB: h, Log: l, group: &db.Group[[]Event]{DB: h, Finish: l.appendBatch}}, nil
}

// Write runs fn in a transaction and appends the events fn returns as the
// transaction's last write (see Cursor order); once the transaction has
// committed, it wakes this process's followers.
func (s Store) Write(ctx context.Context, fn func(*sql.Tx) ([]Event, error)) error {
	var appended bool
	err := s.DB.Tx(ctx, func(tx *sql.Tx) error {
		evs, err := fn(tx)
		if err != nil || len(evs) == 0 {
			return err
		}
		appended = true
		return s.Log.Append(ctx, tx, evs...)
	})
	if err == nil && appended {
		s.Log.Notify()
	}
	return err
}

// WriteGrouped is Write for the writes of a hot path, which many callers
// make at once (registrations, issuances): fn runs in a transaction shared
// with the concurrent WriteGrouped calls (db.Group: one commit, and one
// turn at the log's append lock, for the batch), rolled back alone if it
// fails, with a context that is never cancelled. fn may run twice (see
// db.Group.Tx), so it must do nothing outside tx. The events of the
// batch's writes are appended together as its last write.
func (s Store) WriteGrouped(ctx context.Context, fn func(context.Context, *sql.Tx) ([]Event, error)) error {
	evs, err := s.group.Tx(ctx, func(ctx context.Context, tx *sql.Tx) ([]Event, error) {
		evs, err := fn(ctx, tx)
		if err == nil {
			err = checkEvents(evs)
		}
		return evs, err
	})
	if err == nil && len(evs) > 0 {
		s.Log.Notify()
	}
	return err
}

// appendBatch appends the events of a batch of writes, in their order.
func (l *SQLLog) appendBatch(ctx context.Context, tx *sql.Tx, batch [][]Event) error {
	var all []Event
	for _, evs := range batch {
		all = append(all, evs...)
	}
	return l.Append(ctx, tx, all...)
}

// Do is Write for a transaction that also yields a value: fn returns it
// with the events to append.
func Do[T any](ctx context.Context, s Store, fn func(*sql.Tx) (T, []Event, error)) (T, error) {
	var v T
	err := s.Write(ctx, func(tx *sql.Tx) (evs []Event, err error) {
		v, evs, err = fn(tx)
		return evs, err
	})
	return v, err
}

// DoGrouped is WriteGrouped for a write that also yields a value, as Do
// is Write's.
func DoGrouped[T any](ctx context.Context, s Store, fn func(context.Context, *sql.Tx) (T, []Event, error)) (T, error) {
	var v T
	err := s.WriteGrouped(ctx, func(ctx context.Context, tx *sql.Tx) (evs []Event, err error) {
		v, evs, err = fn(ctx, tx)
		return evs, err
	})
	if err != nil { // v may be a run that was rolled back
		var zero T
		return zero, err
	}
	return v, nil
}

// Events is the log.
func (s Store) Events() Log { return s.Log }

// Close closes the database.
func (s Store) Close() { s.DB.Close() }

// One is the one event of type typ about node nodeID ("" for none) at t,
// with details kv (see Details), for a Write to append.
func One(typ, nodeID string, t time.Time, kv ...string) []Event {
	return []Event{{Type: typ, NodeID: nodeID, Time: db.UTC(t), Details: Details(kv...)}}
}

// Details builds event details from key/value pairs, leaving out empty
// values; nil when nothing is left.
func Details(kv ...string) map[string]string {
	var d map[string]string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if d == nil {
			d = make(map[string]string, len(kv)/2)
		}
		d[kv[i]] = kv[i+1]
	}
	return d
}

// Append appends events, in the order given, inside tx. On PostgreSQL it
// first takes the log's advisory transaction lock, held until tx ends, so
// that cursors are handed out in commit order: make it the transaction's
// last write (see the package documentation), and call Notify once tx has
// committed. Both engines number the rows of one VALUES list in order.
func (l *SQLLog) Append(ctx context.Context, tx db.Execer, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	if err := checkEvents(events); err != nil {
		return fmt.Errorf("append to %s: %w", l.t.events, err)
	}
	if err := l.db.Dialect.Lock(ctx, tx, l.t.events+" append"); err != nil {
		return fmt.Errorf("append to %s: %w", l.t.events, err)
	}
	for chunk := range slices.Chunk(events, appendChunk) {
		q, p := `INSERT INTO `+l.t.events+` (at, node_id, type, details) VALUES `, make(db.Params, 0, 4*len(chunk))
		for i, e := range chunk {
			if i > 0 {
				q += ", "
			}
			q += p.Values(l.db.Dialect.Time(e.Time), e.NodeID, e.Type, db.JSON(e.Details))
		}
		if _, err := tx.ExecContext(ctx, q, p...); err != nil {
			return fmt.Errorf("append to %s: %w", l.t.events, err)
		}
	}
	return nil
}

// Read returns a page of events after q.After. One statement reads the page
// and the bounds, so they come from one snapshot. The LEFT JOIN yields one
// row of NULL event columns when no event matches.
func (l *SQLLog) Read(ctx context.Context, q Query) (Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	p := db.Params{q.After}
	where := `cursor > $1`
	if len(q.NodeIDs) > 0 {
		where += ` AND ` + p.In("node_id", q.NodeIDs)
	}
	if len(q.Types) > 0 {
		where += ` AND ` + p.In("type", q.Types)
	}
	where += ` ORDER BY cursor LIMIT ` + p.Add(limit)
	var (
		page Page
		head int64
	)
	_, err := db.Collect(ctx, l.db, func(row db.Scanner) (struct{}, error) {
		var (
			cursor      sql.NullInt64
			nodeID, typ sql.NullString
			e           Event
		)
		err := row.Scan(&page.DeletedThrough, &head, &cursor, db.ScanTime(&e.Time), &nodeID, &typ, db.ScanJSON(&e.Details))
		if err == nil && cursor.Valid {
			e.Cursor, e.NodeID, e.Type = cursor.Int64, nodeID.String, typ.String
			page.Events = append(page.Events, e)
		}
		return struct{}{}, err
	}, `SELECT w.deleted_through, COALESCE((SELECT MAX(cursor) FROM `+l.t.events+`), 0),
		e.cursor, e.at, e.node_id, e.type, e.details
	FROM `+l.t.watermark+` w LEFT JOIN (
		SELECT cursor, at, node_id, type, details FROM `+l.t.events+` WHERE `+where+`
	) e ON TRUE
	WHERE w.id = 1
	ORDER BY e.cursor`, p...)
	if err != nil {
		return Page{}, fmt.Errorf("read %s: %w", l.t.events, err)
	}
	// Next: the last event's cursor when the page is full, else the
	// newest cursor of the log (see Page.Next).
	if page.Next = max(q.After, head, page.DeletedThrough); len(page.Events) == limit {
		page.Next = page.Events[len(page.Events)-1].Cursor
	}
	return page, nil
}

// Bounds returns the watermark, oldest and newest cursor, in one statement.
func (l *SQLLog) Bounds(ctx context.Context) (Bounds, error) {
	var b Bounds
	err := l.db.QueryRowContext(ctx, `SELECT deleted_through,
		COALESCE((SELECT MIN(cursor) FROM `+l.t.events+`), 0),
		COALESCE((SELECT MAX(cursor) FROM `+l.t.events+`), 0)
	FROM `+l.t.watermark+` WHERE id = 1`).Scan(&b.DeletedThrough, &b.Oldest, &b.Head)
	if err != nil {
		return Bounds{}, fmt.Errorf("bounds of %s: %w", l.t.events, err)
	}
	b.Head = max(b.Head, b.DeletedThrough)
	return b, nil
}

// DeleteBefore deletes the oldest events before the first one at or after
// t, in batches. Cursors still being appended are newer than any a snapshot
// sees (see Cursor order), so none is deleted unseen.
func (l *SQLLog) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	var total int64
	for {
		n, more, err := l.deleteBatch(ctx, t)
		total += n
		if err != nil {
			return total, fmt.Errorf("delete from %s: %w", l.t.events, err)
		}
		if !more {
			return total, nil
		}
	}
}

func (l *SQLLog) deleteBatch(ctx context.Context, t time.Time) (n int64, more bool, err error) {
	err = l.db.Tx(ctx, func(tx *sql.Tx) error {
		var through, count sql.NullInt64
		// The prefix of the oldest deleteBatch events that is older than t.
		err := tx.QueryRowContext(ctx, `SELECT MAX(cursor), COUNT(*) FROM (
			SELECT cursor, at FROM `+l.t.events+` ORDER BY cursor LIMIT $1) b
			WHERE cursor < COALESCE((SELECT MIN(cursor) FROM (
				SELECT cursor, at FROM `+l.t.events+` ORDER BY cursor LIMIT $1) c WHERE at >= $2), $3)`,
			deleteBatch, l.db.Dialect.Time(t), int64(1<<63-1)).Scan(&through, &count)
		if err != nil || !through.Valid {
			return err
		}
		if n, err = db.RowsAffected(tx.ExecContext(ctx, `DELETE FROM `+l.t.events+` WHERE cursor <= $1`, through.Int64)); err != nil {
			return err
		}
		more = count.Int64 == deleteBatch
		_, err = tx.ExecContext(ctx, `UPDATE `+l.t.watermark+` SET deleted_through = `+
			l.db.Dialect.Greatest("deleted_through", "$1")+` WHERE id = 1`, through.Int64)
		return err
	})
	if err != nil {
		return 0, false, err
	}
	return n, more, nil
}
