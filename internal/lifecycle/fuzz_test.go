package lifecycle

import (
	"errors"
	"slices"
	"strings"
	"testing"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"

	"github.com/berth-dev/berth/internal/ident"
)

// FuzzFilter checks the watch filter reader against the rules it states: a
// filter it accepts has a cursor of 0 or more (0 with from_now), at most
// MaxWatchNodes valid node IDs and only the log's own types, and becomes
// exactly the request it asked for; anything else is a *FilterError.
func FuzzFilter(f *testing.F) {
	types := []string{"registered", "approved", "revoked"}
	feed := &Feed{cfg: Config{Types: types}}
	f.Add(int64(0), false, "", "")
	f.Add(int64(7), false, "node-a,node-b", "approved")
	f.Add(int64(3), true, "", "")
	f.Add(int64(-1), false, "Node_A", "healthy")
	f.Add(int64(0), true, strings.Repeat("n,", 101), "registered,revoked")
	f.Fuzz(func(t *testing.T, after int64, fromNow bool, ids, kinds string) {
		flt := &berthv1.LifecycleFilter{AfterCursor: after, FromNow: fromNow, NodeIds: split(ids), Types: split(kinds)}
		w, err := feed.parse(flt)
		if err != nil {
			var fe *FilterError
			if !errors.As(err, &fe) || fe.Field == "" || fe.Rule == "" {
				t.Fatalf("parse(%v) = %v, want a *FilterError naming field and rule", flt, err)
			}
			return
		}
		if after < 0 || (fromNow && after != 0) || len(flt.NodeIds) > MaxWatchNodes {
			t.Fatalf("parse accepted cursor %d from_now %v with %d nodes", after, fromNow, len(flt.NodeIds))
		}
		for _, id := range flt.NodeIds {
			if ident.NodeID(id) != nil {
				t.Fatalf("parse accepted node ID %q", id)
			}
		}
		for _, k := range flt.Types {
			if !slices.Contains(types, k) {
				t.Fatalf("parse accepted type %q", k)
			}
		}
		if w.After != after || w.FromNow != fromNow || !slices.Equal(w.NodeIDs, flt.NodeIds) || !slices.Equal(w.Types, flt.Types) {
			t.Fatalf("parse(%v) = %+v, not what was asked", flt, w)
		}
	})
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
