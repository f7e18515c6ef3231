// Package storetest is the conformance suite every castore.Store
// implementation must pass. Run it from each backend's tests:
//
//	storetest.Run(t, func(t *testing.T) castore.Store { ... })
package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berth-dev/berth/internal/store/castore"
)

// Run runs every test against stores made by newStore. Each call to newStore
// must return a store on a fresh, empty database, closed when t ends.
func Run(t *testing.T, newStore func(t *testing.T) castore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s castore.Store)
	}{
		{"IssuedRoundTrip", testIssuedRoundTrip},
		{"RecordIssuedConflict", testRecordIssuedConflict},
		{"ListAndCountIssued", testListAndCountIssued},
		{"Revoke", testRevoke},
		{"RevokeConcurrent", testRevokeConcurrent},
		{"ListRevocations", testListRevocations},
		{"IssuedByRequest", testIssuedByRequest},
		{"RecordRequestRace", testRecordRequestRace},
		{"RevokeNode", testRevokeNode},
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

func issued(serial, nodeID string, issuedAt time.Time) castore.Issued {
	return castore.Issued{
		Serial:    serial,
		NodeID:    nodeID,
		NotBefore: issuedAt.Add(-time.Minute),
		NotAfter:  issuedAt.Add(24 * time.Hour),
		IssuedAt:  issuedAt,
		DER:       []byte("DER of " + serial),
	}
}

func storedIssued(c castore.Issued) castore.Issued {
	c.NotBefore, c.NotAfter, c.IssuedAt = stored(c.NotBefore), stored(c.NotAfter), stored(c.IssuedAt)
	return c
}

func mustRecord(t *testing.T, s castore.Store, cs ...castore.Issued) {
	t.Helper()
	for _, c := range cs {
		if err := s.RecordIssued(t.Context(), c); err != nil {
			t.Fatalf("RecordIssued(%s): %v", c.Serial, err)
		}
	}
}

// getIssued finds the certificate with serial among every one recorded;
// ErrNotFound if none.
func getIssued(t *testing.T, s castore.Store, serial string) (castore.Issued, error) {
	cs, err := s.ListIssued(t.Context(), "", time.Time{})
	if err != nil {
		return castore.Issued{}, err
	}
	for _, c := range cs {
		if c.Serial == serial {
			return c, nil
		}
	}
	return castore.Issued{}, castore.ErrNotFound
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

func checkUTC(t *testing.T, times ...time.Time) {
	t.Helper()
	for _, tm := range times {
		if tm.Location() != time.UTC {
			t.Errorf("time %v is in %v, want UTC", tm, tm.Location())
		}
	}
}

func testIssuedRoundTrip(t *testing.T, s castore.Store) {
	tests := []struct {
		name string
		c    castore.Issued
	}{
		{"full", issued("0a1b2c3d4e5f", "node-1", t0)},
		{"empty DER", castore.Issued{Serial: "ff", NodeID: "node-2", IssuedAt: t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustRecord(t, s, tt.c)
			got, err := getIssued(t, s, tt.c.Serial)
			if err != nil {
				t.Fatalf("getIssued: %v", err)
			}
			diff(t, "getIssued", storedIssued(tt.c), got)
			checkUTC(t, got.NotBefore, got.NotAfter, got.IssuedAt)
		})
	}
	_, err := getIssued(t, s, "no-such-serial")
	wantErr(t, "getIssued(unknown)", err, castore.ErrNotFound)
}

func testRecordIssuedConflict(t *testing.T, s castore.Store) {
	first := issued("aa", "node-1", t0)
	mustRecord(t, s, first)
	wantErr(t, "RecordIssued(duplicate)", s.RecordIssued(t.Context(), issued("aa", "node-2", at(time.Hour))), castore.ErrConflict)
	got, err := getIssued(t, s, "aa")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "first record", storedIssued(first), got)
}

func testListAndCountIssued(t *testing.T, s castore.Store) {
	// Recorded out of order, to check ordering by IssuedAt; "03" and "02"
	// tie on IssuedAt and sort by serial.
	mustRecord(t, s,
		issued("05", "node-b", at(4*time.Minute)),
		issued("01", "node-a", at(0)),
		issued("03", "node-a", at(2*time.Minute)),
		issued("02", "node-b", at(2*time.Minute)),
		issued("04", "node-a", at(3*time.Minute)),
	)
	tests := []struct {
		name   string
		nodeID string
		since  time.Time
		want   []string
	}{
		{"all", "", time.Time{}, []string{"01", "02", "03", "04", "05"}},
		{"one node", "node-a", time.Time{}, []string{"01", "03", "04"}},
		{"since is inclusive", "", at(2 * time.Minute), []string{"02", "03", "04", "05"}},
		{"node and since", "node-a", at(time.Minute), []string{"03", "04"}},
		{"since in another zone", "node-b", at(4 * time.Minute).In(time.FixedZone("X", -7*3600)), []string{"05"}},
		{"since after all", "", at(time.Hour), nil},
		{"unknown node", "node-z", time.Time{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListIssued(t.Context(), tt.nodeID, tt.since)
			if err != nil {
				t.Fatalf("ListIssued: %v", err)
			}
			var serials []string
			for _, c := range got {
				serials = append(serials, c.Serial)
			}
			diff(t, "ListIssued serials", tt.want, serials)
			n, err := s.CountIssued(t.Context(), tt.nodeID, tt.since)
			if err != nil {
				t.Fatalf("CountIssued: %v", err)
			}
			if n != int64(len(tt.want)) {
				t.Errorf("CountIssued = %d, want %d", n, len(tt.want))
			}
		})
	}
	got, err := s.ListIssued(t.Context(), "node-a", time.Time{})
	if err != nil || len(got) == 0 {
		t.Fatalf("ListIssued: %v, %v", got, err)
	}
	diff(t, "ListIssued record", storedIssued(issued("01", "node-a", at(0))), got[0])
}

func testRevoke(t *testing.T, s castore.Store) {
	mustRecord(t, s, issued("aa", "node-1", t0))
	r := castore.Revocation{Serial: "aa", NodeID: "node-1", Reason: "keyCompromise", RevokedAt: at(time.Hour)}
	want := r
	want.RevokedAt = stored(r.RevokedAt)

	got, err := s.Revoke(t.Context(), r)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	diff(t, "Revoke", want, got)
	checkUTC(t, got.RevokedAt)

	// Again, later, for another reason: the first revocation stands.
	again := castore.Revocation{Serial: "aa", Reason: "superseded", RevokedAt: at(2 * time.Hour)}
	got, err = s.Revoke(t.Context(), again)
	if err != nil {
		t.Fatalf("Revoke again: %v", err)
	}
	diff(t, "Revoke again", want, got)

	tests := []struct {
		name string
		r    castore.Revocation
		want castore.Revocation
	}{
		// The node is that of the certificate, not what the caller says.
		{"node from the issued record", castore.Revocation{Serial: "bb", NodeID: "someone-else", RevokedAt: t0},
			castore.Revocation{Serial: "bb", NodeID: "node-2", RevokedAt: stored(t0)}},
		{"node omitted", castore.Revocation{Serial: "cc", Reason: "unspecified", RevokedAt: t0},
			castore.Revocation{Serial: "cc", NodeID: "node-3", Reason: "unspecified", RevokedAt: stored(t0)}},
	}
	mustRecord(t, s, issued("bb", "node-2", t0), issued("cc", "node-3", t0))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Revoke(t.Context(), tt.r)
			if err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			diff(t, "Revoke", tt.want, got)
		})
	}

	_, err = s.Revoke(t.Context(), castore.Revocation{Serial: "never-issued", RevokedAt: t0})
	wantErr(t, "Revoke(never issued)", err, castore.ErrNotFound)
	rs, err := s.ListRevocations(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Errorf("%d revocations, want 3: %+v", len(rs), rs)
	}
}

func testRevokeConcurrent(t *testing.T, s castore.Store) {
	mustRecord(t, s, issued("aa", "node-1", t0))
	const n = 12
	got := make([]castore.Revocation, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], errs[i] = s.Revoke(t.Context(), castore.Revocation{
				Serial: "aa", Reason: fmt.Sprintf("reason %d", i), RevokedAt: at(time.Duration(i) * time.Second),
			})
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Revoke %d: %v", i, errs[i])
		}
		// Every caller sees the one revocation that won.
		diff(t, fmt.Sprintf("Revoke %d", i), got[0], got[i])
	}
}

func testListRevocations(t *testing.T, s castore.Store) {
	mustRecord(t, s,
		issued("01", "node-a", t0), issued("02", "node-a", t0), issued("03", "node-b", t0), issued("04", "node-b", t0))
	for _, r := range []castore.Revocation{
		{Serial: "03", Reason: "c", RevokedAt: at(3 * time.Minute)},
		{Serial: "01", Reason: "a", RevokedAt: at(time.Minute)},
		{Serial: "02", Reason: "b", RevokedAt: at(3 * time.Minute)}, // ties with 03
	} {
		if _, err := s.Revoke(t.Context(), r); err != nil {
			t.Fatalf("Revoke(%s): %v", r.Serial, err)
		}
	}
	tests := []struct {
		name  string
		since time.Time
		want  []castore.Revocation
	}{
		{"all", time.Time{}, []castore.Revocation{
			{Serial: "01", NodeID: "node-a", Reason: "a", RevokedAt: stored(at(time.Minute))},
			{Serial: "02", NodeID: "node-a", Reason: "b", RevokedAt: stored(at(3 * time.Minute))},
			{Serial: "03", NodeID: "node-b", Reason: "c", RevokedAt: stored(at(3 * time.Minute))},
		}},
		{"since is inclusive", at(3 * time.Minute), []castore.Revocation{
			{Serial: "02", NodeID: "node-a", Reason: "b", RevokedAt: stored(at(3 * time.Minute))},
			{Serial: "03", NodeID: "node-b", Reason: "c", RevokedAt: stored(at(3 * time.Minute))},
		}},
		{"since after all", at(time.Hour), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListRevocations(t.Context(), tt.since)
			if err != nil {
				t.Fatalf("ListRevocations: %v", err)
			}
			diff(t, "ListRevocations", tt.want, got)
		})
	}
}
