package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/regstore"
)

// logOf reads the whole event log; cursors must increase.
// nodeEvents drops the events of no node (such as a test's token_created).
func nodeEvents(evs []eventlog.Event) []eventlog.Event {
	return slices.DeleteFunc(evs, func(e eventlog.Event) bool { return e.NodeID == "" })
}

func logOf(t *testing.T, s regstore.Store) []eventlog.Event {
	t.Helper()
	var (
		out   []eventlog.Event
		after int64
	)
	for {
		p, err := s.Events().Read(ctx(t), eventlog.Query{After: after, Limit: 1000})
		if err != nil {
			t.Fatalf("read events: %v", err)
		}
		for _, e := range p.Events {
			if e.Cursor <= after {
				t.Fatalf("cursor %d follows %d", e.Cursor, after)
			}
			after = e.Cursor
		}
		out = append(out, p.Events...)
		if len(p.Events) < 1000 {
			return out
		}
	}
}

// withoutCursors blanks the cursors, for comparisons.
func withoutCursors(evs []eventlog.Event) []eventlog.Event {
	out := make([]eventlog.Event, len(evs))
	for i, e := range evs {
		e.Cursor = 0
		out[i] = e
	}
	return out
}

func ofType(evs []eventlog.Event, typ string) []eventlog.Event {
	var out []eventlog.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func event(typ, nodeID string, tm time.Time, kv ...string) eventlog.Event {
	e := eventlog.Event{Type: typ, NodeID: nodeID, Time: stored(tm)}
	if len(kv) > 0 {
		e.Details = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Details[kv[i]] = kv[i+1]
		}
	}
	return e
}

// newEvents runs fn and returns the events it appended.
func newEvents(t *testing.T, s regstore.Store, fn func()) []eventlog.Event {
	t.Helper()
	before := len(logOf(t, s))
	fn()
	return logOf(t, s)[before:]
}

// testEventsWithChanges walks a node through its life: each change appends
// its event, with its details, and changes that change nothing append
// nothing.
func testEventsWithChanges(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	auto := token("auto", 10)
	auto.AutoApprove = true
	mustCreateToken(t, s, auto)
	c1, c2 := cert("aa01"), cert("aa02")
	c2.NotAfter = at(48 * time.Hour)
	notAfter := func(c regstore.Cert) string { return c.NotAfter.UTC().Format(time.RFC3339) }
	stWhy := func(from []regstore.Status, to regstore.Status, d time.Duration, reason string) func() {
		return func() {
			n, err := s.SetStatus(ctx(t), "n1", from, to, at(d), admin, reason)
			if err != nil {
				t.Fatalf("SetStatus(%s): %v", to, err)
			}
			if n.StatusReason != reason {
				t.Errorf("SetStatus(%s, %q): StatusReason %q", to, reason, n.StatusReason)
			}
		}
	}
	st := func(from []regstore.Status, to regstore.Status, d time.Duration) func() {
		return stWhy(from, to, d, "")
	}
	every := []regstore.Status{regstore.StatusPending, regstore.StatusApproved, regstore.StatusRejected, regstore.StatusRevoked}
	steps := []struct {
		name string
		do   func()
		want []eventlog.Event
	}{
		{"register", func() { mustRegister(t, s, "tok", t0, node("n1", 1)) },
			[]eventlog.Event{event(regstore.EventRegistered, "n1", t0, "status", "pending", "token", "tok", "hostname", "host-1",
				"identity_source", "tpm")}},
		{"register approved, no hostname", func() {
			n := node("n2", 2)
			n.Status, n.Hostname, n.IdentitySource = regstore.StatusApproved, "", ""
			mustRegister(t, s, "auto", at(time.Second), n)
		}, []eventlog.Event{event(regstore.EventRegistered, "n2", at(time.Second), "status", "approved", "token", "auto")}},
		{"reject", stWhy(every, regstore.StatusRejected, time.Minute, "unknown rack"),
			[]eventlog.Event{event(regstore.EventRejected, "n1", at(time.Minute), "status", "rejected", "previous_status", "pending", "actor", admin,
				"reason", "unknown rack")}},
		{"reject again, same reason", stWhy(every, regstore.StatusRejected, time.Minute, "unknown rack"), nil},
		// A new reason is a change, recorded; the status stays.
		{"reject again, new reason", stWhy(every, regstore.StatusRejected, time.Minute, "cloned disk"),
			[]eventlog.Event{event(regstore.EventRejected, "n1", at(time.Minute), "status", "rejected", "previous_status", "rejected", "actor", admin,
				"reason", "cloned disk")}},
		// Approval clears the reason.
		{"approve", st(every, regstore.StatusApproved, 2*time.Minute),
			[]eventlog.Event{event(regstore.EventApproved, "n1", at(2*time.Minute), "status", "approved", "previous_status", "rejected", "actor", admin)}},
		{"approve again", st(every, regstore.StatusApproved, 3*time.Minute), nil},
		{"first certificate", func() {
			if _, err := issue(t, s, "n1", "", c1, at(4*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{event(regstore.EventCertificateIssued, "n1", at(4*time.Minute), "serial", "aa01", "not_after", notAfter(c1))}},
		{"renewal", func() {
			if _, err := issue(t, s, "n1", "aa01", c2, at(5*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{event(regstore.EventCertificateRenewed, "n1", at(5*time.Minute), "serial", "aa02", "not_after", notAfter(c2), "previous_serial", "aa01")}},
		{"allow replacement", func() {
			if _, err := s.AllowReplacement(ctx(t), "n1", at(6*time.Minute), admin); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{event(regstore.EventReplacementAllowed, "n1", at(6*time.Minute), "actor", admin)}},
		{"allow replacement again", func() {
			if _, err := s.AllowReplacement(ctx(t), "n1", at(6*time.Minute+time.Second), admin); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"revoke", st(every, regstore.StatusRevoked, 7*time.Minute),
			[]eventlog.Event{event(regstore.EventRevoked, "n1", at(7*time.Minute), "status", "revoked", "previous_status", "approved", "actor", admin)}},
		{"revoke again", st(every, regstore.StatusRevoked, 8*time.Minute), nil},
		{"back to pending", st(every, regstore.StatusPending, 9*time.Minute),
			[]eventlog.Event{event(regstore.EventPending, "n1", at(9*time.Minute), "status", "pending", "previous_status", "revoked", "actor", admin)}},
		{"delete", func() {
			if err := s.DeleteNode(ctx(t), "n1", at(10*time.Minute), admin); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{event(regstore.EventDeleted, "n1", at(10*time.Minute), "actor", admin)}},
		{"delete without actor", func() {
			if err := s.DeleteNode(ctx(t), "n2", at(11*time.Minute), ""); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{event(regstore.EventDeleted, "n2", at(11*time.Minute))}},
		{"tokens", func() {
			tok := token("tok2", 1)
			tok.CreatedBy = admin
			mustCreateToken(t, s, tok)
			if _, err := s.RevokeToken(ctx(t), "tok2", at(12*time.Minute), admin); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{
			event(regstore.EventTokenCreated, "", token("tok2", 1).CreatedAt, "token", "tok2", "actor", admin),
			event(regstore.EventTokenRevoked, "", at(12*time.Minute), "token", "tok2", "actor", admin)}},
		{"token revoked again", func() {
			if _, err := s.RevokeToken(ctx(t), "tok2", at(13*time.Minute), admin); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"token refused: taken ID", func() {
			if err := s.CreateToken(ctx(t), token("tok2", 1)); !errors.Is(err, regstore.ErrConflict) {
				t.Fatalf("CreateToken of a taken ID: %v, want ErrConflict", err)
			}
		}, nil},
		{"EKs imported", func() {
			if _, _, err := s.ImportEKs(ctx(t), []regstore.EnrolledEK{{Hash: "sha256:e1"}, {Hash: "sha256:e2"}}, at(14*time.Minute), admin); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.ImportEKs(ctx(t), []regstore.EnrolledEK{{Hash: "sha256:e2", Label: "rack 2"}}, at(15*time.Minute), admin); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{
			event(regstore.EventEKsImported, "", at(14*time.Minute), "added", "2", "updated", "0", "actor", admin),
			event(regstore.EventEKsImported, "", at(15*time.Minute), "added", "0", "updated", "1", "actor", admin)}},
		{"PCR policy set and deleted", func() {
			p := regstore.PCRPolicy{LabelKey: "image", LabelValue: "node-4.5", Digests: []string{"sha256:" + strings.Repeat("ab", 32)}, Enforce: true, UpdatedAt: at(16 * time.Minute)}
			if _, err := s.SetPCRPolicy(ctx(t), p, admin); err != nil {
				t.Fatal(err)
			}
			if err := s.DeletePCRPolicy(ctx(t), "image", "node-4.5", at(17*time.Minute), admin); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{
			event(regstore.EventPCRPolicySet, "", at(16*time.Minute), "label", "image=node-4.5", "enforce", "true", "actor", admin),
			event(regstore.EventPCRPolicyDeleted, "", at(17*time.Minute), "label", "image=node-4.5", "actor", admin)}},
		{"PCR policy refused: none to delete", func() {
			if err := s.DeletePCRPolicy(ctx(t), "image", "node-4.5", at(18*time.Minute), admin); !errors.Is(err, regstore.ErrNotFound) {
				t.Fatalf("DeletePCRPolicy of no policy: %v, want ErrNotFound", err)
			}
		}, nil},
	}
	for _, step := range steps {
		got := newEvents(t, s, step.do)
		for _, e := range got {
			checkUTC(t, e.Time)
		}
		diff(t, step.name, step.want, withoutCursors(got))
	}
	for _, e := range logOf(t, s) {
		found := false
		for _, typ := range regstore.EventTypes() {
			found = found || e.Type == typ
		}
		if !found {
			t.Errorf("event type %q is not in EventTypes", e.Type)
		}
	}
}

func testEventsReplace(t *testing.T, s regstore.Store) {
	replaceable(t, s)
	repl := node("ignored-id", 2)
	repl.Status = regstore.StatusApproved
	got := newEvents(t, s, func() {
		if _, err := s.RegisterNode(ctx(t), "tok2", at(30*time.Minute), repl, "old"); err != nil {
			t.Fatal(err)
		}
	})
	diff(t, "replace", []eventlog.Event{
		event(regstore.EventReplaced, "old", at(30*time.Minute), "status", "approved", "token", "tok2", "hostname", "host-2",
			"identity_source", "file"),
	}, withoutCursors(got))
}

// testEventsNotOnErrors makes every refused change and checks that none of
// them appended an event.
func testEventsNotOnErrors(t *testing.T, s regstore.Store) {
	old := replaceable(t, s) // tok1 used up, tok2 with 5 uses
	mustCreateToken(t, s, regstore.Token{ID: "expired", SecretHash: key(0), ExpiresAt: t0, UsesLeft: 1, CreatedAt: t0})
	mustRegister(t, s, "tok2", t0, node("other", 3))
	before := logOf(t, s)
	now := at(time.Minute)
	dup := node("dup", 9)
	dup.KeySHA256 = key(3)
	bad := node("", 10)
	fails := map[string]func() error{
		"unknown token": func() error {
			_, err := s.RegisterNode(ctx(t), "nope", now, node("x1", 11), "")
			return err
		},
		"used-up token": func() error { _, err := s.RegisterNode(ctx(t), "tok1", now, node("x2", 12), ""); return err },
		"expired token": func() error { _, err := s.RegisterNode(ctx(t), "expired", now, node("x3", 13), ""); return err },
		"duplicate key": func() error { _, err := s.RegisterNode(ctx(t), "tok2", now, dup, ""); return err },
		"duplicate ID":  func() error { _, err := s.RegisterNode(ctx(t), "tok2", now, node("other", 14), ""); return err },
		"malformed":     func() error { _, err := s.RegisterNode(ctx(t), "tok2", now, bad, ""); return err },
		"replace unknown": func() error {
			_, err := s.RegisterNode(ctx(t), "tok2", now, node("x4", 15), "nope")
			return err
		},
		"replace not allowed": func() error {
			_, err := s.RegisterNode(ctx(t), "tok2", now, node("x5", 16), "other")
			return err
		},
		"status precondition": func() error {
			_, err := s.SetStatus(ctx(t), old.ID, []regstore.Status{regstore.StatusRevoked}, regstore.StatusApproved, now, "admin:x", "")
			return err
		},
		"status no from": func() error {
			_, err := s.SetStatus(ctx(t), old.ID, nil, regstore.StatusApproved, now, "admin:x", "")
			return err
		},
		"status unknown node": func() error {
			_, err := s.SetStatus(ctx(t), "nope", []regstore.Status{regstore.StatusPending}, regstore.StatusApproved, now, "admin:x", "")
			return err
		},
		"status unknown target": func() error {
			_, err := s.SetStatus(ctx(t), old.ID, []regstore.Status{regstore.StatusPending}, "sleeping", now, "admin:x", "")
			return err
		},
		"certificate conflict": func() error {
			_, err := issue(t, s, old.ID, "", cert("bb01"), now)
			return err
		},
		"certificate unknown node": func() error {
			_, err := issue(t, s, "nope", "", cert("bb02"), now)
			return err
		},
		"certificate without serial": func() error {
			_, err := issue(t, s, old.ID, "aa01", cert(""), now)
			return err
		},
		"delete unknown": func() error { return s.DeleteNode(ctx(t), "nope", now, "admin:x") },
	}
	for name, fn := range fails {
		if err := fn(); err == nil {
			t.Errorf("%s: succeeded", name)
		}
	}
	diff(t, "log after refused changes", before, logOf(t, s))
}

func testEventsRetention(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	for i := range 4 {
		mustRegister(t, s, "tok", at(time.Duration(i)*time.Minute), node(string(rune('a'+i)), i))
	}
	all := logOf(t, s) // the token's token_created, then a, b, c, d registered
	n, err := s.Events().DeleteBefore(ctx(t), at(2*time.Minute))
	if err != nil || n != 3 {
		t.Fatalf("DeleteBefore = %d, %v; want 3", n, err)
	}
	b, err := s.Events().Bounds(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "bounds", eventlog.Bounds{DeletedThrough: all[2].Cursor, Oldest: all[3].Cursor, Head: all[4].Cursor}, b)
	diff(t, "kept", all[3:], logOf(t, s))
}

// testEventsWatch checks that a change wakes this process's watchers at
// once, and that a follower sees it.
func testEventsWatch(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	woken := s.Events().Appended()
	mustRegister(t, s, "tok", t0, node("n1", 1))
	select {
	case <-woken:
	default:
		t.Fatal("RegisterNode did not wake watchers")
	}
	fl, err := eventlog.NewFollower(eventlog.FollowerConfig{Source: s.Events()})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	got := make(chan eventlog.Event, 10)
	go fl.Watch(wctx, eventlog.WatchRequest{}, func(e eventlog.Event) error { got <- e; return nil })
	for _, want := range []string{regstore.EventTokenCreated, regstore.EventRegistered, regstore.EventApproved} {
		if want == regstore.EventApproved {
			if _, err := s.SetStatus(ctx(t), "n1", []regstore.Status{regstore.StatusPending}, regstore.StatusApproved, at(time.Minute), "", ""); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case e := <-got:
			if e.Type != want {
				t.Fatalf("watch sent %s, want %s", e.Type, want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("watch did not send %s", want)
		}
	}
}
