package heartbeatstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// SQLStore is the Store on SQLite (`berthd dev`, one machine) or on
// PostgreSQL, shared by every replica of the heartbeat service.
type SQLStore struct {
	db     *db.DB
	events *eventlog.SQLLog
}

var _ Store = (*SQLStore)(nil)

// Open opens the database at where (a path for SQLite, a DSN for
// PostgreSQL) and brings the heartbeat tables up to date.
func Open(ctx context.Context, d db.Dialect, where string) (*SQLStore, error) {
	h, err := db.OpenSchema(ctx, d, where, schema)
	if err != nil {
		return nil, fmt.Errorf("heartbeat store: %w", err)
	}
	return &SQLStore{db: h, events: eventlog.NewLog(h, events)}, nil
}

// NewSQLite opens the store in the SQLite database at path, creating it.
func NewSQLite(ctx context.Context, path string) (*SQLStore, error) {
	return Open(ctx, db.SQLite, path)
}

// NewPostgres opens the store in the PostgreSQL database named by dsn.
func NewPostgres(ctx context.Context, dsn string) (*SQLStore, error) {
	return Open(ctx, db.Postgres, dsn)
}

// Close closes the database.
func (s *SQLStore) Close() { s.db.Close() }

// Events is the health event log.
func (s *SQLStore) Events() eventlog.Log { return s.events }

const livenessColumns = `node_id, last_seen, sequence, boot_id, status, uptime_us, state, state_since`

// livenessRead is what scanLiveness reads: livenessColumns and what the
// node reported.
const livenessRead = livenessColumns + `, reported, bundle_applied`

// flushChunk is how many rows one upsert carries (six parameters each).
const flushChunk = 2000

// upsertSet is the conflict clause of a flush: the newest observation wins
// (the higher sequence on a tie), and a node that was not healthy becomes
// healthy now, with its previous state kept in prior_state for RETURNING.
const upsertSet = ` ON CONFLICT (node_id) DO UPDATE SET
	last_seen = excluded.last_seen,
	sequence = excluded.sequence,
	boot_id = excluded.boot_id,
	status = excluded.status,
	uptime_us = excluded.uptime_us,
	prior_state = hb_liveness.state,
	state = 'healthy',
	state_since = CASE WHEN hb_liveness.state = 'healthy' THEN hb_liveness.state_since ELSE excluded.last_seen END
	WHERE excluded.last_seen > hb_liveness.last_seen
		OR (excluded.last_seen = hb_liveness.last_seen AND excluded.sequence >= hb_liveness.sequence)
	RETURNING node_id, last_seen, boot_id, status, prior_state`

func scanLiveness(row interface{ Scan(...any) error }) (Liveness, error) {
	var (
		l      Liveness
		uptime int64
	)
	var reported, applied string
	err := row.Scan(&l.NodeID, db.ScanTime(&l.LastSeen), &l.Sequence, &l.BootID, &l.Status, &uptime, &l.State, db.ScanTime(&l.StateSince),
		&reported, &applied)
	l.Uptime = fromDurationMicros(uptime)
	if err == nil && reported != "" {
		l.Reported = &Reported{}
		if err = json.Unmarshal([]byte(reported), l.Reported); err != nil {
			err = fmt.Errorf("node %s: stored reported status: %w", l.NodeID, err)
		}
	}
	if err == nil && applied != "" {
		l.BundleApplied = &BundleApplied{}
		if err = json.Unmarshal([]byte(applied), l.BundleApplied); err != nil {
			err = fmt.Errorf("node %s: stored applied bundle: %w", l.NodeID, err)
		}
	}
	return l, err
}

// obsValues is one VALUES row of an observation, from parameter n on.
func (s *SQLStore) obsValues(n int, o Observation) (string, []any) {
	p := func(i int) string { return fmt.Sprintf("$%d", n+i) }
	return "(" + p(0) + ", " + p(1) + ", " + p(2) + ", " + p(3) + ", " + p(4) + ", " + p(5) + ", 'healthy', " + p(1) + ")",
		[]any{o.NodeID, s.db.Dialect.Time(o.LastSeen), o.Sequence, o.BootID, string(o.Status), durationMicros(o.Uptime)}
}

// Flush writes the observations and appends events in one transaction.
func (s *SQLStore) Flush(ctx context.Context, obs []Observation, given []Event) (FlushResult, error) {
	obs = latestPerNode(obs)
	if len(obs) == 0 && len(given) == 0 {
		return FlushResult{}, nil
	}
	var res FlushResult
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res = FlushResult{}
		var healthy []Event
		for chunk := range slices.Chunk(obs, flushChunk) {
			q := `INSERT INTO hb_liveness (` + livenessColumns + `) VALUES `
			var args []any
			for i, o := range chunk {
				v, a := s.obsValues(len(args)+1, o)
				if i > 0 {
					q += ", "
				}
				q, args = q+v, append(args, a...)
			}
			evs, n, err := upsert(ctx, tx, q+upsertSet, args)
			if err != nil {
				return fmt.Errorf("upsert liveness: %w", err)
			}
			res.Rows += n
			healthy = append(healthy, evs...)
		}
		// RETURNING order is unspecified; events go in node order.
		sortEventsByNode(healthy)
		all := append(healthy, given...)
		res.Events = len(all)
		return s.events.Append(ctx, tx, entries(all)...)
	})
	if err != nil {
		return FlushResult{}, fmt.Errorf("flush: %w", err)
	}
	s.notify(res.Events)
	return res, nil
}

// upsert runs one chunk of a flush's upsert and returns the healthy events
// of the nodes it found new or not healthy.
func upsert(ctx context.Context, tx *sql.Tx, q string, args []any) ([]Event, int, error) {
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
			nodeID, bootID string
			status         Status
			lastSeen       time.Time
			prior          sql.NullString
		)
		if err := rows.Scan(&nodeID, db.ScanTime(&lastSeen), &bootID, &status, &prior); err != nil {
			return nil, 0, err
		}
		n++
		if State(prior.String) != StateHealthy {
			evs = append(evs, healthyEvent(nodeID, lastSeen, bootID, status, State(prior.String)))
		}
	}
	return evs, n, rows.Err()
}

// Record writes one beat that changes what the store knows, with its
// events, in one transaction.
func (s *SQLStore) Record(ctx context.Context, o Observation, given []Event) ([]Event, error) {
	o.LastSeen = utc(o.LastSeen)
	var out []Event
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		out = nil
		var instance string
		var lastSeq int64
		l, err := scanLiveness(tx.QueryRowContext(ctx, `SELECT `+livenessRead+` FROM hb_liveness WHERE node_id = $1`+
			s.db.Dialect.ForUpdate(), o.NodeID))
		if err == nil {
			err = tx.QueryRowContext(ctx, `SELECT event_instance, event_seq FROM hb_liveness WHERE node_id = $1`, o.NodeID).Scan(&instance, &lastSeq)
		}
		found := err == nil
		switch {
		case err != nil && !db.IsNoRows(err):
			return err
		case found && l.BootID == o.BootID && o.Sequence <= l.Sequence:
			return nil // already recorded
		case !found || l.State != StateHealthy:
			out = append(out, healthyEvent(o.NodeID, o.LastSeen, o.BootID, o.Status, l.State))
		}
		if found && l.BootID != o.BootID {
			out = append(out, Event{Time: o.LastSeen, NodeID: o.NodeID, Type: EventRebooted,
				BootID: o.BootID, PrevBootID: l.BootID, Status: o.Status})
		}
		if found && l.Status != o.Status {
			out = append(out, Event{Time: o.LastSeen, NodeID: o.NodeID, Type: EventStatusChanged,
				BootID: o.BootID, Status: o.Status, PrevStatus: l.Status})
		}
		for _, e := range given {
			if e.Seq > 0 {
				if e.Instance == instance && e.Seq <= lastSeq {
					continue // recorded when the agent first sent it
				}
				instance, lastSeq = e.Instance, e.Seq
			}
			e.Time = utc(e.Time)
			out = append(out, e)
		}
		v, args := s.obsValues(1, o)
		if _, err := tx.ExecContext(ctx, `INSERT INTO hb_liveness (`+livenessColumns+`) VALUES `+v+`
			ON CONFLICT (node_id) DO UPDATE SET
			last_seen = `+s.db.Dialect.Greatest("hb_liveness.last_seen", "excluded.last_seen")+`,
			sequence = excluded.sequence, boot_id = excluded.boot_id, status = excluded.status,
			uptime_us = excluded.uptime_us, prior_state = hb_liveness.state, state = 'healthy',
			state_since = CASE WHEN hb_liveness.state = 'healthy' THEN hb_liveness.state_since ELSE excluded.last_seen END`,
			args...); err != nil {
			return fmt.Errorf("write liveness: %w", err)
		}
		if err := s.recordReports(ctx, tx, o, instance, lastSeq); err != nil {
			return err
		}
		return s.events.Append(ctx, tx, entries(out)...)
	})
	if err != nil {
		return nil, fmt.Errorf("record beat of %s: %w", o.NodeID, err)
	}
	s.notify(len(out))
	return out, nil
}

// recordReports writes what a beat reported beyond its liveness, and the
// last event sequence recorded of the agent instance.
func (s *SQLStore) recordReports(ctx context.Context, tx *sql.Tx, o Observation, instance string, lastSeq int64) error {
	set, args := []string{"event_instance = $1", "event_seq = $2"}, []any{instance, lastSeq}
	for col, v := range map[string]any{"reported": o.Reported, "bundle_applied": o.BundleApplied} {
		switch v := v.(type) {
		case *Reported:
			if v == nil {
				continue
			}
		case *BundleApplied:
			if v == nil {
				continue
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		args = append(args, string(b))
		set = append(set, fmt.Sprintf("%s = $%d", col, len(args)))
	}
	args = append(args, o.NodeID)
	q := `UPDATE hb_liveness SET ` + strings.Join(set, ", ") + fmt.Sprintf(` WHERE node_id = $%d`, len(args))
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("write reports: %w", err)
	}
	return nil
}

func (s *SQLStore) notify(events int) {
	if events > 0 {
		s.events.Notify()
	}
}

// GetLiveness returns one node's liveness.
func (s *SQLStore) GetLiveness(ctx context.Context, nodeID string) (Liveness, error) {
	l, err := scanLiveness(s.db.QueryRowContext(ctx, `SELECT `+livenessRead+` FROM hb_liveness WHERE node_id = $1`, nodeID))
	if db.IsNoRows(err) {
		return Liveness{}, fmt.Errorf("get liveness %s: %w", nodeID, ErrNotFound)
	}
	if err != nil {
		return Liveness{}, fmt.Errorf("get liveness %s: %w", nodeID, err)
	}
	return l, nil
}

// ListLiveness returns matching rows in ascending node ID.
func (s *SQLStore) ListLiveness(ctx context.Context, f LivenessFilter) ([]Liveness, error) {
	q := `SELECT ` + livenessRead + ` FROM hb_liveness WHERE node_id > $1`
	args := []any{f.AfterID}
	if f.State != "" {
		args = append(args, string(f.State))
		q += fmt.Sprintf(` AND state = $%d`, len(args))
	}
	if len(f.NodeIDs) > 0 {
		q += ` AND ` + db.In("node_id", len(args)+1, len(f.NodeIDs))
		args = append(args, db.Args(f.NodeIDs)...)
	}
	q += ` ORDER BY node_id`
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += fmt.Sprintf(` LIMIT $%d`, len(args))
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list liveness: %w", err)
	}
	defer rows.Close()
	var out []Liveness
	for rows.Next() {
		l, err := scanLiveness(rows)
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

// AcquireLease takes or renews the decider lease: it is taken when free,
// expired or already ours. acquired_at survives only an unbroken renewal:
// a holder whose lease lapsed starts over, as a new decider would, because
// the store may have missed flushes from every replica while it was away.
func (s *SQLStore) AcquireLease(ctx context.Context, holder string, now, until time.Time) (bool, time.Time, error) {
	var since time.Time
	err := s.db.QueryRowContext(ctx, `INSERT INTO hb_lease (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4)
	ON CONFLICT (name) DO UPDATE SET
	acquired_at = CASE WHEN hb_lease.holder = excluded.holder AND hb_lease.expires_at > excluded.acquired_at
		THEN hb_lease.acquired_at ELSE excluded.acquired_at END,
	holder = excluded.holder,
	expires_at = excluded.expires_at
	WHERE hb_lease.holder = excluded.holder OR hb_lease.expires_at <= excluded.acquired_at
	RETURNING acquired_at`, leaseName, holder, s.db.Dialect.Time(now), s.db.Dialect.Time(until)).Scan(db.ScanTime(&since))
	if db.IsNoRows(err) {
		return false, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, fmt.Errorf("acquire lease: %w", err)
	}
	return true, since, nil
}

// ReleaseLease gives the lease up if holder holds it.
func (s *SQLStore) ReleaseLease(ctx context.Context, holder string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM hb_lease WHERE name = $1 AND holder = $2`, leaseName, holder); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// MarkSilent renews the lease and moves silent nodes on, in one
// transaction. Renewing in the same transaction fences off a holder that
// lost the lease: a rival's takeover waits on the lease row until this
// commits, and then finds the lease renewed. One statement moves every
// silent node, locking rows in node order as flushes do.
func (s *SQLStore) MarkSilent(ctx context.Context, sl Silence) (SilenceResult, error) {
	d := s.db.Dialect
	var res SilenceResult
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res = SilenceResult{}
		r, err := tx.ExecContext(ctx, `UPDATE hb_lease SET expires_at = $1 WHERE name = $2 AND holder = $3`,
			d.Time(sl.LeaseUntil), leaseName, sl.Holder)
		if err != nil {
			return fmt.Errorf("renew lease: %w", err)
		}
		if n, err := r.RowsAffected(); err != nil || n == 0 {
			return ErrLeaseLost
		}
		unreachable, suspect := "FALSE", "FALSE"
		args := []any{d.Time(sl.Now)}
		if !sl.UnreachableBefore.IsZero() {
			args = append(args, d.Time(sl.UnreachableBefore))
			unreachable = fmt.Sprintf(`(last_seen < $%d AND state IN ('healthy', 'suspect'))`, len(args))
		}
		if !sl.SuspectBefore.IsZero() {
			args = append(args, d.Time(sl.SuspectBefore))
			suspect = fmt.Sprintf(`(last_seen < $%d AND state = 'healthy')`, len(args))
		}
		rows, err := tx.QueryContext(ctx, `UPDATE hb_liveness SET prior_state = state, state_since = $1,
			state = CASE WHEN `+unreachable+` THEN 'unreachable' ELSE 'suspect' END
			WHERE node_id IN (SELECT node_id FROM hb_liveness WHERE `+unreachable+` OR `+suspect+`
				ORDER BY node_id`+d.ForUpdate()+`)
			RETURNING node_id, state, prior_state, boot_id, status`, args...)
		if err != nil {
			return fmt.Errorf("mark silent nodes: %w", err)
		}
		defer rows.Close()
		var evs []Event
		for rows.Next() {
			var e Event
			if err := rows.Scan(&e.NodeID, &e.State, &e.PrevState, &e.BootID, &e.Status); err != nil {
				return fmt.Errorf("mark silent nodes: %w", err)
			}
			e.Time, e.Type = utc(sl.Now), EventType(e.State)
			evs = append(evs, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("mark silent nodes: %w", err)
		}
		// Unreachable nodes first, then suspect ones, each in node order.
		slices.SortFunc(evs, func(a, b Event) int {
			if a.State != b.State {
				if a.State == StateUnreachable {
					return -1
				}
				return 1
			}
			return cmp.Compare(a.NodeID, b.NodeID)
		})
		for _, e := range evs {
			if e.State == StateUnreachable {
				res.Unreachable++
			} else {
				res.Suspect++
			}
		}
		return s.events.Append(ctx, tx, entries(evs)...)
	})
	if err != nil {
		return SilenceResult{}, fmt.Errorf("mark silent: %w", err)
	}
	s.notify(res.Suspect + res.Unreachable)
	return res, nil
}

const settingsColumns = `interval_us, grace_us, prev_interval_us, prev_grace_us, changed_at, stretch`

// GetSettings returns the stored settings, zero if never set.
func (s *SQLStore) GetSettings(ctx context.Context) (Settings, error) {
	var (
		iv, gr, piv, pgr int64
		st               Settings
	)
	err := s.db.QueryRowContext(ctx, `SELECT `+settingsColumns+` FROM hb_settings WHERE id = 1`).
		Scan(&iv, &gr, &piv, &pgr, db.ScanTime(&st.ChangedAt), &st.Stretch)
	if db.IsNoRows(err) {
		return Settings{}, nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("get settings: %w", err)
	}
	st.Interval, st.Grace = fromDurationMicros(iv), fromDurationMicros(gr)
	st.Previous = Timings{Interval: fromDurationMicros(piv), Grace: fromDurationMicros(pgr)}
	return st, nil
}

// PutSettings stores the settings but the stretch, which it keeps.
func (s *SQLStore) PutSettings(ctx context.Context, st Settings) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO hb_settings (id, `+settingsColumns+`) VALUES (1, $1, $2, $3, $4, $5, 1)
		ON CONFLICT (id) DO UPDATE SET interval_us = excluded.interval_us, grace_us = excluded.grace_us,
			prev_interval_us = excluded.prev_interval_us, prev_grace_us = excluded.prev_grace_us, changed_at = excluded.changed_at`,
		durationMicros(st.Interval), durationMicros(st.Grace), durationMicros(st.Previous.Interval),
		durationMicros(st.Previous.Grace), s.db.Dialect.Time(st.ChangedAt))
	if err != nil {
		return fmt.Errorf("put settings: %w", err)
	}
	return nil
}

// PutStretch stores the stretch with the previous timings and keeps the
// base timings.
func (s *SQLStore) PutStretch(ctx context.Context, st Settings) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO hb_settings (id, `+settingsColumns+`) VALUES (1, 0, 0, $1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET stretch = excluded.stretch,
			prev_interval_us = excluded.prev_interval_us, prev_grace_us = excluded.prev_grace_us, changed_at = excluded.changed_at`,
		durationMicros(st.Previous.Interval), durationMicros(st.Previous.Grace), s.db.Dialect.Time(st.ChangedAt), st.Stretch)
	if err != nil {
		return fmt.Errorf("put stretch: %w", err)
	}
	return nil
}

// CountLive returns the number of nodes healthy or suspect.
func (s *SQLStore) CountLive(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM hb_liveness WHERE state IN ('healthy', 'suspect')`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count live nodes: %w", err)
	}
	return n, nil
}
