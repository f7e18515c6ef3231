package heartbeatstore

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// migrations/sqlite and migrations/postgres hold the schema: one numbered
// file per change and engine, the two saying the same thing; their
// comments say what each change is for.
//
//go:embed migrations
var migrations embed.FS

// SQLStore is the Store on SQLite (`berthd dev`, one machine) or on
// PostgreSQL, shared by every replica of the heartbeat service.
type SQLStore struct {
	eventlog.Store
	// afterBootsRead, when set (tests), runs in every RecordBoots
	// transaction between reading the rows and writing them.
	afterBootsRead func()
}

var _ Store = (*SQLStore)(nil)

// Open opens the database at where (a path for SQLite, a DSN for
// PostgreSQL) and brings the heartbeat tables up to date; "heartbeat"
// names them in schema_migrations.
func Open(ctx context.Context, d db.Dialect, where string) (*SQLStore, error) {
	s, err := eventlog.OpenStore(ctx, d, where, db.Schema{Service: "heartbeat", FS: migrations}, eventlog.NewTable("hb"))
	return db.Result(&SQLStore{Store: s}, err, "heartbeat store")
}

// leaseName names the one lease in hb_lease.
const leaseName = "decider"

const livenessColumns = `node_id, last_seen, sequence, boot_id, status, uptime_us, state, state_since`

// livenessRead is what scanLiveness reads: livenessColumns and what the
// node reported.
const livenessRead = livenessColumns + `, reported, bundle_applied`

// flushChunk is how many rows one upsert carries (six parameters each).
const flushChunk = 2000

// liveSet is what every write of a beat sets on conflict: the beat's
// liveness, and healthy now, with the previous state kept in prior_state
// for RETURNING.
const liveSet = ` ON CONFLICT (node_id) DO UPDATE SET
	sequence = excluded.sequence,
	boot_id = excluded.boot_id,
	status = excluded.status,
	uptime_us = excluded.uptime_us,
	prior_state = hb_liveness.state,
	state = 'healthy',
	state_since = CASE WHEN hb_liveness.state = 'healthy' THEN hb_liveness.state_since ELSE excluded.last_seen END`

// flushSet ends a flush's upsert: the newest observation wins (the higher
// sequence on a tie).
const flushSet = liveSet + `, last_seen = excluded.last_seen
	WHERE excluded.last_seen > hb_liveness.last_seen
		OR (excluded.last_seen = hb_liveness.last_seen AND excluded.sequence >= hb_liveness.sequence)
	RETURNING node_id, last_seen, boot_id, status, prior_state`

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

func scanLiveness(row db.Scanner) (Liveness, error) {
	var (
		l      Liveness
		uptime int64
	)
	err := row.Scan(&l.NodeID, db.ScanTime(&l.LastSeen), &l.Sequence, &l.BootID, &l.Status, &uptime, &l.State, db.ScanTime(&l.StateSince),
		db.ScanJSON(&l.Reported), db.ScanJSON(&l.BundleApplied))
	l.Uptime = micros(uptime)
	return l, err
}

// upserted is a row an upsert of beats returned: a node it wrote, and
// the state the node had before (none if it is new). Kept apart from
// Event, five times its size, as a flush writes a row for nearly every
// node and all but a few were healthy already.
type upserted struct {
	NodeID    string
	Time      time.Time
	BootID    string
	Status    Status
	PrevState State
}

// scanUpserted reads a row an upsert of beats returned.
func scanUpserted(row db.Scanner) (upserted, error) {
	var (
		w     upserted
		prior sql.NullString
	)
	err := row.Scan(&w.NodeID, db.ScanTime(&w.Time), &w.BootID, &w.Status, &prior)
	w.PrevState = State(prior.String)
	return w, err
}

// event is the node's healthy event: the row's beat made it healthy.
func (w upserted) event() Event {
	return Event{Type: EventHealthy, State: StateHealthy, NodeID: w.NodeID, Time: w.Time, BootID: w.BootID, Status: w.Status, PrevState: w.PrevState}
}

// latestPerNode keeps the newest observation of each node (the last given
// wins a tie) and sorts them by node ID, so that concurrent writers lock
// rows in the same order.
func latestPerNode(obs []Observation) []Observation {
	byNode := make(map[string]int, len(obs))
	out := make([]Observation, 0, len(obs))
	for _, o := range obs {
		o.LastSeen = db.UTC(o.LastSeen)
		if i, ok := byNode[o.NodeID]; ok {
			if !o.LastSeen.Before(out[i].LastSeen) {
				out[i] = o
			}
			continue
		}
		byNode[o.NodeID] = len(out)
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b Observation) int { return cmp.Compare(a.NodeID, b.NodeID) })
	return out
}

// Flush writes the observations and appends events in one transaction.
func (s *SQLStore) Flush(ctx context.Context, obs []Observation, given []Event) (FlushResult, error) {
	obs = latestPerNode(obs)
	if len(obs) == 0 && len(given) == 0 {
		return FlushResult{}, nil
	}
	d := s.DB.Dialect
	var res FlushResult
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		res = FlushResult{}
		var healthy []Event
		for chunk := range slices.Chunk(obs, flushChunk) {
			// Built in one buffer: appending row by row to a string
			// copied the whole statement for every row, gigabytes a
			// minute for a few thousand nodes beating every few seconds
			// (BenchmarkFlushQuery).
			q, p := flushQuery(d, chunk)
			written, err := db.Collect(ctx, tx, scanUpserted, q, p...)
			if err != nil {
				return nil, fmt.Errorf("upsert liveness: %w", err)
			}
			res.Rows += len(written)
			for _, w := range written {
				if w.PrevState != StateHealthy {
					healthy = append(healthy, w.event())
				}
			}
		}
		// RETURNING order is unspecified; events go in node order.
		slices.SortStableFunc(healthy, func(a, b Event) int { return cmp.Compare(a.NodeID, b.NodeID) })
		all := append(healthy, given...)
		res.Events = len(all)
		return entries(all), nil
	})
	return db.Result(res, err, "flush")
}

// flushQuery is the upsert of one chunk of a flush and its parameters.
func flushQuery(d db.Dialect, chunk []Observation) (string, db.Params) {
	return upsertQuery(d, chunk, flushSet)
}

// upsertQuery inserts chunk's rows into hb_liveness, ending with set (the
// conflict clause), built in one buffer.
func upsertQuery(d db.Dialect, chunk []Observation, set string) (string, db.Params) {
	const head = `INSERT INTO hb_liveness (` + livenessColumns + `) VALUES `
	p := make(db.Params, 0, 6*len(chunk))
	var q strings.Builder
	// A row is "($1, $2, $3, $4, $5, $6, 'healthy', $2), " with numbers of
	// up to five digits.
	q.Grow(len(head) + len(chunk)*72 + len(set))
	q.WriteString(head)
	for i, o := range chunk {
		if i > 0 {
			q.WriteString(", ")
		}
		at := p.Add(d.Time(o.LastSeen))
		for _, part := range [...]string{"(", p.Add(o.NodeID), ", ", at, ", ", p.Add(o.Sequence), ", ", p.Add(o.BootID), ", ",
			p.Add(string(o.Status)), ", ", p.Add(o.Uptime.Microseconds()), ", 'healthy', ", at, ")"} {
			q.WriteString(part)
		}
	}
	q.WriteString(set)
	return q.String(), p
}

// Record writes one beat that changes what the store knows, with its
// events, in one transaction.
func (s *SQLStore) Record(ctx context.Context, o Observation, given []Event) ([]Event, error) {
	o.LastSeen = db.UTC(o.LastSeen)
	var (
		out []Event
		err error
	)
	for range rowRaceRetries + 1 {
		out, err = s.record(ctx, o, given)
		if !errors.Is(err, errRowRace) {
			break
		}
	}
	return db.Result(out, err, "record beat of %s", o.NodeID)
}

func (s *SQLStore) record(ctx context.Context, o Observation, given []Event) ([]Event, error) {
	d := s.DB.Dialect
	var out []Event
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		out = nil
		var (
			l        Liveness
			instance string
			lastSeq  int64
		)
		err := tx.QueryRowContext(ctx, `SELECT boot_id, sequence, state, status, event_instance, event_seq
			FROM hb_liveness WHERE node_id = $1`+d.ForUpdate(), o.NodeID).Scan(&l.BootID, &l.Sequence, &l.State, &l.Status, &instance, &lastSeq)
		found := err == nil
		switch {
		case err != nil && !db.IsNoRows(err):
			return nil, err
		case found && l.BootID == o.BootID && o.Sequence <= l.Sequence:
			return nil, nil // already recorded
		case !found || l.State != StateHealthy:
			out = append(out, Event{Time: o.LastSeen, NodeID: o.NodeID, Type: EventHealthy, State: StateHealthy, PrevState: l.State,
				BootID: o.BootID, Status: o.Status})
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
			e.Time = db.UTC(e.Time)
			out = append(out, e)
		}
		// What the beat reported replaces what is stored; "" keeps it.
		reported, applied := "", ""
		if o.Reported != nil {
			reported = db.JSON(o.Reported)
		}
		if o.BundleApplied != nil {
			applied = db.JSON(o.BundleApplied)
		}
		// A row that was not there when read may have been made since (on
		// PostgreSQL the read locks only rows that exist): the upsert then
		// finds a prior state, and the events above would be wrong, so the
		// transaction runs again and reads it.
		var prior sql.NullString
		if err := tx.QueryRowContext(ctx, `INSERT INTO hb_liveness (`+livenessColumns+`, reported, bundle_applied, event_instance, event_seq)
			VALUES ($1, $2, $3, $4, $5, $6, 'healthy', $2, $7, $8, $9, $10)`+liveSet+`,
			last_seen = `+d.Greatest("hb_liveness.last_seen", "excluded.last_seen")+`,
			reported = CASE WHEN excluded.reported = '' THEN hb_liveness.reported ELSE excluded.reported END,
			bundle_applied = CASE WHEN excluded.bundle_applied = '' THEN hb_liveness.bundle_applied ELSE excluded.bundle_applied END,
			event_instance = excluded.event_instance, event_seq = excluded.event_seq
			RETURNING prior_state`,
			o.NodeID, d.Time(o.LastSeen), o.Sequence, o.BootID, string(o.Status), o.Uptime.Microseconds(),
			reported, applied, instance, lastSeq).Scan(&prior); err != nil {
			return nil, fmt.Errorf("write liveness: %w", err)
		}
		if !found && prior.Valid {
			return nil, errRowRace
		}
		return entries(out), nil
	})
	return out, err
}

// GetLiveness returns one node's liveness.
func (s *SQLStore) GetLiveness(ctx context.Context, nodeID string) (Liveness, error) {
	l, err := scanLiveness(s.DB.QueryRowContext(ctx, `SELECT `+livenessRead+` FROM hb_liveness WHERE node_id = $1`, nodeID))
	return db.Result(l, db.Found(err, ErrNotFound), "get liveness %s", nodeID)
}

// ListLiveness returns matching rows in ascending node ID.
func (s *SQLStore) ListLiveness(ctx context.Context, f LivenessFilter) ([]Liveness, error) {
	var p db.Params
	q := `SELECT ` + livenessRead + ` FROM hb_liveness WHERE node_id > ` + p.Add(f.AfterID)
	if f.State != "" {
		q += ` AND state = ` + p.Add(string(f.State))
	}
	if len(f.NodeIDs) > 0 {
		q += ` AND ` + p.In("node_id", f.NodeIDs)
	}
	q += ` ORDER BY node_id` + p.Limit(f.Limit)
	ls, err := db.Collect(ctx, s.DB, scanLiveness, q, p...)
	return db.Result(ls, err, "list liveness")
}

// AcquireLease takes or renews the decider lease: it is taken when free,
// expired or already ours. acquired_at survives only an unbroken renewal:
// a holder whose lease lapsed starts over, as a new decider would, because
// the store may have missed flushes from every replica while it was away.
func (s *SQLStore) AcquireLease(ctx context.Context, holder string, now, until time.Time) (bool, time.Time, error) {
	var since time.Time
	err := s.DB.QueryRowContext(ctx, `INSERT INTO hb_lease (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4)
	ON CONFLICT (name) DO UPDATE SET
	acquired_at = CASE WHEN hb_lease.holder = excluded.holder AND hb_lease.expires_at > excluded.acquired_at
		THEN hb_lease.acquired_at ELSE excluded.acquired_at END,
	holder = excluded.holder,
	expires_at = excluded.expires_at
	WHERE hb_lease.holder = excluded.holder OR hb_lease.expires_at <= excluded.acquired_at
	RETURNING acquired_at`, leaseName, holder, s.DB.Dialect.Time(now), s.DB.Dialect.Time(until)).Scan(db.ScanTime(&since))
	if db.IsNoRows(err) {
		return false, time.Time{}, nil
	}
	since, err = db.Result(since, err, "acquire lease")
	return err == nil, since, err
}

// ReleaseLease gives the lease up if holder holds it.
func (s *SQLStore) ReleaseLease(ctx context.Context, holder string) error {
	_, err := s.DB.ExecContext(ctx, `DELETE FROM hb_lease WHERE name = $1 AND holder = $2`, leaseName, holder)
	return db.Wrap(err, "release lease")
}

// MarkSilent renews the lease and moves silent nodes on, in one
// transaction. Renewing in the same transaction fences off a holder that
// lost the lease: a rival's takeover waits on the lease row until this
// commits, and then finds the lease renewed. One statement moves every
// silent node, locking rows in node order as flushes do.
func (s *SQLStore) MarkSilent(ctx context.Context, sl Silence) (SilenceResult, error) {
	d := s.DB.Dialect
	var res SilenceResult
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		res = SilenceResult{}
		r, err := tx.ExecContext(ctx, `UPDATE hb_lease SET expires_at = $1 WHERE name = $2 AND holder = $3`,
			d.Time(sl.LeaseUntil), leaseName, sl.Holder)
		if err != nil {
			return nil, fmt.Errorf("renew lease: %w", err)
		}
		if n, err := r.RowsAffected(); err != nil || n == 0 {
			return nil, ErrLeaseLost
		}
		p := db.Params{d.Time(sl.Now)}
		unreachable, suspect := "FALSE", "FALSE"
		if !sl.UnreachableBefore.IsZero() {
			unreachable = `(last_seen < ` + p.Add(d.Time(sl.UnreachableBefore)) + ` AND state IN ('healthy', 'suspect'))`
		}
		if !sl.SuspectBefore.IsZero() {
			suspect = `(last_seen < ` + p.Add(d.Time(sl.SuspectBefore)) + ` AND state = 'healthy')`
		}
		evs, err := db.Collect(ctx, tx, func(row db.Scanner) (Event, error) {
			e := Event{Time: db.UTC(sl.Now)}
			err := row.Scan(&e.NodeID, &e.State, &e.PrevState, &e.BootID, &e.Status)
			e.Type = EventType(e.State)
			return e, err
		}, `UPDATE hb_liveness SET prior_state = state, state_since = $1,
			state = CASE WHEN `+unreachable+` THEN 'unreachable' ELSE 'suspect' END
			WHERE node_id IN (SELECT node_id FROM hb_liveness WHERE `+unreachable+` OR `+suspect+`
				ORDER BY node_id`+d.ForUpdate()+`)
			RETURNING node_id, state, prior_state, boot_id, status`, p...)
		if err != nil {
			return nil, fmt.Errorf("mark silent nodes: %w", err)
		}
		// Unreachable nodes first, then suspect ones ("unreachable" >
		// "suspect"), each in node order.
		slices.SortFunc(evs, func(a, b Event) int { return cmp.Or(cmp.Compare(b.State, a.State), cmp.Compare(a.NodeID, b.NodeID)) })
		for _, e := range evs {
			if e.State == StateUnreachable {
				res.Unreachable++
			} else {
				res.Suspect++
			}
		}
		return entries(evs), nil
	})
	return db.Result(res, err, "mark silent")
}

const settingsColumns = `interval_us, grace_us, prev_interval_us, prev_grace_us, changed_at, stretch`

// GetSettings returns the stored settings, zero if never set.
func (s *SQLStore) GetSettings(ctx context.Context) (Settings, error) {
	var (
		iv, gr, piv, pgr int64
		st               Settings
	)
	err := s.DB.QueryRowContext(ctx, `SELECT `+settingsColumns+` FROM hb_settings WHERE id = 1`).
		Scan(&iv, &gr, &piv, &pgr, db.ScanTime(&st.ChangedAt), &st.Stretch)
	if db.IsNoRows(err) {
		return Settings{}, nil
	}
	st.Interval, st.Grace = micros(iv), micros(gr)
	st.Previous = Timings{Interval: micros(piv), Grace: micros(pgr)}
	return db.Result(st, err, "get settings")
}

// PutSettings stores the settings but the stretch, which it keeps, and
// appends the change's event.
func (s *SQLStore) PutSettings(ctx context.Context, st Settings, ev Event) error {
	ev.Type, ev.Time = EventSettingsChanged, db.UTC(ev.Time)
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO hb_settings (id, `+settingsColumns+`) VALUES (1, $1, $2, $3, $4, $5, 1)
		ON CONFLICT (id) DO UPDATE SET interval_us = excluded.interval_us, grace_us = excluded.grace_us,
			prev_interval_us = excluded.prev_interval_us, prev_grace_us = excluded.prev_grace_us, changed_at = excluded.changed_at`,
			st.Interval.Microseconds(), st.Grace.Microseconds(), st.Previous.Interval.Microseconds(),
			st.Previous.Grace.Microseconds(), s.DB.Dialect.Time(st.ChangedAt))
		return entries([]Event{ev}), err
	})
	return db.Wrap(err, "put settings")
}

// PutStretch stores the stretch with the previous timings and keeps the
// base timings.
func (s *SQLStore) PutStretch(ctx context.Context, st Settings) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO hb_settings (id, `+settingsColumns+`) VALUES (1, 0, 0, $1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET stretch = excluded.stretch,
			prev_interval_us = excluded.prev_interval_us, prev_grace_us = excluded.prev_grace_us, changed_at = excluded.changed_at`,
		st.Previous.Interval.Microseconds(), st.Previous.Grace.Microseconds(), s.DB.Dialect.Time(st.ChangedAt), st.Stretch)
	return db.Wrap(err, "put stretch")
}

// CountLive returns the number of nodes healthy or suspect.
func (s *SQLStore) CountLive(ctx context.Context) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT count(*) FROM hb_liveness WHERE state IN ('healthy', 'suspect')`).Scan(&n)
	return db.Result(n, err, "count live nodes")
}

// PutBoots stores or removes replica's count of recent boots.
func (s *SQLStore) PutBoots(ctx context.Context, replica string, boots int, at time.Time) error {
	var err error
	switch {
	case boots < 0:
		return fmt.Errorf("put boots of replica %s: negative count %d", replica, boots)
	case boots == 0:
		_, err = s.DB.ExecContext(ctx, `DELETE FROM hb_replica_boots WHERE replica = $1`, replica)
	default:
		_, err = s.DB.ExecContext(ctx, `INSERT INTO hb_replica_boots (replica, boots, at) VALUES ($1, $2, $3)
			ON CONFLICT (replica) DO UPDATE SET boots = excluded.boots, at = excluded.at`, replica, boots, s.DB.Dialect.Time(at))
	}
	return db.Wrap(err, "put boots of replica %s", replica)
}

// SumBoots adds up the other replicas' recent counts.
func (s *SQLStore) SumBoots(ctx context.Context, except string, since time.Time) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT COALESCE(SUM(boots), 0) FROM hb_replica_boots WHERE replica <> $1 AND at >= $2`,
		except, s.DB.Dialect.Time(since)).Scan(&n)
	return db.Result(n, err, "sum boots of replicas")
}

// ForgetBoots removes stale counts.
func (s *SQLStore) ForgetBoots(ctx context.Context, before time.Time) (int64, error) {
	n, err := db.RowsAffected(s.DB.ExecContext(ctx, `DELETE FROM hb_replica_boots WHERE at < $1`, s.DB.Dialect.Time(before)))
	return db.Result(n, err, "forget boots of replicas")
}

// CountByState returns how many nodes are in each state.
func (s *SQLStore) CountByState(ctx context.Context) (map[State]int64, error) {
	out := map[State]int64{}
	_, err := db.Collect(ctx, s.DB, func(row db.Scanner) (struct{}, error) {
		var st State
		var n int64
		err := row.Scan(&st, &n)
		out[st] = n
		return struct{}{}, err
	}, `SELECT state, count(*) FROM hb_liveness GROUP BY state`)
	return db.Result(out, err, "count nodes by state")
}

// The details keys of a health event in the log.
const (
	keyState      = "state"
	keyPrevState  = "prev_state"
	keyBootID     = "boot_id"
	keyPrevBootID = "prev_boot_id"
	keyStatus     = "status"
	keyPrevStatus = "prev_status"
	keyKind       = "kind"
	keyMessage    = "message"
	keySeverity   = "severity"
	keyEventTime  = "event_time"
	keyInterval   = "interval"
	keyGrace      = "grace"
	keyActor      = "actor"
)

// entries are evs as the log holds them; empty fields are left out.
func entries(evs []Event) []eventlog.Event {
	out := make([]eventlog.Event, len(evs))
	for i, e := range evs {
		at := ""
		if !e.EventTime.IsZero() {
			at = e.EventTime.UTC().Format(time.RFC3339Nano)
		}
		out[i] = eventlog.Event{Type: string(e.Type), NodeID: e.NodeID, Time: e.Time, Details: eventlog.Details(
			keyState, string(e.State), keyPrevState, string(e.PrevState), keyBootID, e.BootID, keyPrevBootID, e.PrevBootID,
			keyStatus, string(e.Status), keyPrevStatus, string(e.PrevStatus), keyKind, e.Kind, keyMessage, e.Message,
			keySeverity, e.Severity, keyEventTime, at,
			keyInterval, duration(e.Interval), keyGrace, duration(e.Grace), keyActor, e.Actor)}
	}
	return out
}

// duration renders d for event details; "" (left out) for 0.
func duration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// EventOf reads a health event out of an entry of the log.
func EventOf(e eventlog.Event) Event {
	d := e.Details
	at, _ := time.Parse(time.RFC3339Nano, d[keyEventTime])
	interval, _ := time.ParseDuration(d[keyInterval])
	grace, _ := time.ParseDuration(d[keyGrace])
	return Event{
		Cursor: e.Cursor, Time: e.Time, NodeID: e.NodeID, Type: EventType(e.Type),
		State: State(d[keyState]), PrevState: State(d[keyPrevState]),
		BootID: d[keyBootID], PrevBootID: d[keyPrevBootID],
		Status: Status(d[keyStatus]), PrevStatus: Status(d[keyPrevStatus]),
		Kind: d[keyKind], Message: d[keyMessage], Severity: d[keySeverity], EventTime: at,
		Interval: interval, Grace: grace, Actor: d[keyActor],
	}
}
