package hbstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/db"
)

// SQLiteStore is the Store on an embedded SQLite database, for `berthd dev`
// and single-machine deployments.
type SQLiteStore struct {
	db *sql.DB
}

var _ Store = (*SQLiteStore)(nil)

// NewSQLite opens the SQLite database at path, creating it and its directory
// if needed, and brings its schema up to date.
func NewSQLite(ctx context.Context, path string) (*SQLiteStore, error) {
	d, err := db.OpenSQLiteSchema(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("heartbeat store: %w", err)
	}
	return &SQLiteStore{db: d}, nil
}

// Close closes the database.
func (s *SQLiteStore) Close() { s.db.Close() }

// Rows per multi-row statement: SQLite binds at most 32766 parameters.
const (
	sqliteLivenessChunk = 500
	sqliteEventChunk    = 500
)

const livenessColumns = `node_id, last_seen, sequence, boot_id, status, uptime_us, state, state_since`

const eventColumns = `at, node_id, type, state, prev_state, boot_id, prev_boot_id, status, prev_status, kind, message`

// upsertSet is the conflict clause of a flush, shared by both dialects: the
// newest observation wins, and a node that was not healthy becomes healthy
// now, with its previous state kept in prior_state for RETURNING.
const upsertSet = ` ON CONFLICT (node_id) DO UPDATE SET
	last_seen = excluded.last_seen,
	sequence = excluded.sequence,
	boot_id = excluded.boot_id,
	status = excluded.status,
	uptime_us = excluded.uptime_us,
	prior_state = hb_liveness.state,
	state = 'healthy',
	state_since = CASE WHEN hb_liveness.state = 'healthy' THEN hb_liveness.state_since ELSE excluded.last_seen END
	WHERE excluded.last_seen >= hb_liveness.last_seen
	RETURNING node_id, last_seen, boot_id, status, prior_state`

type scanner interface{ Scan(dest ...any) error }

func scanSQLiteLiveness(row scanner) (Liveness, error) {
	var (
		l                            Liveness
		lastSeen, uptime, stateSince int64
	)
	if err := row.Scan(&l.NodeID, &lastSeen, &l.Sequence, &l.BootID, &l.Status, &uptime, &l.State, &stateSince); err != nil {
		return Liveness{}, err
	}
	l.LastSeen, l.Uptime, l.StateSince = fromMicros(lastSeen), fromDurationMicros(uptime), fromMicros(stateSince)
	return l, nil
}

// Flush writes the observations and appends events in one transaction.
func (s *SQLiteStore) Flush(ctx context.Context, obs []Observation, events []Event) (FlushResult, error) {
	obs = latestPerNode(obs)
	if len(obs) == 0 && len(events) == 0 {
		return FlushResult{}, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return FlushResult{}, fmt.Errorf("flush: %w", err)
	}
	defer tx.Rollback()
	var res FlushResult
	var healthy []Event
	for chunk := range slices.Chunk(obs, sqliteLivenessChunk) {
		q := `INSERT INTO hb_liveness (` + livenessColumns + `) VALUES ` +
			repeatJoin("(?, ?, ?, ?, ?, ?, 'healthy', ?)", len(chunk)) + upsertSet
		args := make([]any, 0, 7*len(chunk))
		for _, o := range chunk {
			args = append(args, o.NodeID, micros(o.LastSeen), o.Sequence, o.BootID, string(o.Status),
				durationMicros(o.Uptime), micros(o.LastSeen))
		}
		evs, n, err := sqliteUpsert(ctx, tx, q, args)
		if err != nil {
			return FlushResult{}, fmt.Errorf("flush: %w", err)
		}
		res.Rows += n
		healthy = append(healthy, evs...)
	}
	// RETURNING order is unspecified; events go in node order.
	sortEventsByNode(healthy)
	all := append(healthy, events...)
	if err := sqliteAppend(ctx, tx, all); err != nil {
		return FlushResult{}, fmt.Errorf("flush: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return FlushResult{}, fmt.Errorf("flush: %w", err)
	}
	res.Events = len(all)
	return res, nil
}

// sqliteUpsert runs one chunk of a flush's upsert and returns the healthy
// events of the nodes it found new or not healthy.
func sqliteUpsert(ctx context.Context, tx *sql.Tx, q string, args []any) ([]Event, int, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var (
		evs []Event
		n   int
	)
	for rows.Next() {
		var (
			nodeID, bootID, status string
			lastSeen               int64
			prior                  *string
		)
		if err := rows.Scan(&nodeID, &lastSeen, &bootID, &status, &prior); err != nil {
			return nil, 0, err
		}
		n++
		if prior == nil || State(*prior) != StateHealthy {
			evs = append(evs, healthyEvent(nodeID, fromMicros(lastSeen), bootID, Status(status), prior))
		}
	}
	return evs, n, rows.Err()
}

// sqliteAppend inserts events in order; SQLite assigns rowids in the order
// of the VALUES list.
func sqliteAppend(ctx context.Context, tx *sql.Tx, events []Event) error {
	for chunk := range slices.Chunk(events, sqliteEventChunk) {
		q := `INSERT INTO hb_events (` + eventColumns + `) VALUES ` + repeatJoin("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", len(chunk))
		args := make([]any, 0, 11*len(chunk))
		for _, e := range chunk {
			args = append(args, micros(e.Time), e.NodeID, string(e.Type), string(e.State), string(e.PrevState),
				e.BootID, e.PrevBootID, string(e.Status), string(e.PrevStatus), e.Kind, e.Message)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("append events: %w", err)
		}
	}
	return nil
}

// GetLiveness returns one node's liveness.
func (s *SQLiteStore) GetLiveness(ctx context.Context, nodeID string) (Liveness, error) {
	l, err := scanSQLiteLiveness(s.db.QueryRowContext(ctx,
		`SELECT `+livenessColumns+` FROM hb_liveness WHERE node_id = ?`, nodeID))
	if errors.Is(err, sql.ErrNoRows) {
		return Liveness{}, fmt.Errorf("get liveness %s: %w", nodeID, ErrNotFound)
	}
	if err != nil {
		return Liveness{}, fmt.Errorf("get liveness %s: %w", nodeID, err)
	}
	return l, nil
}

// ListLiveness returns matching rows in ascending node ID.
func (s *SQLiteStore) ListLiveness(ctx context.Context, f LivenessFilter) ([]Liveness, error) {
	q := `SELECT ` + livenessColumns + ` FROM hb_liveness WHERE node_id > ?`
	args := []any{f.AfterID}
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, string(f.State))
	}
	if len(f.NodeIDs) > 0 {
		q += ` AND node_id IN (` + repeatJoin("?", len(f.NodeIDs)) + `)`
		for _, id := range f.NodeIDs {
			args = append(args, id)
		}
	}
	q += ` ORDER BY node_id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list liveness: %w", err)
	}
	defer rows.Close()
	var out []Liveness
	for rows.Next() {
		l, err := scanSQLiteLiveness(rows)
		if err != nil {
			return nil, fmt.Errorf("list liveness: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list liveness: %w", err)
	}
	return out, nil
}

// acquireLease is shared by both dialects: the lease is taken when free,
// expired or already ours. acquired_at survives only an unbroken renewal:
// a holder whose lease lapsed starts over, as a new decider would, because
// the store may have missed flushes from every replica while it was away.
const acquireLeaseSet = ` ON CONFLICT (name) DO UPDATE SET
	acquired_at = CASE WHEN hb_lease.holder = excluded.holder AND hb_lease.expires_at > excluded.acquired_at
		THEN hb_lease.acquired_at ELSE excluded.acquired_at END,
	holder = excluded.holder,
	expires_at = excluded.expires_at
	WHERE hb_lease.holder = excluded.holder OR hb_lease.expires_at <= excluded.acquired_at
	RETURNING acquired_at`

// AcquireLease takes or renews the decider lease.
func (s *SQLiteStore) AcquireLease(ctx context.Context, holder string, now, until time.Time) (bool, time.Time, error) {
	var since int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO hb_lease (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)`+acquireLeaseSet,
		leaseName, holder, micros(now), micros(until)).Scan(&since)
	if errors.Is(err, sql.ErrNoRows) {
		return false, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, fmt.Errorf("acquire lease: %w", err)
	}
	return true, fromMicros(since), nil
}

// ReleaseLease gives the lease up if holder holds it.
func (s *SQLiteStore) ReleaseLease(ctx context.Context, holder string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM hb_lease WHERE name = ? AND holder = ?`, leaseName, holder); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// MarkSilent renews the lease and moves silent nodes on, in one transaction.
func (s *SQLiteStore) MarkSilent(ctx context.Context, sl Silence) (SilenceResult, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return SilenceResult{}, fmt.Errorf("mark silent: %w", err)
	}
	defer tx.Rollback()
	r, err := tx.ExecContext(ctx, `UPDATE hb_lease SET expires_at = ? WHERE name = ? AND holder = ?`,
		micros(sl.LeaseUntil), leaseName, sl.Holder)
	if err != nil {
		return SilenceResult{}, fmt.Errorf("mark silent: renew lease: %w", err)
	}
	if n, err := r.RowsAffected(); err != nil || n == 0 {
		return SilenceResult{}, fmt.Errorf("mark silent: %w", ErrLeaseLost)
	}
	var res SilenceResult
	var evs []Event
	if !sl.UnreachableBefore.IsZero() {
		e, err := sqliteMark(ctx, tx, sl.Now, StateUnreachable, []State{StateHealthy, StateSuspect}, sl.UnreachableBefore)
		if err != nil {
			return SilenceResult{}, fmt.Errorf("mark silent: %w", err)
		}
		res.Unreachable = len(e)
		evs = append(evs, e...)
	}
	if !sl.SuspectBefore.IsZero() {
		e, err := sqliteMark(ctx, tx, sl.Now, StateSuspect, []State{StateHealthy}, sl.SuspectBefore)
		if err != nil {
			return SilenceResult{}, fmt.Errorf("mark silent: %w", err)
		}
		res.Suspect = len(e)
		evs = append(evs, e...)
	}
	if err := sqliteAppend(ctx, tx, evs); err != nil {
		return SilenceResult{}, fmt.Errorf("mark silent: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return SilenceResult{}, fmt.Errorf("mark silent: %w", err)
	}
	return res, nil
}

// sqliteMark moves nodes in one of the from states, last seen before
// cutoff, to state to, and returns their events in node order.
func sqliteMark(ctx context.Context, tx *sql.Tx, now time.Time, to State, from []State, cutoff time.Time) ([]Event, error) {
	args := []any{string(to), micros(now), micros(cutoff)}
	for _, f := range from {
		args = append(args, string(f))
	}
	rows, err := tx.QueryContext(ctx, `UPDATE hb_liveness SET prior_state = state, state = ?, state_since = ?
		WHERE last_seen < ? AND state IN (`+repeatJoin("?", len(from))+`)
		RETURNING node_id, prior_state, boot_id, status`, args...)
	if err != nil {
		return nil, fmt.Errorf("mark %s: %w", to, err)
	}
	defer rows.Close()
	var evs []Event
	for rows.Next() {
		var nodeID, prior, bootID, status string
		if err := rows.Scan(&nodeID, &prior, &bootID, &status); err != nil {
			return nil, fmt.Errorf("mark %s: %w", to, err)
		}
		evs = append(evs, silentEvent(nodeID, utc(now), to, State(prior), bootID, Status(status)))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mark %s: %w", to, err)
	}
	sortEventsByNode(evs)
	return evs, nil
}

// readEventsQuery reads one page and, from the same snapshot (one
// statement), the log's bounds. The LEFT JOIN yields one row of NULL event
// columns when no event matches.
func readEventsQuery(where, limit string) string {
	return `SELECT m.deleted_through, COALESCE((SELECT MAX(id) FROM hb_events), 0),
		e.id, e.at, e.node_id, e.type, e.state, e.prev_state, e.boot_id, e.prev_boot_id, e.status, e.prev_status, e.kind, e.message
	FROM hb_event_log m LEFT JOIN (
		SELECT id, ` + eventColumns + ` FROM hb_events WHERE ` + where + ` ORDER BY id LIMIT ` + limit + `
	) e ON true
	WHERE m.id = 1
	ORDER BY e.id`
}

// ReadEvents returns a page of events after q.After.
func (s *SQLiteStore) ReadEvents(ctx context.Context, q EventQuery) (EventPage, error) {
	limit := eventLimit(q)
	where := `id > ?`
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
			args = append(args, string(t))
		}
	}
	rows, err := s.db.QueryContext(ctx, readEventsQuery(where, "?"), append(args, limit)...)
	if err != nil {
		return EventPage{}, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var (
		page EventPage
		head int64
	)
	for rows.Next() {
		var (
			id, at                                                    sql.NullInt64
			nodeID, typ, state, prevState, bootID, prevBootID, status sql.NullString
			prevStatus, kind, message                                 sql.NullString
		)
		if err := rows.Scan(&page.DeletedThrough, &head, &id, &at, &nodeID, &typ, &state, &prevState,
			&bootID, &prevBootID, &status, &prevStatus, &kind, &message); err != nil {
			return EventPage{}, fmt.Errorf("read events: %w", err)
		}
		if !id.Valid {
			continue
		}
		page.Events = append(page.Events, Event{
			Cursor: id.Int64, Time: fromMicros(at.Int64), NodeID: nodeID.String, Type: EventType(typ.String),
			State: State(state.String), PrevState: State(prevState.String),
			BootID: bootID.String, PrevBootID: prevBootID.String,
			Status: Status(status.String), PrevStatus: Status(prevStatus.String),
			Kind: kind.String, Message: message.String,
		})
	}
	if err := rows.Err(); err != nil {
		return EventPage{}, fmt.Errorf("read events: %w", err)
	}
	page.Next = pageNext(q, limit, page.Events, max(head, page.DeletedThrough))
	return page, nil
}

const eventBoundsQuery = `SELECT deleted_through, COALESCE((SELECT MAX(id) FROM hb_events), 0) FROM hb_event_log WHERE id = 1`

// EventBounds returns the retention watermark and the newest cursor.
func (s *SQLiteStore) EventBounds(ctx context.Context) (int64, int64, error) {
	var deleted, head int64
	if err := s.db.QueryRowContext(ctx, eventBoundsQuery).Scan(&deleted, &head); err != nil {
		return 0, 0, fmt.Errorf("event bounds: %w", err)
	}
	return deleted, max(deleted, head), nil
}

// DeleteEventsBefore deletes the oldest events, up to the first one at or
// after t.
func (s *SQLiteStore) DeleteEventsBefore(ctx context.Context, t time.Time) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	defer tx.Rollback()
	var through sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(id) FROM hb_events
		WHERE id < COALESCE((SELECT MIN(id) FROM hb_events WHERE at >= ?), 9223372036854775807)`, micros(t)).Scan(&through); err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	if !through.Valid {
		return 0, nil
	}
	r, err := tx.ExecContext(ctx, `DELETE FROM hb_events WHERE id <= ?`, through.Int64)
	if err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE hb_event_log SET deleted_through = MAX(deleted_through, ?) WHERE id = 1`, through.Int64); err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	return n, nil
}

const settingsColumns = `interval_us, grace_us, prev_interval_us, prev_grace_us, changed_at, stretch`

// GetSettings returns the stored settings, zero if never set.
func (s *SQLiteStore) GetSettings(ctx context.Context) (Settings, error) {
	var (
		iv, gr, piv, pgr, changed int64
		stretch                   float64
	)
	err := s.db.QueryRowContext(ctx, `SELECT `+settingsColumns+` FROM hb_settings WHERE id = 1`).Scan(&iv, &gr, &piv, &pgr, &changed, &stretch)
	if errors.Is(err, sql.ErrNoRows) {
		return Settings{}, nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("get settings: %w", err)
	}
	return Settings{
		Interval: fromDurationMicros(iv), Grace: fromDurationMicros(gr),
		Previous:  Timings{Interval: fromDurationMicros(piv), Grace: fromDurationMicros(pgr)},
		ChangedAt: fromMicros(changed),
		Stretch:   stretch,
	}, nil
}

// PutSettings stores the settings but the stretch, which it keeps.
func (s *SQLiteStore) PutSettings(ctx context.Context, st Settings) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO hb_settings (id, `+settingsColumns+`) VALUES (1, ?, ?, ?, ?, ?, 1)
		ON CONFLICT (id) DO UPDATE SET interval_us = excluded.interval_us, grace_us = excluded.grace_us,
			prev_interval_us = excluded.prev_interval_us, prev_grace_us = excluded.prev_grace_us, changed_at = excluded.changed_at`,
		durationMicros(st.Interval), durationMicros(st.Grace), durationMicros(st.Previous.Interval),
		durationMicros(st.Previous.Grace), micros(st.ChangedAt))
	if err != nil {
		return fmt.Errorf("put settings: %w", err)
	}
	return nil
}

// repeatJoin repeats s n times, comma separated.
func repeatJoin(s string, n int) string {
	return strings.TrimSuffix(strings.Repeat(s+", ", n), ", ")
}

// PutStretch stores the stretch with the previous timings and keeps the
// base timings.
func (s *SQLiteStore) PutStretch(ctx context.Context, st Settings) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO hb_settings (id, `+settingsColumns+`) VALUES (1, 0, 0, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET stretch = excluded.stretch,
			prev_interval_us = excluded.prev_interval_us, prev_grace_us = excluded.prev_grace_us, changed_at = excluded.changed_at`,
		durationMicros(st.Previous.Interval), durationMicros(st.Previous.Grace), micros(st.ChangedAt), st.Stretch)
	if err != nil {
		return fmt.Errorf("put stretch: %w", err)
	}
	return nil
}

// CountLive returns the number of nodes healthy or suspect.
func (s *SQLiteStore) CountLive(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM hb_liveness WHERE state IN (?, ?)`, string(StateHealthy), string(StateSuspect)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count live nodes: %w", err)
	}
	return n, nil
}
