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
		nodes []string
		want  []bundlestore.Bundle
	}{
		{"all", "", 0, nil, []bundlestore.Bundle{a2, d1}},
		{"first page", "", 1, nil, []bundlestore.Bundle{a2}},
		{"next page", "node-a", 1, nil, []bundlestore.Bundle{d1}},
		{"after a node without a bundle", "node-b", 0, nil, []bundlestore.Bundle{d1}},
		{"after the last", "node-d", 0, nil, nil},
		{"named nodes", "", 0, []string{"node-d", "node-a"}, []bundlestore.Bundle{a2, d1}},
		{"named: one", "", 0, []string{"node-d"}, []bundlestore.Bundle{d1}},
		{"named: a page", "", 1, []string{"node-d", "node-a"}, []bundlestore.Bundle{a2}},
		{"named: the next page", "node-a", 1, []string{"node-d", "node-a"}, []bundlestore.Bundle{d1}},
		{"named: without a current bundle", "", 0, []string{"node-b", "node-c", "node-e", "node-x"}, nil},
	} {
		got, err := s.ListCurrent(ctx, tt.after, tt.limit, tt.nodes...)
		if err != nil {
			t.Fatalf("%s: ListCurrent: %v", tt.name, err)
		}
		diff(t, "ListCurrent "+tt.name, tt.want, got)
	}
}
