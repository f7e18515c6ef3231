package watch

import (
	"maps"
	"testing"
)

// FuzzParseCursors checks that what ParseCursors accepts is written back by
// String in a form it reads to the same cursors, and that it never accepts
// a negative cursor.
func FuzzParseCursors(f *testing.F) {
	for _, s := range []string{"", "bundles=4,heartbeat=17", " registration=0 ", "bundles=-1", "bundles=1,bundles=2", "x=1", "bundles", "bundles=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursors(s)
		if err != nil {
			return
		}
		for svc, n := range c {
			if n < 0 {
				t.Fatalf("ParseCursors(%q) accepted %s=%d", s, svc, n)
			}
		}
		back, err := ParseCursors(c.String())
		if err != nil || !maps.Equal(back, c) {
			t.Fatalf("ParseCursors(%q) = %v, written %q reads as %v, %v", s, c, c.String(), back, err)
		}
	})
}
