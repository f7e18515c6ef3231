package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/bundlestore"
)

// wantVersionErr fails unless err is a *VersionError naming next.
func wantVersionErr(t *testing.T, what string, err error, version, next int64) {
	t.Helper()
	var ve *bundlestore.VersionError
	if !errors.As(err, &ve) || ve.Version != version || ve.Next != next {
		t.Fatalf("%s: err = %v, want a VersionError for %d, next %d", what, err, version, next)
	}
}

// testPutVersion: a write signed for a version number lands under that
// number or not at all.
func testPutVersion(t *testing.T, s bundlestore.Store) {
	signed := func(v int64, opts bundlestore.PutOptions) bundlestore.PutOptions { opts.Version = v; return opts }
	got := mustPut(t, s, "node-a", 0, bundle(1), signed(1, approvedOnly))
	diff(t, "first version", want("node-a", 1, bundlestore.StateApproved, bundle(1)), got)
	before := snap(t, s, "node-a")
	for _, tt := range []struct {
		name    string
		version int64
		opts    bundlestore.PutOptions
	}{
		{"a number already used", 1, approvedOnly},
		{"a number ahead", 3, approvedOnly},
		{"a held upload for a number ahead", 5, held},
	} {
		_, err := s.Put(t.Context(), "node-a", 1, bundle(2), signed(tt.version, tt.opts))
		wantVersionErr(t, tt.name, err, tt.version, 2)
		unchanged(t, s, "node-a", before)
	}
	// The compare-and-swap on the current version still comes first.
	_, err := s.Put(t.Context(), "node-a", 0, bundle(2), signed(2, approvedOnly))
	wantErr(t, "stale and signed for the next number", err, bundlestore.ErrStale)
	mustPut(t, s, "node-a", 1, bundle(2), signed(2, held))
	_, err = s.Put(t.Context(), "node-a", 1, bundle(3), signed(3, approvedOnly))
	wantErr(t, "while pending", err, bundlestore.ErrPendingExists)
	got = mustPut(t, s, "node-a", 1, bundle(3), signed(3, admin))
	diff(t, "an administrator's write over the pending one", want("node-a", 3, bundlestore.StateApproved, bundle(3)), got)
	// After a reset the numbers go on; a write signed for the reset's own
	// number is refused.
	if _, err := s.Reset(t.Context(), "node-a", "admin:ops", at(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	before = snap(t, s, "node-a")
	_, err = s.Put(t.Context(), "node-a", 0, bundle(4), signed(4, approvedOnly))
	wantVersionErr(t, "signed for the reset's number", err, 4, 5)
	unchanged(t, s, "node-a", before)
	mustPut(t, s, "node-a", 0, bundle(5), signed(5, approvedOnly))
	diff(t, "history", []string{"5:approved", "4:reset", "3:superseded", "2:superseded", "1:superseded"}, versions(t, s, "node-a"))
}

// testPutVersionRacesReset races a reset of a node whose only version is
// pending with a write signed for the next number, which the
// compare-and-swap on the current version (none, either way) cannot tell
// apart: the write lands under its number, or is refused and nothing of it
// is stored.
func testPutVersionRacesReset(t *testing.T, s bundlestore.Store) {
	for round := range 10 {
		node := "node-" + string(rune('a'+round))
		mustPut(t, s, node, 0, bundle(1), held)
		var (
			wg       sync.WaitGroup
			putErr   error
			resetErr error
		)
		wg.Go(func() {
			_, putErr = s.Put(t.Context(), node, 0, bundle(2), bundlestore.PutOptions{ReplacePending: true, Version: 2})
		})
		wg.Go(func() { _, resetErr = s.Reset(t.Context(), node, "admin:other", at(time.Hour), 0) })
		wg.Wait()
		h := versions(t, s, node)
		switch {
		case putErr == nil && resetErr == nil:
			diff(t, "write then reset", []string{"3:reset", "2:superseded", "1:superseded"}, h)
		case putErr != nil && resetErr == nil:
			wantVersionErr(t, "write after the reset", putErr, 2, 3)
			diff(t, "reset alone", []string{"2:reset", "1:superseded"}, h)
		default:
			t.Fatalf("round %d: put %v, reset %v", round, putErr, resetErr)
		}
	}
}
