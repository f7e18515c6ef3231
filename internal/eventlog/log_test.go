package eventlog_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

func TestNewTable(t *testing.T) {
	tb := eventlog.NewTable("reg")
	for _, bad := range []string{"", "Reg", "reg;drop", "1reg", "reg events"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewTable(%q) did not panic", bad)
				}
			}()
			eventlog.NewTable(bad)
		}()
	}
	for _, d := range []db.Dialect{db.Postgres, db.SQLite} {
		if s := eventlog.Schema(d, tb); !strings.Contains(s, "CREATE TABLE reg_events (") || !strings.Contains(s, "CREATE TABLE reg_events_watermark (") {
			t.Errorf("Schema(%s) does not name reg's tables:\n%s", d, s)
		}
	}
}

func TestAppendRead(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		ctx := t.Context()
		diff(t, "empty bounds", eventlog.Bounds{}, bounds(t, f.log))
		p, err := f.log.Read(ctx, eventlog.Query{})
		if err != nil {
			t.Fatal(err)
		}
		diff(t, "empty page", eventlog.Page{}, p)

		f.append(t, ev("n1", "registered", at(0), "status", "pending", "token", "tok1"), ev("n1", "approved", at(time.Second)))
		f.append(t, ev("n2", "registered", at(2*time.Second), "quote", `"a\b"`, "empty", ""))
		f.append(t, ev("n1", "revoked", at(3*time.Second), "actor", "admin:ops"))
		all := readAll(t, f.log)
		checkIncreasing(t, "log", all)
		want := []eventlog.Event{
			{NodeID: "n1", Type: "registered", Time: stored(at(0)), Details: map[string]string{"status": "pending", "token": "tok1"}},
			{NodeID: "n1", Type: "approved", Time: stored(at(time.Second))},
			{NodeID: "n2", Type: "registered", Time: stored(at(2 * time.Second)), Details: map[string]string{"quote": `"a\b"`, "empty": ""}},
			{NodeID: "n1", Type: "revoked", Time: stored(at(3 * time.Second)), Details: map[string]string{"actor": "admin:ops"}},
		}
		for i := range all {
			if all[i].Time.Location() != time.UTC {
				t.Errorf("event %d time %v is not UTC", i, all[i].Time)
			}
			want[i].Cursor = all[i].Cursor
		}
		diff(t, "log", want, all)
		c := cursors(all)
		diff(t, "bounds", eventlog.Bounds{Oldest: c[0], Head: c[3]}, bounds(t, f.log))

		tests := []struct {
			name     string
			q        eventlog.Query
			want     []int64
			wantNext int64
		}{
			{"after a cursor", eventlog.Query{After: c[1]}, c[2:], c[3]},
			{"by node", eventlog.Query{NodeIDs: []string{"n1"}}, []int64{c[0], c[1], c[3]}, c[3]},
			{"by type", eventlog.Query{Types: []string{"registered", "revoked"}}, []int64{c[0], c[2], c[3]}, c[3]},
			{"node and type", eventlog.Query{NodeIDs: []string{"n1", "n9"}, Types: []string{"registered"}}, []int64{c[0]}, c[3]},
			// Next moves past events the filter drops, to the head.
			{"nothing matches", eventlog.Query{NodeIDs: []string{"n9"}}, nil, c[3]},
			{"full page", eventlog.Query{Limit: 2}, c[:2], c[1]},
			{"full filtered page", eventlog.Query{NodeIDs: []string{"n1"}, Limit: 2}, c[:2], c[1]},
			{"at the head", eventlog.Query{After: c[3]}, nil, c[3]},
			{"ahead", eventlog.Query{After: c[3] + 10}, nil, c[3] + 10},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p, err := f.log.Read(ctx, tt.q)
				if err != nil {
					t.Fatal(err)
				}
				diff(t, "cursors", tt.want, cursors(p.Events))
				if p.Next != tt.wantNext {
					t.Errorf("Next = %d, want %d", p.Next, tt.wantNext)
				}
			})
		}
	})
}

func TestAppendInvalid(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		for _, e := range []eventlog.Event{{NodeID: "n1", Time: t0}, {NodeID: "n1", Type: "x"}} {
			// A bad event anywhere in the batch refuses the whole batch.
			if err := f.appendTx(t.Context(), ev("n1", "ok", t0), e); err == nil {
				t.Errorf("append(%+v) succeeded", e)
			}
		}
		if got := readAll(t, f.log); len(got) != 0 {
			t.Errorf("refused appends left %d events", len(got))
		}
	})
}

func TestAppendManyInOrder(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		evs := numbered("n1", 0, 1234) // more than one SQLite chunk
		f.append(t, evs...)
		all := readAll(t, f.log)
		checkIncreasing(t, "log", all)
		want := make([]string, len(evs))
		for i, e := range evs {
			want[i] = e.Type
		}
		diff(t, "types in order", want, types(all))
	})
}

func TestDeleteBefore(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		ctx := t.Context()
		// Times are not in cursor order: the third event is older than the
		// second. Retention deletes a prefix, never a hole.
		f.append(t, ev("n1", "a", at(0)), ev("n1", "b", at(10*time.Second)), ev("n1", "c", at(5*time.Second)), ev("n1", "d", at(20*time.Second)))
		c := cursors(readAll(t, f.log))
		steps := []struct {
			before  time.Duration
			deleted int64
			left    []int64
		}{
			{0, 0, c},                     // nothing older than the first event
			{7 * time.Second, 1, c[1:]},   // "c" is older but follows "b", which is not
			{7 * time.Second, 0, c[1:]},   // again: nothing more
			{15 * time.Second, 2, c[3:]},  // "b" and "c"
			{time.Hour, 1, nil},           // everything
			{2 * time.Hour, 0, []int64{}}, // an empty log
		}
		for i, s := range steps {
			n, err := f.log.DeleteBefore(ctx, at(s.before))
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if n != s.deleted {
				t.Errorf("step %d: deleted %d, want %d", i, n, s.deleted)
			}
			diff(t, "left", len(s.left), len(readAll(t, f.log)))
		}
		// The watermark stays at the newest cursor deleted and cursors are
		// never reused, even though every event is gone.
		diff(t, "bounds after deleting all", eventlog.Bounds{DeletedThrough: c[3], Head: c[3]}, bounds(t, f.log))
		p, err := f.log.Read(ctx, eventlog.Query{})
		if err != nil {
			t.Fatal(err)
		}
		diff(t, "page of an emptied log", eventlog.Page{Next: c[3], DeletedThrough: c[3]}, p)
		f.append(t, ev("n1", "e", at(time.Hour)))
		next := readAll(t, f.log)
		if len(next) != 1 || next[0].Cursor <= c[3] {
			t.Fatalf("append after retention = %+v, want one event after cursor %d", next, c[3])
		}
		diff(t, "bounds", eventlog.Bounds{DeletedThrough: c[3], Oldest: next[0].Cursor, Head: next[0].Cursor}, bounds(t, f.log))
	})
}

// TestDeleteBeforeBatches deletes more events than one retention batch.
func TestDeleteBeforeBatches(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		const n = 12_345
		f.append(t, numbered("n1", 0, n)...)
		f.append(t, ev("n1", "kept", at(time.Duration(n)*time.Second)))
		got, err := f.log.DeleteBefore(context.Background(), at(time.Duration(n)*time.Second))
		if err != nil || got != n {
			t.Fatalf("DeleteBefore = %d, %v; want %d", got, err, n)
		}
		left := readAll(t, f.log)
		diff(t, "left", []string{"kept"}, types(left))
		if b := bounds(t, f.log); b.DeletedThrough != left[0].Cursor-1 {
			t.Errorf("watermark %d, want %d", b.DeletedThrough, left[0].Cursor-1)
		}
	})
}

// TestReplicasShareLog checks that two handles on one database (two
// processes) see one log, and that cursors stay unique across them.
func TestReplicasShareLog(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		g := f.replica(t)
		f.append(t, ev("n1", "a", t0))
		g.append(t, ev("n1", "b", t0))
		f.append(t, ev("n1", "c", t0))
		for _, l := range []eventlog.Source{f.log, g.log} {
			all := readAll(t, l)
			checkIncreasing(t, "log", all)
			diff(t, "types", []string{"a", "b", "c"}, types(all))
		}
		if _, err := g.log.DeleteBefore(t.Context(), at(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if b := bounds(t, f.log); b.DeletedThrough == 0 || b.Oldest != 0 {
			t.Errorf("bounds through the other handle = %+v", b)
		}
	})
}
