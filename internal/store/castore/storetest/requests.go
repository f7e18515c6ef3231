package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/castore"
)

func keyHash(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func requested(serial, nodeID, requestID string, key byte, issuedAt time.Time) castore.Issued {
	c := issued(serial, nodeID, issuedAt)
	c.RequestID, c.KeySHA256 = requestID, keyHash(key)
	return c
}

func testIssuedByRequest(t *testing.T, s castore.Store) {
	first := requested("0a", "node-1", "req-1", 1, t0)
	mustRecord(t, s, first, requested("0b", "node-1", "req-2", 1, at(time.Minute)),
		// Certificates from before request IDs: any number without one.
		issued("0c", "node-2", t0), issued("0d", "node-2", t0))
	got, err := s.GetIssuedByRequest(t.Context(), "req-1")
	if err != nil {
		t.Fatalf("GetIssuedByRequest: %v", err)
	}
	diff(t, "GetIssuedByRequest", storedIssued(first), got)

	for _, id := range []string{"", "req-unknown"} {
		_, err := s.GetIssuedByRequest(t.Context(), id)
		wantErr(t, fmt.Sprintf("GetIssuedByRequest(%q)", id), err, castore.ErrNotFound)
	}
	// A second certificate for a request already answered is refused, and
	// the first stays the answer.
	wantErr(t, "RecordIssued(same request)", s.RecordIssued(t.Context(), requested("0e", "node-1", "req-1", 1, at(time.Hour))), castore.ErrConflict)
	if _, err := getIssued(t, s, "0e"); !errors.Is(err, castore.ErrNotFound) {
		t.Errorf("refused certificate recorded anyway: %v", err)
	}
	got, err = s.GetIssuedByRequest(t.Context(), "req-1")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "GetIssuedByRequest after conflict", storedIssued(first), got)
}

// testRecordRequestRace is two or more CA replicas signing one request at
// once: exactly one certificate is recorded.
func testRecordRequestRace(t *testing.T, s castore.Store) {
	const n = 8
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.RecordIssued(t.Context(), requested(fmt.Sprintf("%02x", i+1), "node-1", "req-race", 1, t0))
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, castore.ErrConflict):
			t.Errorf("RecordIssued %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d records won, want 1", won)
	}
	if c, err := s.CountIssued(t.Context(), "node-1", time.Time{}); err != nil || c != 1 {
		t.Errorf("CountIssued = %d, %v; want 1", c, err)
	}
}

func testRevokeNode(t *testing.T, s castore.Store) {
	mustRecord(t, s,
		requested("01", "node-a", "r1", 1, t0),            // the old board's first
		requested("02", "node-a", "r2", 1, at(time.Hour)), // the old board's renewal
		requested("03", "node-a", "r3", 2, at(2*time.Hour)),
		issued("04", "node-a", t0), // from before key hashes were kept
		requested("05", "node-b", "r5", 1, t0))
	// The renewal was revoked on its own first.
	if _, err := s.Revoke(t.Context(), castore.Revocation{Serial: "02", Reason: "keyCompromise", RevokedAt: at(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	revoked := func(t *testing.T, serial string) *castore.Revocation {
		t.Helper()
		c, err := getIssued(t, s, serial)
		if err != nil {
			t.Fatalf("getIssued(%s): %v", serial, err)
		}
		return c.Revocation
	}

	// The board is replaced by key 2: everything else of node-a goes,
	// node-b is untouched.
	n, err := s.RevokeNode(t.Context(), "node-a", keyHash(2), castore.Revocation{Reason: "replaced", RevokedAt: at(3 * time.Hour)})
	if err != nil || n != 2 {
		t.Fatalf("RevokeNode(keep key 2) = %d, %v; want 2 (01 and 04)", n, err)
	}
	diff(t, "01", &castore.Revocation{Serial: "01", NodeID: "node-a", Reason: "replaced", RevokedAt: stored(at(3 * time.Hour))}, revoked(t, "01"))
	diff(t, "02 keeps its first revocation", &castore.Revocation{Serial: "02", NodeID: "node-a", Reason: "keyCompromise", RevokedAt: stored(at(time.Minute))}, revoked(t, "02"))
	if r := revoked(t, "03"); r != nil {
		t.Errorf("the new board's certificate was revoked: %+v", r)
	}
	if r := revoked(t, "05"); r != nil {
		t.Errorf("another node's certificate was revoked: %+v", r)
	}
	// Again: nothing new.
	if n, err := s.RevokeNode(t.Context(), "node-a", keyHash(2), castore.Revocation{Reason: "replaced", RevokedAt: at(4 * time.Hour)}); err != nil || n != 0 {
		t.Errorf("RevokeNode again = %d, %v; want 0", n, err)
	}

	// The node is revoked: every certificate, and the earlier certificate
	// revocations become node revocations, dated now so pollers see them.
	later := at(5 * time.Hour)
	n, err = s.RevokeNode(t.Context(), "node-a", nil, castore.Revocation{Reason: "retired", RevokedAt: later, Node: true})
	if err != nil || n != 4 {
		t.Fatalf("RevokeNode(all) = %d, %v; want 4", n, err)
	}
	rs, err := s.ListRevocations(t.Context(), later)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "revocations since the node's", []castore.Revocation{
		{Serial: "01", NodeID: "node-a", Reason: "replaced", RevokedAt: stored(later), Node: true},
		{Serial: "02", NodeID: "node-a", Reason: "keyCompromise", RevokedAt: stored(later), Node: true},
		{Serial: "03", NodeID: "node-a", Reason: "retired", RevokedAt: stored(later), Node: true},
		{Serial: "04", NodeID: "node-a", Reason: "replaced", RevokedAt: stored(later), Node: true},
	}, rs)
	if n, err := s.RevokeNode(t.Context(), "node-a", nil, castore.Revocation{Reason: "again", RevokedAt: at(6 * time.Hour), Node: true}); err != nil || n != 0 {
		t.Errorf("RevokeNode(all) again = %d, %v; want 0", n, err)
	}
	if n, err := s.RevokeNode(t.Context(), "node-unknown", nil, castore.Revocation{Reason: "x", RevokedAt: later, Node: true}); err != nil || n != 0 {
		t.Errorf("RevokeNode(unknown) = %d, %v; want 0, nil", n, err)
	}
	list, err := s.ListIssued(t.Context(), "node-b", time.Time{})
	if err != nil || len(list) != 1 || list[0].Revocation != nil {
		t.Errorf("node-b after node-a's revocation: %+v, %v", list, err)
	}
}
