package storetest

import (
	"testing"

	"github.com/berth-dev/berth/internal/store/bundlestore"
)

// testListCurrent: only current versions are listed, by node ID, and the
// pages join up without a gap or a repeat.
func testListCurrent(t *testing.T, s bundlestore.Store) {
	ctx := t.Context()
	// node-a: current version 2, version 1 superseded.
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	a2 := mustPut(t, s, "node-a", 1, bundle(2), approvedOnly)
	// node-b: only a version waiting for approval.
	mustPut(t, s, "node-b", 0, bundle(3), held)
	// node-c: reset.
	mustPut(t, s, "node-c", 0, bundle(4), approvedOnly)
	if _, err := s.Reset(ctx, "node-c", "admin:admin", t0, 0); err != nil {
		t.Fatal(err)
	}
	// node-e: deleted. node-d, written last, sorts before it.
	mustPut(t, s, "node-e", 0, bundle(5), approvedOnly)
	if err := s.Delete(ctx, "node-e", "admin:ops", t0); err != nil {
		t.Fatal(err)
	}
	d1 := mustPut(t, s, "node-d", 0, bundle(6), approvedOnly)

	for _, tt := range []struct {
		name  string
		after string
		limit int
		want  []bundlestore.Bundle
	}{
		{"all", "", 0, []bundlestore.Bundle{a2, d1}},
		{"first page", "", 1, []bundlestore.Bundle{a2}},
		{"next page", "node-a", 1, []bundlestore.Bundle{d1}},
		{"after a node without a bundle", "node-b", 0, []bundlestore.Bundle{d1}},
		{"after the last", "node-d", 0, nil},
	} {
		got, err := s.ListCurrent(ctx, tt.after, tt.limit)
		if err != nil {
			t.Fatalf("%s: ListCurrent: %v", tt.name, err)
		}
		diff(t, "ListCurrent "+tt.name, tt.want, got)
	}
}
