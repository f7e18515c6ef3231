package hbstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/berth-dev/berth/internal/db"
)

// PostgresStore is the Store on PostgreSQL, shared by every replica of the
// heartbeat service.
type PostgresStore struct {
	pool *pgxpool.Pool
}

var _ Store = (*PostgresStore)(nil)

// NewPostgres connects to the database named by dsn and brings the heartbeat
// tables up to date.
func NewPostgres(ctx context.Context, dsn string) (*PostgresStore, error) {
	pool, err := db.OpenPostgresSchema(ctx, dsn, schema)
	if err != nil {
		return nil, fmt.Errorf("heartbeat store: %w", err)
	}
	return &PostgresStore{pool: pool}, nil
}

// Close closes the connection pool.
func (s *PostgresStore) Close() { s.pool.Close() }

func scanPostgresLiveness(row pgx.Row) (Liveness, error) {
	var (
		l      Liveness
		uptime int64
		status string
		state  string
	)
	if err := row.Scan(&l.NodeID, &l.LastSeen, &l.Sequence, &l.BootID, &status, &uptime, &state, &l.StateSince); err != nil {
		return Liveness{}, err
	}
	l.Status, l.State, l.Uptime = Status(status), State(state), fromDurationMicros(uptime)
	l.LastSeen, l.StateSince = l.LastSeen.UTC(), l.StateSince.UTC()
	return l, nil
}

// lockEvents takes the lock that serialises event appends until the
// transaction ends; see the package documentation.
func lockEvents(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, eventsLockKey); err != nil {
		return fmt.Errorf("lock event log: %w", err)
	}
	return nil
}

// postgresFlush upserts every observation and appends the healthy events it
// causes, in one statement. The input arrives as arrays, one per column.
const postgresFlush = `WITH up AS (
	INSERT INTO hb_liveness (` + livenessColumns + `)
	SELECT node_id, last_seen, sequence, boot_id, status, uptime_us, 'healthy', last_seen
	FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::text[], $5::text[], $6::bigint[])
		AS i(node_id, last_seen, sequence, boot_id, status, uptime_us)
	ORDER BY node_id` + upsertSet + `
), ev AS (
	INSERT INTO hb_events (at, node_id, type, state, prev_state, boot_id, status)
	SELECT last_seen, node_id, 'healthy', 'healthy', COALESCE(prior_state, ''), boot_id, status
	FROM up WHERE prior_state IS DISTINCT FROM 'healthy'
	ORDER BY node_id
	RETURNING 1
)
SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM ev)`

// postgresAppend appends events in the order given: identity values follow
// the ORDER BY of an INSERT … SELECT.
const postgresAppend = `INSERT INTO hb_events (` + eventColumns + `)
SELECT at, node_id, type, state, prev_state, boot_id, prev_boot_id, status, prev_status, kind, message
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
	$8::text[], $9::text[], $10::text[], $11::text[])
	WITH ORDINALITY AS e(at, node_id, type, state, prev_state, boot_id, prev_boot_id, status, prev_status, kind, message, ord)
ORDER BY ord`

// Flush writes the observations and appends events in one transaction.
func (s *PostgresStore) Flush(ctx context.Context, obs []Observation, events []Event) (FlushResult, error) {
	obs = latestPerNode(obs)
	if len(obs) == 0 && len(events) == 0 {
		return FlushResult{}, nil
	}
	var res FlushResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockEvents(ctx, tx); err != nil {
			return err
		}
		if len(obs) > 0 {
			var (
				ids, boots, statuses []string
				seen                 []time.Time
				seqs, uptimes        []int64
			)
			for _, o := range obs {
				ids, seen, seqs = append(ids, o.NodeID), append(seen, o.LastSeen), append(seqs, o.Sequence)
				boots, statuses = append(boots, o.BootID), append(statuses, string(o.Status))
				uptimes = append(uptimes, durationMicros(o.Uptime))
			}
			var rows, evs int64
			if err := tx.QueryRow(ctx, postgresFlush, ids, seen, seqs, boots, statuses, uptimes).Scan(&rows, &evs); err != nil {
				return fmt.Errorf("upsert liveness: %w", err)
			}
			res.Rows, res.Events = int(rows), int(evs)
		}
		if err := postgresAppendEvents(ctx, tx, events); err != nil {
			return err
		}
		res.Events += len(events)
		return nil
	})
	if err != nil {
		return FlushResult{}, fmt.Errorf("flush: %w", err)
	}
	return res, nil
}

// postgresAppendEvents appends events in order; the caller holds the lock.
func postgresAppendEvents(ctx context.Context, tx pgx.Tx, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	var (
		at                                                 []time.Time
		nodes, types, states, prevStates, boots, prevBoots []string
		statuses, prevStatuses, kinds, messages            []string
	)
	for _, e := range events {
		at, nodes, types = append(at, utc(e.Time)), append(nodes, e.NodeID), append(types, string(e.Type))
		states, prevStates = append(states, string(e.State)), append(prevStates, string(e.PrevState))
		boots, prevBoots = append(boots, e.BootID), append(prevBoots, e.PrevBootID)
		statuses, prevStatuses = append(statuses, string(e.Status)), append(prevStatuses, string(e.PrevStatus))
		kinds, messages = append(kinds, e.Kind), append(messages, e.Message)
	}
	if _, err := tx.Exec(ctx, postgresAppend, at, nodes, types, states, prevStates, boots, prevBoots,
		statuses, prevStatuses, kinds, messages); err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	return nil
}

// GetLiveness returns one node's liveness.
func (s *PostgresStore) GetLiveness(ctx context.Context, nodeID string) (Liveness, error) {
	l, err := scanPostgresLiveness(s.pool.QueryRow(ctx,
		`SELECT `+livenessColumns+` FROM hb_liveness WHERE node_id = $1`, nodeID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Liveness{}, fmt.Errorf("get liveness %s: %w", nodeID, ErrNotFound)
	}
	if err != nil {
		return Liveness{}, fmt.Errorf("get liveness %s: %w", nodeID, err)
	}
	return l, nil
}

// ListLiveness returns matching rows in ascending node ID.
func (s *PostgresStore) ListLiveness(ctx context.Context, f LivenessFilter) ([]Liveness, error) {
	q := `SELECT ` + livenessColumns + ` FROM hb_liveness WHERE node_id > $1`
	args := []any{f.AfterID}
	if f.State != "" {
		args = append(args, string(f.State))
		q += ` AND state = $` + strconv.Itoa(len(args))
	}
	if len(f.NodeIDs) > 0 {
		args = append(args, f.NodeIDs)
		q += ` AND node_id = ANY($` + strconv.Itoa(len(args)) + `)`
	}
	q += ` ORDER BY node_id`
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += ` LIMIT $` + strconv.Itoa(len(args))
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list liveness: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Liveness, error) { return scanPostgresLiveness(r) })
	if err != nil {
		return nil, fmt.Errorf("list liveness: %w", err)
	}
	return nilIfEmpty(out), nil
}

// AcquireLease takes or renews the decider lease.
func (s *PostgresStore) AcquireLease(ctx context.Context, holder string, now, until time.Time) (bool, time.Time, error) {
	var since time.Time
	err := s.pool.QueryRow(ctx, `INSERT INTO hb_lease (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4)`+acquireLeaseSet,
		leaseName, holder, utc(now), utc(until)).Scan(&since)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, fmt.Errorf("acquire lease: %w", err)
	}
	return true, since.UTC(), nil
}

// ReleaseLease gives the lease up if holder holds it.
func (s *PostgresStore) ReleaseLease(ctx context.Context, holder string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM hb_lease WHERE name = $1 AND holder = $2`, leaseName, holder); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// postgresMark moves nodes in one of the from states ($4), last seen before
// $3, to state $1 at $2, and appends one event each, in node order.
const postgresMark = `WITH c AS (
	UPDATE hb_liveness SET prior_state = state, state = $1, state_since = $2
	WHERE last_seen < $3 AND state = ANY($4)
	RETURNING node_id, prior_state, boot_id, status
), ev AS (
	INSERT INTO hb_events (at, node_id, type, state, prev_state, boot_id, status)
	SELECT $2, node_id, $5, $1, prior_state, boot_id, status FROM c ORDER BY node_id
	RETURNING 1
)
SELECT count(*) FROM ev`

// MarkSilent renews the lease and moves silent nodes on, in one transaction.
func (s *PostgresStore) MarkSilent(ctx context.Context, sl Silence) (SilenceResult, error) {
	var res SilenceResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The lock comes first, as in Flush, so the two never wait for each
		// other's row locks in opposite orders.
		if err := lockEvents(ctx, tx); err != nil {
			return err
		}
		// Renewing in the same transaction fences off a holder that lost the
		// lease: a rival's takeover waits on this row until we commit, and
		// then finds the lease renewed.
		tag, err := tx.Exec(ctx, `UPDATE hb_lease SET expires_at = $1 WHERE name = $2 AND holder = $3`,
			utc(sl.LeaseUntil), leaseName, sl.Holder)
		if err != nil {
			return fmt.Errorf("renew lease: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrLeaseLost
		}
		now := utc(sl.Now)
		if !sl.UnreachableBefore.IsZero() {
			if err := tx.QueryRow(ctx, postgresMark, string(StateUnreachable), now, utc(sl.UnreachableBefore),
				[]string{string(StateHealthy), string(StateSuspect)}, string(EventUnreachable)).Scan(&res.Unreachable); err != nil {
				return fmt.Errorf("mark unreachable: %w", err)
			}
		}
		if !sl.SuspectBefore.IsZero() {
			if err := tx.QueryRow(ctx, postgresMark, string(StateSuspect), now, utc(sl.SuspectBefore),
				[]string{string(StateHealthy)}, string(EventSuspect)).Scan(&res.Suspect); err != nil {
				return fmt.Errorf("mark suspect: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return SilenceResult{}, fmt.Errorf("mark silent: %w", err)
	}
	return res, nil
}

// ReadEvents returns a page of events after q.After.
func (s *PostgresStore) ReadEvents(ctx context.Context, q EventQuery) (EventPage, error) {
	limit := eventLimit(q)
	where := `id > $1`
	args := []any{q.After}
	if len(q.NodeIDs) > 0 {
		args = append(args, q.NodeIDs)
		where += ` AND node_id = ANY($` + strconv.Itoa(len(args)) + `)`
	}
	if len(q.Types) > 0 {
		types := make([]string, len(q.Types))
		for i, t := range q.Types {
			types[i] = string(t)
		}
		args = append(args, types)
		where += ` AND type = ANY($` + strconv.Itoa(len(args)) + `)`
	}
	args = append(args, limit)
	rows, err := s.pool.Query(ctx, readEventsQuery(where, "$"+strconv.Itoa(len(args))), args...)
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
			id                                                        *int64
			at                                                        *time.Time
			nodeID, typ, state, prevState, bootID, prevBootID, status *string
			prevStatus, kind, message                                 *string
		)
		if err := rows.Scan(&page.DeletedThrough, &head, &id, &at, &nodeID, &typ, &state, &prevState,
			&bootID, &prevBootID, &status, &prevStatus, &kind, &message); err != nil {
			return EventPage{}, fmt.Errorf("read events: %w", err)
		}
		if id == nil {
			continue
		}
		page.Events = append(page.Events, Event{
			Cursor: *id, Time: at.UTC(), NodeID: *nodeID, Type: EventType(*typ),
			State: State(*state), PrevState: State(*prevState), BootID: *bootID, PrevBootID: *prevBootID,
			Status: Status(*status), PrevStatus: Status(*prevStatus), Kind: *kind, Message: *message,
		})
	}
	if err := rows.Err(); err != nil {
		return EventPage{}, fmt.Errorf("read events: %w", err)
	}
	page.Next = pageNext(q, limit, page.Events, max(head, page.DeletedThrough))
	return page, nil
}

// EventBounds returns the retention watermark and the newest cursor.
func (s *PostgresStore) EventBounds(ctx context.Context) (int64, int64, error) {
	var deleted, head int64
	if err := s.pool.QueryRow(ctx, eventBoundsQuery).Scan(&deleted, &head); err != nil {
		return 0, 0, fmt.Errorf("event bounds: %w", err)
	}
	return deleted, max(deleted, head), nil
}

// DeleteEventsBefore deletes the oldest events, up to the first one at or
// after t. Cursors still being appended are all newer than any this
// snapshot sees, so they are never deleted unseen.
func (s *PostgresStore) DeleteEventsBefore(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var through *int64
		if err := tx.QueryRow(ctx, `SELECT MAX(id) FROM hb_events
			WHERE id < COALESCE((SELECT MIN(id) FROM hb_events WHERE at >= $1), 9223372036854775807)`, utc(t)).Scan(&through); err != nil {
			return err
		}
		if through == nil {
			return nil
		}
		tag, err := tx.Exec(ctx, `DELETE FROM hb_events WHERE id <= $1`, *through)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `UPDATE hb_event_log SET deleted_through = GREATEST(deleted_through, $1) WHERE id = 1`, *through)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	return n, nil
}

// GetSettings returns the stored settings, zero if never set.
func (s *PostgresStore) GetSettings(ctx context.Context) (Settings, error) {
	var (
		iv, gr, piv, pgr int64
		changed          time.Time
		stretch          float64
	)
	err := s.pool.QueryRow(ctx, `SELECT `+settingsColumns+` FROM hb_settings WHERE id = 1`).Scan(&iv, &gr, &piv, &pgr, &changed, &stretch)
	if errors.Is(err, pgx.ErrNoRows) {
		return Settings{}, nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("get settings: %w", err)
	}
	return Settings{
		Interval: fromDurationMicros(iv), Grace: fromDurationMicros(gr),
		Previous:  Timings{Interval: fromDurationMicros(piv), Grace: fromDurationMicros(pgr)},
		ChangedAt: changed.UTC(),
		Stretch:   stretch,
	}, nil
}

// PutSettings stores the settings but the stretch, which it keeps.
func (s *PostgresStore) PutSettings(ctx context.Context, st Settings) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO hb_settings (id, `+settingsColumns+`) VALUES (1, $1, $2, $3, $4, $5, 1)
		ON CONFLICT (id) DO UPDATE SET interval_us = excluded.interval_us, grace_us = excluded.grace_us,
			prev_interval_us = excluded.prev_interval_us, prev_grace_us = excluded.prev_grace_us, changed_at = excluded.changed_at`,
		durationMicros(st.Interval), durationMicros(st.Grace), durationMicros(st.Previous.Interval),
		durationMicros(st.Previous.Grace), utc(st.ChangedAt))
	if err != nil {
		return fmt.Errorf("put settings: %w", err)
	}
	return nil
}

// PutStretch stores the stretch with the previous timings and keeps the
// base timings.
func (s *PostgresStore) PutStretch(ctx context.Context, st Settings) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO hb_settings (id, `+settingsColumns+`) VALUES (1, 0, 0, $1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET stretch = excluded.stretch,
			prev_interval_us = excluded.prev_interval_us, prev_grace_us = excluded.prev_grace_us, changed_at = excluded.changed_at`,
		durationMicros(st.Previous.Interval), durationMicros(st.Previous.Grace), utc(st.ChangedAt), st.Stretch)
	if err != nil {
		return fmt.Errorf("put stretch: %w", err)
	}
	return nil
}

// CountLive returns the number of nodes healthy or suspect.
func (s *PostgresStore) CountLive(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM hb_liveness WHERE state IN ($1, $2)`, string(StateHealthy), string(StateSuspect)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count live nodes: %w", err)
	}
	return n, nil
}
