package storetest

import (
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/regstore"
)

// replaceable registers node "old" with a certificate and allows its
// replacement, returning it.
func replaceable(t *testing.T, s regstore.Store) regstore.Node {
	t.Helper()
	mustCreateToken(t, s, token("tok1", 1))
	mustCreateToken(t, s, token("tok2", 5))
	old := node("old", 1)
	old.Status = regstore.StatusApproved
	mustRegister(t, s, "tok1", t0, old)
	if _, err := issue(t, s, "old", "", cert("aa01"), at(time.Second)); err != nil {
		t.Fatalf("issue: %v", err)
	}
	n, err := s.AllowReplacement(ctx(t), "old", at(2*time.Second), admin)
	if err != nil {
		t.Fatalf("AllowReplacement: %v", err)
	}
	return n
}

func testReplace(t *testing.T, s regstore.Store) {
	old := replaceable(t, s)
	now := at(30 * time.Minute)
	repl := node("ignored-id", 2)
	repl.Status = regstore.StatusApproved
	repl.HardwareUUID = old.HardwareUUID
	repl.Labels = map[string]string{"rack": "r9"}

	got, err := s.RegisterNode(ctx(t), "tok2", now, repl, "old")
	if err != nil {
		t.Fatalf("RegisterNode(replace): %v", err)
	}
	want := repl
	want.ID = "old"
	want.TokenID = "tok2"
	want.CreatedAt = old.CreatedAt
	want.UpdatedAt = stored(now)
	want.CertificatesIssued = 1 // kept
	want.Cert = nil             // cleared
	want.ReplacementAllowed = false
	diff(t, "RegisterNode(replace)", want, got)
	diff(t, "GetNode", want, mustGetNode(t, s, "old"))

	if _, err := s.GetNodeByKey(ctx(t), key(1)); !errors.Is(err, regstore.ErrNotFound) {
		t.Errorf("old key still finds a node: %v", err)
	}
	byKey, err := s.GetNodeByKey(ctx(t), key(2))
	if err != nil {
		t.Fatalf("GetNodeByKey(new key): %v", err)
	}
	diff(t, "GetNodeByKey(new key)", want, byKey)
	if _, err := s.GetNode(ctx(t), "ignored-id"); !errors.Is(err, regstore.ErrNotFound) {
		t.Errorf("replacement created a node under the new ID: %v", err)
	}
	if tok := mustGetToken(t, s, "tok2"); tok.UsesLeft != 4 {
		t.Errorf("UsesLeft = %d, want 4", tok.UsesLeft)
	}

	// Replacement is one-shot.
	_, err = s.RegisterNode(ctx(t), "tok2", now, node("x", 3), "old")
	wantErr(t, "second replacement", err, regstore.ErrPrecondition)
	if tok := mustGetToken(t, s, "tok2"); tok.UsesLeft != 4 {
		t.Errorf("UsesLeft after refused replacement = %d, want 4", tok.UsesLeft)
	}
}

func testReplaceErrors(t *testing.T, s regstore.Store) {
	old := replaceable(t, s)
	mustRegister(t, s, "tok2", t0, node("other", 3)) // tok2: 4 uses left
	mustCreateToken(t, s, regstore.Token{ID: "expired", SecretHash: key(0), ExpiresAt: t0, UsesLeft: 1, CreatedAt: t0})
	notAllowed := mustRegister(t, s, "tok2", t0, node("not-allowed", 4)) // 3 left

	tests := []struct {
		name      string
		tokenID   string
		n         regstore.Node
		replaceID string
		wantErr   error
	}{
		{"replacement not allowed", "tok2", node("x", 10), "not-allowed", regstore.ErrPrecondition},
		{"unknown node", "tok2", node("x", 10), "no-such-node", regstore.ErrNotFound},
		{"key of another node", "tok2", node("x", 3), "old", regstore.ErrConflict},
		{"expired token", "expired", node("x", 10), "old", regstore.ErrTokenExpired},
		{"invalid node", "tok2", regstore.Node{ID: "x", Status: regstore.StatusPending}, "old", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.RegisterNode(ctx(t), tt.tokenID, at(30*time.Minute), tt.n, tt.replaceID)
			if tt.wantErr == nil {
				if err == nil {
					t.Fatal("RegisterNode accepted an invalid node")
				}
			} else {
				wantErr(t, "RegisterNode", err, tt.wantErr)
			}
			// Nothing changed: not the nodes, not the token.
			diff(t, "replaceable node", old, mustGetNode(t, s, "old"))
			diff(t, "other node", notAllowed, mustGetNode(t, s, "not-allowed"))
			if tok := mustGetToken(t, s, "tok2"); tok.UsesLeft != 3 {
				t.Errorf("UsesLeft = %d, want 3", tok.UsesLeft)
			}
		})
	}
}

// testNodesByHardwareUUID is NodesByHardware asked for one UUID alone, as a
// registration asks.
func testNodesByHardwareUUID(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	for i, id := range []string{"n3", "n1", "n2", "n4"} {
		n := node(id, i)
		switch id {
		case "n1", "n3":
			n.HardwareUUID = "shared"
		case "n4":
			n.HardwareUUID = ""
		}
		mustRegister(t, s, "tok", t0, n)
	}
	tests := []struct {
		uuid string
		want []string
	}{
		{"shared", []string{"n1", "n3"}},
		{"uuid-2", []string{"n2"}},
		{"unknown", nil},
		{"", nil}, // empty means unknown, not "every node without one"
	}
	for _, tt := range tests {
		t.Run(tt.uuid, func(t *testing.T) {
			got, err := s.NodesByHardware(ctx(t), []string{tt.uuid}, nil)
			if err != nil {
				t.Fatalf("NodesByHardware: %v", err)
			}
			diff(t, "IDs", tt.want, nodeIDs(got))
		})
	}
}

// listFixture registers n00…n09: even ones approved, n03 and n07 rejected,
// the rest pending; racks alternate r1/r2; n00-n04 are role=db.
func listFixture(t *testing.T, s regstore.Store) {
	t.Helper()
	mustCreateToken(t, s, token("tok", 100))
	for i := range 10 {
		n := node("n0"+string(rune('0'+i)), i)
		switch {
		case i%2 == 0:
			n.Status = regstore.StatusApproved
		case i == 3 || i == 7:
			n.Status = regstore.StatusRejected
		}
		n.Labels = map[string]string{"rack": []string{"r1", "r2"}[i%2]}
		if i < 5 {
			n.Labels["role"] = "db"
		}
		if i == 9 {
			n.Labels["a.b"] = `q"uote`
		}
		mustRegister(t, s, "tok", t0, n)
	}
}

func testListNodes(t *testing.T, s regstore.Store) {
	listFixture(t, s)
	all := []string{"n00", "n01", "n02", "n03", "n04", "n05", "n06", "n07", "n08", "n09"}
	tests := []struct {
		name string
		f    regstore.NodeFilter
		want []string
	}{
		{"all", regstore.NodeFilter{}, all},
		{"approved", regstore.NodeFilter{Status: regstore.StatusApproved}, []string{"n00", "n02", "n04", "n06", "n08"}},
		{"rejected", regstore.NodeFilter{Status: regstore.StatusRejected}, []string{"n03", "n07"}},
		{"revoked", regstore.NodeFilter{Status: regstore.StatusRevoked}, nil},
		{"one label", regstore.NodeFilter{Labels: map[string]string{"rack": "r2"}}, []string{"n01", "n03", "n05", "n07", "n09"}},
		{"two labels", regstore.NodeFilter{Labels: map[string]string{"rack": "r2", "role": "db"}}, []string{"n01", "n03"}},
		{"label value mismatch", regstore.NodeFilter{Labels: map[string]string{"rack": "r3"}}, nil},
		{"label absent", regstore.NodeFilter{Labels: map[string]string{"zone": "r1"}}, nil},
		{"label value is not a key", regstore.NodeFilter{Labels: map[string]string{"r1": "rack"}}, nil},
		{"odd label characters", regstore.NodeFilter{Labels: map[string]string{"a.b": `q"uote`}}, []string{"n09"}},
		{"empty labels", regstore.NodeFilter{Labels: map[string]string{}}, all},
		{"after", regstore.NodeFilter{AfterID: "n07"}, []string{"n08", "n09"}},
		{"after a prefix", regstore.NodeFilter{AfterID: "n0"}, all},
		{"after the last", regstore.NodeFilter{AfterID: "n09"}, nil},
		{"limit", regstore.NodeFilter{Limit: 3}, []string{"n00", "n01", "n02"}},
		{"everything", regstore.NodeFilter{
			Status: regstore.StatusApproved, Labels: map[string]string{"role": "db"}, AfterID: "n00", Limit: 1,
		}, []string{"n02"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListNodes(ctx(t), tt.f)
			if err != nil {
				t.Fatalf("ListNodes: %v", err)
			}
			diff(t, "IDs", tt.want, nodeIDs(got))
		})
	}
}

func testCountNodes(t *testing.T, s regstore.Store) {
	if got, err := s.CountNodes(ctx(t)); err != nil || len(got) != 0 {
		t.Fatalf("CountNodes of no nodes = %v, %v", got, err)
	}
	listFixture(t, s)
	got, err := s.CountNodes(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "counts", []regstore.NodeCount{
		{Status: regstore.StatusApproved, IdentitySource: "file", N: 2},
		{Status: regstore.StatusApproved, IdentitySource: "seed-file", N: 3},
		{Status: regstore.StatusPending, IdentitySource: "tpm", N: 3},
		{Status: regstore.StatusRejected, IdentitySource: "site-secret", N: 2},
	}, got)
}

func testListNodesPaging(t *testing.T, s regstore.Store) {
	listFixture(t, s)
	for _, f := range []regstore.NodeFilter{{}, {Labels: map[string]string{"rack": "r1"}}} {
		want, err := s.ListNodes(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		var got []regstore.Node
		f.Limit = 3
		for pages := 0; ; pages++ {
			if pages > len(want) {
				t.Fatal("paging does not end")
			}
			page, err := s.ListNodes(ctx(t), f)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > f.Limit {
				t.Fatalf("page of %d, limit %d", len(page), f.Limit)
			}
			got = append(got, page...)
			if len(page) < f.Limit {
				break
			}
			f.AfterID = page[len(page)-1].ID
		}
		diff(t, "paged nodes", want, got)
	}
}

func testSetStatus(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	pending := []regstore.Status{regstore.StatusPending}
	tests := []struct {
		name    string
		start   regstore.Status
		id      string // "" = the registered node
		from    []regstore.Status
		to      regstore.Status
		wantErr error // nil = success; errAny = some error
	}{
		{"approve", regstore.StatusPending, "", pending, regstore.StatusApproved, nil},
		{"reject", regstore.StatusPending, "", pending, regstore.StatusRejected, nil},
		{"one of several", regstore.StatusApproved, "",
			[]regstore.Status{regstore.StatusPending, regstore.StatusApproved}, regstore.StatusRevoked, nil},
		{"same status", regstore.StatusApproved, "", []regstore.Status{regstore.StatusApproved}, regstore.StatusApproved, nil},
		{"wrong current status", regstore.StatusRevoked, "", pending, regstore.StatusApproved, regstore.ErrPrecondition},
		{"no allowed status", regstore.StatusPending, "", nil, regstore.StatusApproved, regstore.ErrPrecondition},
		{"unknown node", regstore.StatusPending, "no-such-node", pending, regstore.StatusApproved, regstore.ErrNotFound},
		{"unknown target status", regstore.StatusPending, "", pending, "sleeping", errAny},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := node("n"+string(rune('a'+i)), i)
			n.Status = tt.start
			before := mustRegister(t, s, "tok", t0, n)
			id := tt.id
			if id == "" {
				id = n.ID
			}
			now := at(time.Hour)
			got, err := s.SetStatus(ctx(t), id, tt.from, tt.to, now, "admin:test", "")
			switch {
			case tt.wantErr == errAny:
				if err == nil {
					t.Fatal("SetStatus succeeded")
				}
			case tt.wantErr != nil:
				wantErr(t, "SetStatus", err, tt.wantErr)
			default:
				if err != nil {
					t.Fatalf("SetStatus: %v", err)
				}
				want := before
				want.Status, want.UpdatedAt = tt.to, stored(now)
				diff(t, "SetStatus", want, got)
				diff(t, "GetNode", want, mustGetNode(t, s, n.ID))
				return
			}
			diff(t, "node after refused SetStatus", before, mustGetNode(t, s, n.ID))
		})
	}
}

// errAny in a table's wantErr accepts any non-nil error.
var errAny = errors.New("any error")

// testSetCertificate installs certificates through issuances (see issue).
func testSetCertificate(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	before := approved(t, s, "n1", 1)
	type step struct {
		name    string
		id      string
		prev    string
		serial  string
		wantErr error
		issued  int64 // CertificatesIssued afterwards
	}
	steps := []step{
		{"first", "n1", "", "aa01", nil, 1},
		{"first again", "n1", "", "aa02", regstore.ErrConflict, 1},
		{"renew", "n1", "aa01", "aa02", nil, 2},
		{"stale renew", "n1", "aa01", "aa03", regstore.ErrConflict, 2},
		{"renew again", "n1", "aa02", "aa03", nil, 3},
		{"unknown node", "no-such-node", "", "aa04", regstore.ErrNotFound, 3},
		{"empty serial", "n1", "aa03", "", errAny, 3},
	}
	current := before
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			now := at(time.Duration(i+1) * time.Minute)
			c := cert(st.serial)
			got, err := issue(t, s, st.id, st.prev, c, now)
			switch {
			case st.wantErr == errAny:
				if err == nil {
					t.Fatal("issue succeeded")
				}
			case st.wantErr != nil:
				wantErr(t, "issue", err, st.wantErr)
			default:
				if err != nil {
					t.Fatalf("issue: %v", err)
				}
				current.Cert, current.UpdatedAt = storedCert(c), stored(now)
				current.CertificatesIssued = st.issued
				diff(t, "issue", current, got)
				checkUTC(t, got.Cert.NotBefore, got.Cert.NotAfter)
			}
			diff(t, "GetNode", current, mustGetNode(t, s, "n1"))
		})
	}
}

func testSetCertificateConcurrent(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 1))
	approved(t, s, "n1", 1)
	const n = 12
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = issue(t, s, "n1", "", cert(string(rune('a'+i))), at(time.Minute))
		})
	}
	close(start)
	wg.Wait()
	var ok int
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, regstore.ErrConflict):
			t.Errorf("writer %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d writers replaced the same certificate, want 1", ok)
	}
	if got := mustGetNode(t, s, "n1"); got.CertificatesIssued != 1 {
		t.Errorf("CertificatesIssued = %d, want 1", got.CertificatesIssued)
	}
	if evs := ofType(logOf(t, s), regstore.EventCertificateIssued); len(evs) != 1 {
		t.Errorf("%d certificate events, want 1 for the one writer that won", len(evs))
	}
}

func testAllowReplacement(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 1))
	before := mustRegister(t, s, "tok", t0, node("n1", 1))
	now := at(time.Hour)
	got, err := s.AllowReplacement(ctx(t), "n1", now, admin)
	if err != nil {
		t.Fatalf("AllowReplacement: %v", err)
	}
	want := before
	want.ReplacementAllowed, want.UpdatedAt = true, stored(now)
	diff(t, "AllowReplacement", want, got)
	diff(t, "GetNode", want, mustGetNode(t, s, "n1"))

	_, err = s.AllowReplacement(ctx(t), "no-such-node", now, admin)
	wantErr(t, "AllowReplacement(unknown)", err, regstore.ErrNotFound)
}

func testDeleteNode(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 3))
	mustRegister(t, s, "tok", t0, node("n1", 1))
	keep := mustRegister(t, s, "tok", t0, node("n2", 2))
	if err := s.DeleteNode(ctx(t), "n1", at(time.Hour), "admin:test"); err != nil {
		t.Fatalf("DeleteNode: %v", err)
	}
	_, err := s.GetNode(ctx(t), "n1")
	wantErr(t, "GetNode after delete", err, regstore.ErrNotFound)
	_, err = s.GetNodeByKey(ctx(t), key(1))
	wantErr(t, "GetNodeByKey after delete", err, regstore.ErrNotFound)
	wantErr(t, "DeleteNode again", s.DeleteNode(ctx(t), "n1", at(time.Hour), "admin:test"), regstore.ErrNotFound)
	diff(t, "other node", keep, mustGetNode(t, s, "n2"))
	// The key is free again.
	mustRegister(t, s, "tok", t0, node("n1-again", 1))
}

func testSetLabels(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 1))
	mustRegister(t, s, "tok", t0, node("n1", 1)) // labels rack=r1
	n, err := s.SetLabels(ctx(t), "n1", map[string]string{"role": "db", "rack": "r2"}, []string{"zone"}, 3, at(time.Minute), "admin:alice")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "labels", map[string]string{"rack": "r2", "role": "db"}, n.Labels)
	if got, err := s.GetNode(ctx(t), "n1"); err != nil || !maps.Equal(got.Labels, n.Labels) || !got.UpdatedAt.Equal(stored(at(time.Minute))) {
		t.Errorf("GetNode after SetLabels: %+v, %v", got.Labels, err)
	}
	n, err = s.SetLabels(ctx(t), "n1", nil, []string{"rack"}, 3, at(2*time.Minute), "token:t1")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "labels after removal", map[string]string{"role": "db"}, n.Labels)
	// Nothing to change: no event.
	if _, err := s.SetLabels(ctx(t), "n1", map[string]string{"role": "db"}, []string{"absent"}, 3, at(3*time.Minute), "admin:alice"); err != nil {
		t.Fatal(err)
	}
	evs := withoutCursors(ofType(logOf(t, s), regstore.EventLabeled))
	diff(t, "labeled events", []eventlog.Event{
		{Type: regstore.EventLabeled, NodeID: "n1", Time: stored(at(time.Minute)), Details: map[string]string{
			regstore.DetailActor: "admin:alice", regstore.DetailLabelsSet: "rack=r2,role=db"}},
		{Type: regstore.EventLabeled, NodeID: "n1", Time: stored(at(2 * time.Minute)), Details: map[string]string{
			regstore.DetailActor: "token:t1", regstore.DetailLabelsRemoved: "rack"}},
	}, evs)
	// Too many: refused, nothing changed.
	_, err = s.SetLabels(ctx(t), "n1", map[string]string{"a": "1", "b": "2", "c": "3"}, nil, 3, at(4*time.Minute), "admin:alice")
	if !errors.Is(err, regstore.ErrTooManyLabels) {
		t.Errorf("SetLabels past the limit: %v, want ErrTooManyLabels", err)
	}
	if got, _ := s.GetNode(ctx(t), "n1"); !maps.Equal(got.Labels, map[string]string{"role": "db"}) {
		t.Errorf("a refused SetLabels changed the labels: %v", got.Labels)
	}
	if _, err := s.SetLabels(ctx(t), "nope", map[string]string{"a": "1"}, nil, 3, t0, "admin:alice"); !errors.Is(err, regstore.ErrNotFound) {
		t.Errorf("SetLabels of an unknown node: %v, want ErrNotFound", err)
	}
}
