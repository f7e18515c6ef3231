package heartbeatstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
)

// concatFlushQuery is how the flush's upsert used to be built, appending
// each row to a string: the reference flushQuery must match.
func concatFlushQuery(d db.Dialect, chunk []Observation) (string, db.Params) {
	q := `INSERT INTO hb_liveness (` + livenessColumns + `) VALUES `
	var p db.Params
	for i, o := range chunk {
		if i > 0 {
			q += ", "
		}
		at := p.Add(d.Time(o.LastSeen))
		q += "(" + p.Add(o.NodeID) + ", " + at + ", " + p.Add(o.Sequence) + ", " + p.Add(o.BootID) + ", " +
			p.Add(string(o.Status)) + ", " + p.Add(o.Uptime.Microseconds()) + ", 'healthy', " + at + ")"
	}
	return q + flushSet, p
}

func observations(n int) []Observation {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	out := make([]Observation, n)
	for i := range out {
		out[i] = Observation{NodeID: fmt.Sprintf("node-%06d", i), LastSeen: t0.Add(time.Duration(i) * time.Millisecond),
			Sequence: int64(i + 1), BootID: "boot", Status: StatusUp, Uptime: time.Duration(i) * time.Second}
	}
	return out
}

// TestFlushQuery: the statement and its parameters are the ones the
// row-by-row construction gave, on both dialects, for one row, a few and
// a full chunk.
func TestFlushQuery(t *testing.T) {
	for _, d := range []db.Dialect{db.SQLite, db.Postgres} {
		for _, n := range []int{1, 3, flushChunk} {
			obs := observations(n)
			q, p := flushQuery(d, obs)
			wq, wp := concatFlushQuery(d, obs)
			if q != wq {
				t.Errorf("%v, %d rows: statement differs:\n%.300s\nwant\n%.300s", d, n, q, wq)
			}
			if fmt.Sprint(p) != fmt.Sprint(wp) {
				t.Errorf("%v, %d rows: parameters differ", d, n)
			}
		}
	}
}

// BenchmarkFlushQuery builds the upsert of one full chunk (2,000 nodes)
// both ways; with -benchmem, B/op is what each flush of that many nodes
// allocated just for its statement.
func BenchmarkFlushQuery(b *testing.B) {
	obs := observations(flushChunk)
	for _, c := range []struct {
		name  string
		build func(db.Dialect, []Observation) (string, db.Params)
	}{{"concat", concatFlushQuery}, {"builder", flushQuery}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.build(db.Postgres, obs)
			}
		})
	}
}
