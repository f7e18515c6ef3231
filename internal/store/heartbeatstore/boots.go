package heartbeatstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// errRowRace is a liveness row that another writer created between a
// transaction's read and its write (Record, RecordBoots): the transaction
// is rolled back and run again, which then reads the row.
var errRowRace = errors.New("liveness row created meanwhile")

// rowRaceRetries bounds Record's reruns after errRowRace; each needs
// another write of the same node's first row in the same few milliseconds.
// RecordBoots reruns while its batch has nodes without a row: every
// rerun after a race reads at least one more row, so it ends.
const rowRaceRetries = 3

// RecordBoots records boots as beats, in one transaction per call.
func (s *SQLStore) RecordBoots(ctx context.Context, obs []Observation) (BootsResult, error) {
	obs = latestPerNode(obs)
	if len(obs) == 0 {
		return BootsResult{}, nil
	}
	var (
		res BootsResult
		err error
	)
	// A batch is hundreds of nodes in a storm, whose streams create their
	// first rows meanwhile: a fixed number of reruns could all lose.
	for range len(obs) + 1 {
		res, err = s.recordBoots(ctx, obs)
		if !errors.Is(err, errRowRace) {
			break
		}
	}
	return db.Result(res, err, "record boots")
}

// storedBoot is what RecordBoots compares a boot with.
type storedBoot struct {
	Liveness
	found bool
}

func (s *SQLStore) recordBoots(ctx context.Context, obs []Observation) (BootsResult, error) {
	d := s.DB.Dialect
	var res BootsResult
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		res = BootsResult{}
		stored := make(map[string]storedBoot, len(obs))
		for chunk := range slices.Chunk(obs, flushChunk) {
			ids := make([]string, len(chunk))
			for i, o := range chunk {
				ids[i] = o.NodeID
			}
			var p db.Params
			rows, err := db.Collect(ctx, tx, func(row db.Scanner) (Liveness, error) {
				var l Liveness
				err := row.Scan(&l.NodeID, db.ScanTime(&l.LastSeen), &l.Sequence, &l.BootID, &l.State, &l.Status)
				return l, err
			}, `SELECT node_id, last_seen, sequence, boot_id, state, status FROM hb_liveness WHERE `+p.In("node_id", ids)+
				` ORDER BY node_id`+d.ForUpdate(), p...)
			if err != nil {
				return nil, fmt.Errorf("read liveness: %w", err)
			}
			for _, l := range rows {
				stored[l.NodeID] = storedBoot{Liveness: l, found: true}
			}
		}
		if s.afterBootsRead != nil {
			s.afterBootsRead()
		}
		var (
			apply  []Observation
			events []Event
		)
		for _, o := range obs {
			l := stored[o.NodeID]
			if l.found && (l.LastSeen.After(o.LastSeen) || l.BootID == o.BootID && o.Sequence <= l.Sequence) {
				res.Skipped++ // the store holds this boot or something newer
				continue
			}
			apply = append(apply, o)
			if !l.found || l.State != StateHealthy {
				events = append(events, Event{Time: o.LastSeen, NodeID: o.NodeID, Type: EventHealthy, State: StateHealthy, PrevState: l.State,
					BootID: o.BootID, Status: o.Status})
			}
			if l.found && l.BootID != o.BootID {
				events = append(events, Event{Time: o.LastSeen, NodeID: o.NodeID, Type: EventRebooted,
					BootID: o.BootID, PrevBootID: l.BootID, Status: o.Status})
			}
			if l.found && l.Status != o.Status {
				events = append(events, Event{Time: o.LastSeen, NodeID: o.NodeID, Type: EventStatusChanged,
					BootID: o.BootID, Status: o.Status, PrevStatus: l.Status})
			}
		}
		for chunk := range slices.Chunk(apply, flushChunk) {
			// The rows read are locked (PostgreSQL) or the database is
			// (SQLite), so each changes as read; a row that did not exist
			// may have been made since, which RETURNING shows: it then
			// has a prior state, or was not updated at all.
			q, p := bootsQuery(d, chunk)
			written, err := db.Collect(ctx, tx, scanUpserted, q, p...)
			if err != nil {
				return nil, fmt.Errorf("upsert liveness: %w", err)
			}
			if len(written) != len(chunk) {
				return nil, errRowRace
			}
			for _, e := range written {
				if !stored[e.NodeID].found && e.PrevState != "" {
					return nil, errRowRace
				}
			}
		}
		res.Recorded, res.Events = len(apply), len(events)
		return entries(events), nil
	})
	return res, err
}

// bootsSet ends RecordBoots' upsert: rows read are overwritten only by a
// boot at least as new.
const bootsSet = liveSet + `, last_seen = excluded.last_seen
	WHERE hb_liveness.last_seen <= excluded.last_seen
	RETURNING node_id, last_seen, boot_id, status, prior_state`

// bootsQuery is the upsert of one chunk of boots: a flush's rows, with
// the boots' conflict clause.
func bootsQuery(d db.Dialect, chunk []Observation) (string, db.Params) {
	return upsertQuery(d, chunk, bootsSet)
}
