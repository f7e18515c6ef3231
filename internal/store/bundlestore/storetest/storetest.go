// Package storetest is the conformance suite every bundlestore.Store
// implementation must pass. Run it from each backend's tests:
//
//	storetest.Run(t, func(t *testing.T) bundlestore.Store { ... })
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berth-dev/berth/internal/store/bundlestore"
)

// Run runs every test against stores made by newStore. Each call to newStore
// must return a store on a fresh, empty database, closed when t ends.
func Run(t *testing.T, newStore func(t *testing.T) bundlestore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s bundlestore.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"NotFound", testNotFound},
		{"CompareAndSwap", testCompareAndSwap},
		{"VersionsPerNode", testVersionsPerNode},
		{"ApprovalHold", testApprovalHold},
		{"FirstUploadHeld", testFirstUploadHeld},
		{"Approve", testApprove},
		{"ReplacePending", testReplacePending},
		{"Reset", testReset},
		{"PutVersion", testPutVersion},
		{"PutVersionRacesReset", testPutVersionRacesReset},
		{"HistoryTrim", testHistoryTrim},
		{"HistoryKeepsLiveVersions", testHistoryKeepsLiveVersions},
		{"Delete", testDelete},
		{"ListCurrent", testListCurrent},
		{"Malformed", testMalformed},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ConcurrentFirstPuts", testConcurrentFirstPuts},
		{"ConcurrentHeldUploads", testConcurrentHeldUploads},
		{"EventsWithChanges", testEventsWithChanges},
		{"EventsNotOnErrors", testEventsNotOnErrors},
		{"EventsConcurrentNodes", testEventsConcurrentNodes},
		{"EventsRetention", testEventsRetention},
		{"ApprovalPolicy", testApprovalPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// t0 has nanoseconds and a non-UTC zone on purpose: stores must return the
// same instant in UTC, truncated to microseconds.
var t0 = time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))

func at(d time.Duration) time.Time { return t0.Add(d) }

func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// bundle is a test bundle; n makes its content and digest unique.
func bundle(n int) bundlestore.Bundle {
	sealed := fmt.Appendf(nil, "BERTHBDL sealed bundle %d \x00\xff", n)
	return bundlestore.Bundle{
		Meta: bundlestore.Meta{
			Digest:    fmt.Sprintf("%064x", n),
			KEMID:     0x647a,
			Author:    "admin:admin",
			CreatedAt: at(time.Duration(n) * time.Minute),
		},
		Sealed: sealed,
	}
}

// want is b as the store returns it after storing it as version v in state st.
func want(nodeID string, v int64, st bundlestore.State, b bundlestore.Bundle) bundlestore.Bundle {
	b.NodeID, b.Version, b.State, b.Size, b.CreatedAt = nodeID, v, st, int64(len(b.Sealed)), stored(b.CreatedAt)
	return b
}

var (
	approvedOnly = bundlestore.PutOptions{}
	held         = bundlestore.PutOptions{RequireApproval: true}
	admin        = bundlestore.PutOptions{ReplacePending: true}
)

func mustPut(t *testing.T, s bundlestore.Store, nodeID string, expected int64, b bundlestore.Bundle, opts bundlestore.PutOptions) bundlestore.Bundle {
	t.Helper()
	got, err := s.Put(t.Context(), nodeID, expected, b, opts)
	if err != nil {
		t.Fatalf("Put(%s, expected %d): %v", nodeID, expected, err)
	}
	return got
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

// snapshot is everything the store says about a node.
type snapshot struct {
	Current, Pending       *bundlestore.Bundle
	History                []bundlestore.Meta
	CurrentErr, PendingErr string
}

func snap(t *testing.T, s bundlestore.Store, nodeID string) snapshot {
	t.Helper()
	var out snapshot
	if b, err := s.Get(t.Context(), nodeID); err == nil {
		out.Current = &b
	} else if !errors.Is(err, bundlestore.ErrNotFound) {
		t.Fatalf("Get(%s): %v", nodeID, err)
	}
	if b, err := s.Pending(t.Context(), nodeID); err == nil {
		out.Pending = &b
	} else if !errors.Is(err, bundlestore.ErrNotFound) {
		t.Fatalf("Pending(%s): %v", nodeID, err)
	}
	h, err := s.History(t.Context(), nodeID)
	if err != nil {
		t.Fatalf("History(%s): %v", nodeID, err)
	}
	out.History = h
	return out
}

// unchanged fails if the node's state differs from before.
func unchanged(t *testing.T, s bundlestore.Store, nodeID string, before snapshot) {
	t.Helper()
	diff(t, "state after a refused call", before, snap(t, s, nodeID))
}

// versions lists the history as "version:state", newest first.
func versions(t *testing.T, s bundlestore.Store, nodeID string) []string {
	t.Helper()
	h, err := s.History(t.Context(), nodeID)
	if err != nil {
		t.Fatalf("History(%s): %v", nodeID, err)
	}
	var out []string
	for _, m := range h {
		out = append(out, fmt.Sprintf("%d:%s", m.Version, m.State))
	}
	return out
}

func checkUTC(t *testing.T, times ...time.Time) {
	t.Helper()
	for _, tm := range times {
		if tm.Location() != time.UTC {
			t.Errorf("time %v is in %v, want UTC", tm, tm.Location())
		}
	}
}

func testRoundTrip(t *testing.T, s bundlestore.Store) {
	in := bundle(1)
	got := mustPut(t, s, "node-a", 0, in, approvedOnly)
	w := want("node-a", 1, bundlestore.StateApproved, in)
	diff(t, "Put", w, got)
	cur, err := s.Get(t.Context(), "node-a")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	diff(t, "Get", w, cur)
	checkUTC(t, cur.CreatedAt)
	h, err := s.History(t.Context(), "node-a")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	diff(t, "History", []bundlestore.Meta{w.Meta}, h)
	checkUTC(t, h[0].CreatedAt)

	// Content of the size the service allows by default survives intact.
	big := bundle(2)
	big.Sealed = make([]byte, 1<<20)
	for i := range big.Sealed {
		big.Sealed[i] = byte(i * 7)
	}
	mustPut(t, s, "node-b", 0, big, approvedOnly)
	cur, err = s.Get(t.Context(), "node-b")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	// Compared apart: cmp walks a byte slice one element at a time.
	diff(t, "Get of 1 MiB", want("node-b", 1, bundlestore.StateApproved, big).Meta, cur.Meta)
	if !bytes.Equal(cur.Sealed, big.Sealed) {
		t.Error("Get of 1 MiB returned other content")
	}
}

func testNotFound(t *testing.T, s bundlestore.Store) {
	ctx := t.Context()
	_, err := s.Get(ctx, "node-x")
	wantErr(t, "Get", err, bundlestore.ErrNotFound)
	_, err = s.Pending(ctx, "node-x")
	wantErr(t, "Pending", err, bundlestore.ErrNotFound)
	_, err = s.Approve(ctx, "node-x", 1, "admin:ops", t0)
	wantErr(t, "Approve", err, bundlestore.ErrNotFound)
	_, err = s.Reset(ctx, "node-x", "admin:admin", t0, 0)
	wantErr(t, "Reset", err, bundlestore.ErrNotFound)
	if err := s.Delete(ctx, "node-x", "admin:ops", t0); err != nil {
		t.Errorf("Delete of a node without bundles: %v", err)
	}
	h, err := s.History(ctx, "node-x")
	if err != nil || len(h) != 0 {
		t.Errorf("History = %v, %v; want none", h, err)
	}
	// The refused calls left no trace: the first version is still 1.
	if got := mustPut(t, s, "node-x", 0, bundle(1), approvedOnly); got.Version != 1 {
		t.Errorf("first version after refused calls = %d, want 1", got.Version)
	}
}

func testCompareAndSwap(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	before := snap(t, s, "node-a")
	for _, expected := range []int64{0, 2, 7} {
		_, err := s.Put(t.Context(), "node-a", expected, bundle(9), approvedOnly)
		wantErr(t, fmt.Sprintf("Put(expected %d)", expected), err, bundlestore.ErrStale)
		unchanged(t, s, "node-a", before)
	}
	got := mustPut(t, s, "node-a", 1, bundle(2), approvedOnly)
	diff(t, "Put(expected 1)", want("node-a", 2, bundlestore.StateApproved, bundle(2)), got)
	diff(t, "history", []string{"2:approved", "1:superseded"}, versions(t, s, "node-a"))
	// The one that was current is stale now.
	before = snap(t, s, "node-a")
	_, err := s.Put(t.Context(), "node-a", 1, bundle(3), approvedOnly)
	wantErr(t, "Put(expected 1) again", err, bundlestore.ErrStale)
	unchanged(t, s, "node-a", before)
	// Held uploads compare and swap too.
	_, err = s.Put(t.Context(), "node-a", 1, bundle(3), held)
	wantErr(t, "held Put(expected 1)", err, bundlestore.ErrStale)
	unchanged(t, s, "node-a", before)
	// So do administrator writes.
	_, err = s.Put(t.Context(), "node-a", 0, bundle(3), admin)
	wantErr(t, "admin Put(expected 0)", err, bundlestore.ErrStale)
	unchanged(t, s, "node-a", before)
}

func testVersionsPerNode(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	mustPut(t, s, "node-a", 1, bundle(2), approvedOnly)
	if got := mustPut(t, s, "node-b", 0, bundle(3), approvedOnly); got.Version != 1 {
		t.Errorf("node-b's first version = %d, want 1", got.Version)
	}
	cur, err := s.Get(t.Context(), "node-a")
	if err != nil || cur.Version != 2 || string(cur.Sealed) != string(bundle(2).Sealed) {
		t.Errorf("node-a's current = %d (%v), want version 2", cur.Version, err)
	}
}

func testApprovalHold(t *testing.T, s bundlestore.Store) {
	v1 := mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	v2 := mustPut(t, s, "node-a", 1, bundle(2), held)
	diff(t, "held Put", want("node-a", 2, bundlestore.StatePending, bundle(2)), v2)

	// The node keeps getting the approved version.
	cur, err := s.Get(t.Context(), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "Get while pending", v1, cur)
	p, err := s.Pending(t.Context(), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "Pending", v2, p)
	diff(t, "history", []string{"2:pending", "1:approved"}, versions(t, s, "node-a"))

	// No other upload while one waits, whatever it expects and whether or
	// not it would be held; nothing changes.
	before := snap(t, s, "node-a")
	for _, tt := range []struct {
		expected int64
		opts     bundlestore.PutOptions
	}{{1, held}, {1, approvedOnly}, {2, held}, {0, approvedOnly}} {
		_, err := s.Put(t.Context(), "node-a", tt.expected, bundle(3), tt.opts)
		wantErr(t, fmt.Sprintf("Put(expected %d, %+v) while pending", tt.expected, tt.opts), err, bundlestore.ErrPendingExists)
		unchanged(t, s, "node-a", before)
	}

	got, err := s.Approve(t.Context(), "node-a", 2, "admin:ops", t0)
	if err != nil {
		t.Fatalf("Approve: %v", err)
	}
	diff(t, "Approve", want("node-a", 2, bundlestore.StateApproved, bundle(2)), got)
	cur, err = s.Get(t.Context(), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "Get after approval", got, cur)
	_, err = s.Pending(t.Context(), "node-a")
	wantErr(t, "Pending after approval", err, bundlestore.ErrNotFound)
	diff(t, "history", []string{"2:approved", "1:superseded"}, versions(t, s, "node-a"))
	// Uploads are accepted again, against the approved version.
	if got := mustPut(t, s, "node-a", 2, bundle(3), held); got.Version != 3 {
		t.Errorf("next upload is version %d, want 3", got.Version)
	}
}

func testFirstUploadHeld(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), held)
	_, err := s.Get(t.Context(), "node-a")
	wantErr(t, "Get with only a pending version", err, bundlestore.ErrNotFound)
	if _, err := s.Approve(t.Context(), "node-a", 1, "admin:ops", t0); err != nil {
		t.Fatalf("Approve: %v", err)
	}
	cur, err := s.Get(t.Context(), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "Get after approval", want("node-a", 1, bundlestore.StateApproved, bundle(1)), cur)
	diff(t, "history", []string{"1:approved"}, versions(t, s, "node-a"))
}

func testApprove(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	mustPut(t, s, "node-a", 1, bundle(2), approvedOnly)
	mustPut(t, s, "node-a", 2, bundle(3), held)
	before := snap(t, s, "node-a")
	tests := []struct {
		version int64
		want    error
	}{
		{1, bundlestore.ErrNotPending}, // superseded
		{4, bundlestore.ErrNotFound},
		{0, bundlestore.ErrNotFound},
		{-1, bundlestore.ErrNotFound},
	}
	for _, tt := range tests {
		_, err := s.Approve(t.Context(), "node-a", tt.version, "admin:ops", t0)
		wantErr(t, fmt.Sprintf("Approve(%d)", tt.version), err, tt.want)
		unchanged(t, s, "node-a", before)
	}
	// Approving the current version is a no-op that returns it.
	got, err := s.Approve(t.Context(), "node-a", 2, "admin:ops", t0)
	if err != nil {
		t.Fatalf("Approve(current): %v", err)
	}
	diff(t, "Approve(current)", want("node-a", 2, bundlestore.StateApproved, bundle(2)), got)
	unchanged(t, s, "node-a", before)
	// Approving twice is too.
	first, err := s.Approve(t.Context(), "node-a", 3, "admin:ops", t0)
	if err != nil {
		t.Fatal(err)
	}
	after := snap(t, s, "node-a")
	again, err := s.Approve(t.Context(), "node-a", 3, "admin:ops", t0)
	if err != nil {
		t.Fatalf("Approve again: %v", err)
	}
	diff(t, "Approve again", first, again)
	unchanged(t, s, "node-a", after)
	diff(t, "history", []string{"3:approved", "2:superseded", "1:superseded"}, versions(t, s, "node-a"))
	// Another node's versions are not this node's.
	_, err = s.Approve(t.Context(), "node-b", 3, "admin:ops", t0)
	wantErr(t, "Approve(node-b, 3)", err, bundlestore.ErrNotFound)
}

func testReplacePending(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	mustPut(t, s, "node-a", 1, bundle(2), held)
	// A stale administrator write is refused even though it may replace
	// the pending version.
	before := snap(t, s, "node-a")
	_, err := s.Put(t.Context(), "node-a", 2, bundle(3), admin)
	wantErr(t, "admin Put(expected 2)", err, bundlestore.ErrStale)
	unchanged(t, s, "node-a", before)

	got := mustPut(t, s, "node-a", 1, bundle(3), admin)
	diff(t, "admin Put", want("node-a", 3, bundlestore.StateApproved, bundle(3)), got)
	_, err = s.Pending(t.Context(), "node-a")
	wantErr(t, "Pending after admin write", err, bundlestore.ErrNotFound)
	diff(t, "history", []string{"3:approved", "2:superseded", "1:superseded"}, versions(t, s, "node-a"))
	// The dropped upload cannot be approved any more.
	_, err = s.Approve(t.Context(), "node-a", 2, "admin:ops", t0)
	wantErr(t, "Approve(dropped)", err, bundlestore.ErrNotPending)
}

func testReset(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	mustPut(t, s, "node-a", 1, bundle(2), held)
	m, err := s.Reset(t.Context(), "node-a", "admin:ops", at(time.Hour), 0)
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	diff(t, "Reset", bundlestore.Meta{NodeID: "node-a", Version: 3, State: bundlestore.StateReset, Author: "admin:ops", CreatedAt: stored(at(time.Hour))}, m)
	checkUTC(t, m.CreatedAt)
	_, err = s.Get(t.Context(), "node-a")
	wantErr(t, "Get after reset", err, bundlestore.ErrNotFound)
	_, err = s.Pending(t.Context(), "node-a")
	wantErr(t, "Pending after reset", err, bundlestore.ErrNotFound)
	h, err := s.History(t.Context(), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "history after reset", []bundlestore.Meta{
		m,
		want("node-a", 2, bundlestore.StateSuperseded, bundle(2)).Meta,
		want("node-a", 1, bundlestore.StateSuperseded, bundle(1)).Meta,
	}, h)

	// Nothing left to reset: refused, nothing changes.
	before := snap(t, s, "node-a")
	_, err = s.Reset(t.Context(), "node-a", "admin:ops", at(2*time.Hour), 0)
	wantErr(t, "Reset again", err, bundlestore.ErrNotFound)
	unchanged(t, s, "node-a", before)
	// The node starts over: the next write expects no version.
	_, err = s.Put(t.Context(), "node-a", 1, bundle(4), approvedOnly)
	wantErr(t, "Put(expected 1) after reset", err, bundlestore.ErrStale)
	unchanged(t, s, "node-a", before)
	got := mustPut(t, s, "node-a", 0, bundle(4), approvedOnly)
	diff(t, "Put after reset", want("node-a", 4, bundlestore.StateApproved, bundle(4)), got)

	// A node with only a pending version can be reset too.
	mustPut(t, s, "node-b", 0, bundle(5), held)
	if _, err := s.Reset(t.Context(), "node-b", "admin:ops", t0, 0); err != nil {
		t.Fatalf("Reset of a pending-only bundle: %v", err)
	}
	diff(t, "node-b history", []string{"2:reset", "1:superseded"}, versions(t, s, "node-b"))
}

func testHistoryTrim(t *testing.T, s bundlestore.Store) {
	for v := int64(1); v <= 6; v++ {
		mustPut(t, s, "node-a", v-1, bundle(int(v)), bundlestore.PutOptions{Keep: 3})
	}
	diff(t, "history, keep 3", []string{"6:approved", "5:superseded", "4:superseded"}, versions(t, s, "node-a"))
	// Resets count as versions and are trimmed alike.
	if _, err := s.Reset(t.Context(), "node-a", "admin:ops", t0, 2); err != nil {
		t.Fatal(err)
	}
	diff(t, "history after reset, keep 2", []string{"7:reset", "6:superseded"}, versions(t, s, "node-a"))
	// Keep 0 means the default.
	for v := int64(8); v <= 8+bundlestore.DefaultKeep; v++ {
		expected := v - 1
		if v == 8 {
			expected = 0
		}
		mustPut(t, s, "node-a", expected, bundle(int(v)), bundlestore.PutOptions{})
	}
	h := versions(t, s, "node-a")
	if len(h) != bundlestore.DefaultKeep || h[0] != fmt.Sprintf("%d:approved", 8+bundlestore.DefaultKeep) {
		t.Errorf("history with the default keep = %v, want the %d newest", h, bundlestore.DefaultKeep)
	}
	// Trimming one node leaves the others alone.
	mustPut(t, s, "node-b", 0, bundle(1), approvedOnly)
	mustPut(t, s, "node-b", 1, bundle(2), approvedOnly)
	mustPut(t, s, "node-a", 8+bundlestore.DefaultKeep, bundle(99), bundlestore.PutOptions{Keep: 1})
	diff(t, "node-b history", []string{"2:approved", "1:superseded"}, versions(t, s, "node-b"))
	diff(t, "node-a history, keep 1", []string{fmt.Sprintf("%d:approved", 9+bundlestore.DefaultKeep)}, versions(t, s, "node-a"))
}

func testHistoryKeepsLiveVersions(t *testing.T, s bundlestore.Store) {
	one := bundlestore.PutOptions{Keep: 1}
	mustPut(t, s, "node-a", 0, bundle(1), one)
	mustPut(t, s, "node-a", 1, bundle(2), one)
	mustPut(t, s, "node-a", 2, bundle(3), bundlestore.PutOptions{Keep: 1, RequireApproval: true})
	// Version 2 is outside the window but current: it stays, with its content.
	diff(t, "history", []string{"3:pending", "2:approved"}, versions(t, s, "node-a"))
	cur, err := s.Get(t.Context(), "node-a")
	if err != nil || cur.Version != 2 || string(cur.Sealed) != string(bundle(2).Sealed) {
		t.Errorf("Get = version %d (%v), want 2", cur.Version, err)
	}
}

func testDelete(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	mustPut(t, s, "node-a", 1, bundle(2), held)
	mustPut(t, s, "node-b", 0, bundle(3), approvedOnly)
	nodeB := snap(t, s, "node-b")
	if err := s.Delete(t.Context(), "node-a", "admin:ops", t0); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	diff(t, "node-a after Delete", snapshot{}, snap(t, s, "node-a"))
	unchanged(t, s, "node-b", nodeB)
	if err := s.Delete(t.Context(), "node-a", "admin:ops", t0); err != nil {
		t.Errorf("Delete again: %v", err)
	}
	// A node registered again under the same ID starts from version 1.
	if got := mustPut(t, s, "node-a", 0, bundle(4), approvedOnly); got.Version != 1 {
		t.Errorf("first version after Delete = %d, want 1", got.Version)
	}
}

func testMalformed(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	before := snap(t, s, "node-a")
	edit := func(f func(*bundlestore.Bundle)) bundlestore.Bundle {
		b := bundle(2)
		f(&b)
		return b
	}
	tests := []struct {
		name     string
		nodeID   string
		expected int64
		b        bundlestore.Bundle
	}{
		{"no content", "node-a", 1, edit(func(b *bundlestore.Bundle) { b.Sealed = nil })},
		{"no digest", "node-a", 1, edit(func(b *bundlestore.Bundle) { b.Digest = "" })},
		{"no author", "node-a", 1, edit(func(b *bundlestore.Bundle) { b.Author = "" })},
		{"no time", "node-a", 1, edit(func(b *bundlestore.Bundle) { b.CreatedAt = time.Time{} })},
		{"negative expected version", "node-a", -1, bundle(2)},
		{"no node", "", 0, bundle(2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Put(t.Context(), tt.nodeID, tt.expected, tt.b, approvedOnly)
			if err == nil || errors.Is(err, bundlestore.ErrStale) || errors.Is(err, bundlestore.ErrNotFound) {
				t.Fatalf("Put: err = %v, want a plain error", err)
			}
			unchanged(t, s, "node-a", before)
		})
	}
	if _, err := s.Reset(t.Context(), "node-a", "", t0, 0); err == nil {
		t.Error("Reset without an author succeeded")
	}
	unchanged(t, s, "node-a", before)
}

// race runs n calls of fn at once and returns their errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts nil errors and errors matching each of want, and fails on
// any other error.
func tally(t *testing.T, errs []error, want ...error) (ok int, counts []int) {
	t.Helper()
	counts = make([]int, len(want))
next:
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		for i, w := range want {
			if errors.Is(err, w) {
				counts[i]++
				continue next
			}
		}
		t.Errorf("unexpected error: %v", err)
	}
	return ok, counts
}

func testConcurrentPuts(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	const n = 8
	errs := race(n, func(i int) error {
		_, err := s.Put(t.Context(), "node-a", 1, bundle(10+i), approvedOnly)
		return err
	})
	if ok, stale := tally(t, errs, bundlestore.ErrStale); ok != 1 || stale[0] != n-1 {
		t.Errorf("%d writes succeeded and %d were stale, want 1 and %d", ok, stale[0], n-1)
	}
	diff(t, "history", []string{"2:approved", "1:superseded"}, versions(t, s, "node-a"))
	diff(t, "events", []string{"bundle_updated 1", "bundle_updated 2"}, eventSummary(logOf(t, s)))
}

func testConcurrentFirstPuts(t *testing.T, s bundlestore.Store) {
	const n = 8
	errs := race(n, func(i int) error {
		_, err := s.Put(t.Context(), "node-a", 0, bundle(10+i), approvedOnly)
		return err
	})
	if ok, stale := tally(t, errs, bundlestore.ErrStale); ok != 1 || stale[0] != n-1 {
		t.Errorf("%d first writes succeeded and %d were stale, want 1 and %d", ok, stale[0], n-1)
	}
	diff(t, "history", []string{"1:approved"}, versions(t, s, "node-a"))
}

func testConcurrentHeldUploads(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	const n = 8
	errs := race(n, func(i int) error {
		_, err := s.Put(t.Context(), "node-a", 1, bundle(10+i), held)
		return err
	})
	if ok, c := tally(t, errs, bundlestore.ErrPendingExists); ok != 1 || c[0] != n-1 {
		t.Errorf("%d uploads held and %d refused as pending, want 1 and %d", ok, c[0], n-1)
	}
	diff(t, "history", []string{"2:pending", "1:approved"}, versions(t, s, "node-a"))
	diff(t, "events", []string{"bundle_updated 1", "bundle_updated 2"}, eventSummary(logOf(t, s)))
}
