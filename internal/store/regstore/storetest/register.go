package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/regstore"
)

func testRegisterNode(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 2))

	n := node("n1", 1)
	n.Status = regstore.StatusApproved // as with an auto-approve token
	now := at(time.Minute)
	got := mustRegister(t, s, "tok", now, n)
	want := expected(n, "tok", now)
	diff(t, "RegisterNode", want, got)
	checkUTC(t, got.CreatedAt, got.UpdatedAt)
	diff(t, "GetNode", want, mustGetNode(t, s, "n1"))
	byKey, err := s.GetNodeByKey(ctx(t), key(1))
	if err != nil {
		t.Fatalf("GetNodeByKey: %v", err)
	}
	diff(t, "GetNodeByKey", want, byKey)
	if tok := mustGetToken(t, s, "tok"); tok.UsesLeft != 1 {
		t.Errorf("UsesLeft after one registration = %d, want 1", tok.UsesLeft)
	}

	mustRegister(t, s, "tok", now, node("n2", 2))
	if tok := mustGetToken(t, s, "tok"); tok.UsesLeft != 0 {
		t.Errorf("UsesLeft after two registrations = %d, want 0", tok.UsesLeft)
	}

	// The use limit is reached: the third registration fails and creates
	// nothing.
	_, err = s.RegisterNode(ctx(t), "tok", now, node("n3", 3), "")
	wantErr(t, "RegisterNode on a used-up token", err, regstore.ErrTokenExhausted)
	_, err = s.GetNode(ctx(t), "n3")
	wantErr(t, "GetNode after failed registration", err, regstore.ErrNotFound)
	_, err = s.GetNodeByKey(ctx(t), key(3))
	wantErr(t, "GetNodeByKey after failed registration", err, regstore.ErrNotFound)
	if tok := mustGetToken(t, s, "tok"); tok.UsesLeft != 0 {
		t.Errorf("UsesLeft after failed registration = %d, want 0", tok.UsesLeft)
	}
}

func testRegisterNodeTokenErrors(t *testing.T, s regstore.Store) {
	now := at(time.Minute)
	tests := []struct {
		name    string
		tok     *regstore.Token // nil: the token does not exist
		wantErr error
	}{
		{"unknown", nil, regstore.ErrTokenInvalid},
		{"revoked", &regstore.Token{ExpiresAt: at(time.Hour), UsesLeft: 5, Revoked: true}, regstore.ErrTokenInvalid},
		{"revoked and expired", &regstore.Token{ExpiresAt: at(0), UsesLeft: 5, Revoked: true}, regstore.ErrTokenInvalid},
		{"expired", &regstore.Token{ExpiresAt: at(time.Second), UsesLeft: 5}, regstore.ErrTokenExpired},
		{"expires exactly now", &regstore.Token{ExpiresAt: now, UsesLeft: 5}, regstore.ErrTokenExpired},
		{"zero expiry", &regstore.Token{UsesLeft: 5}, regstore.ErrTokenExpired},
		{"expired and exhausted", &regstore.Token{ExpiresAt: at(0), UsesLeft: 0}, regstore.ErrTokenExpired},
		{"exhausted", &regstore.Token{ExpiresAt: at(time.Hour), UsesLeft: 0}, regstore.ErrTokenExhausted},
		{"negative uses", &regstore.Token{ExpiresAt: at(time.Hour), UsesLeft: -1}, regstore.ErrTokenExhausted},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("tok-%d", i)
			var before regstore.Token
			if tt.tok != nil {
				tok := *tt.tok
				tok.ID, tok.SecretHash, tok.CreatedAt = id, key(0), t0
				mustCreateToken(t, s, tok)
				before = mustGetToken(t, s, id)
			}
			for _, replaceID := range []string{"", "existing"} {
				_, err := s.RegisterNode(ctx(t), id, now, node(fmt.Sprintf("n-%d", i), 100+i), replaceID)
				wantErr(t, fmt.Sprintf("RegisterNode(replaceID=%q)", replaceID), err, tt.wantErr)
			}
			_, err := s.GetNodeByKey(ctx(t), key(100+i))
			wantErr(t, "GetNodeByKey after failed registration", err, regstore.ErrNotFound)
			if tt.tok != nil {
				diff(t, "token after failed registration", before, mustGetToken(t, s, id))
			}
		})
	}
	checkNoNodes(t, s)
}

func testRegisterNodeConflict(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	first := mustRegister(t, s, "tok", t0, node("n1", 1))

	tests := []struct {
		name string
		n    regstore.Node
	}{
		{"same key", node("n2", 1)},
		{"same ID", node("n1", 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.RegisterNode(ctx(t), "tok", at(time.Minute), tt.n, "")
			wantErr(t, "RegisterNode", err, regstore.ErrConflict)
			if tok := mustGetToken(t, s, "tok"); tok.UsesLeft != 9 {
				t.Errorf("UsesLeft = %d, want 9: a refused registration must not consume a use", tok.UsesLeft)
			}
			diff(t, "existing node", first, mustGetNode(t, s, "n1"))
		})
	}
	ns, err := s.ListNodes(ctx(t), regstore.NodeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "nodes", []string{"n1"}, nodeIDs(ns))
}

func testRegisterNodeInvalid(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	tests := []struct {
		name   string
		mutate func(n *regstore.Node)
	}{
		{"short key hash", func(n *regstore.Node) { n.KeySHA256 = n.KeySHA256[:16] }},
		{"no key hash", func(n *regstore.Node) { n.KeySHA256 = nil }},
		{"no ID", func(n *regstore.Node) { n.ID = "" }},
		{"unknown status", func(n *regstore.Node) { n.Status = "sleeping" }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := node(fmt.Sprintf("n%d", i), i)
			tt.mutate(&n)
			if _, err := s.RegisterNode(ctx(t), "tok", t0, n, ""); err == nil {
				t.Fatal("RegisterNode accepted an invalid node")
			}
		})
	}
	if tok := mustGetToken(t, s, "tok"); tok.UsesLeft != 10 {
		t.Errorf("UsesLeft = %d, want 10", tok.UsesLeft)
	}
	checkNoNodes(t, s)
}

// registerAll registers n distinct nodes on token tokenID from n goroutines
// at once and returns each one's error.
func registerAll(t *testing.T, s regstore.Store, tokenID string, n int) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = s.RegisterNode(ctx(t), tokenID, at(time.Minute), node(fmt.Sprintf("n%03d", i), i), "")
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func testRegisterNodeConcurrentLastUse(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 1))
	const n = 16
	var ok int
	for i, err := range registerAll(t, s, "tok", n) {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, regstore.ErrTokenExhausted):
			t.Errorf("registration %d: %v, want nil or ErrTokenExhausted", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d registrations succeeded on a one-use token, want 1", ok)
	}
	ns, err := s.ListNodes(ctx(t), regstore.NodeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 {
		t.Errorf("store holds %d nodes, want 1", len(ns))
	}
	if evs := nodeEvents(logOf(t, s)); len(evs) != 1 || evs[0].Type != regstore.EventRegistered || evs[0].NodeID != ns[0].ID {
		t.Errorf("log = %+v, want one registered event of %s", evs, ns[0].ID)
	}
	if tok := mustGetToken(t, s, "tok"); tok.UsesLeft != 0 {
		t.Errorf("UsesLeft = %d, want 0", tok.UsesLeft)
	}
}

func testRegisterNodeConcurrentUses(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 100))
	const n = 24
	for i, err := range registerAll(t, s, "tok", n) {
		if err != nil {
			t.Errorf("registration %d: %v", i, err)
		}
	}
	if tok := mustGetToken(t, s, "tok"); tok.UsesLeft != 100-n {
		t.Errorf("UsesLeft = %d, want %d: uses were lost", tok.UsesLeft, 100-n)
	}
	if evs := nodeEvents(logOf(t, s)); len(evs) != n {
		t.Errorf("log holds %d events, want one per registration, %d", len(evs), n)
	}
}

func testNodeRoundTrip(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	tests := []struct {
		name string
		n    regstore.Node
	}{
		{"full", regstore.Node{
			ID: "full", Status: regstore.StatusPending, KeySHA256: key(1),
			HardwareUUID: "4c4c4544-0042-3510-8052-b4c04f333232",
			MACs:         []string{"02:00:00:00:00:01", "02:00:00:00:00:02"},
			Hostname:     "worker-1.example", Serial: "SN-1",
			Labels:    map[string]string{"rack": "r1", "a.b": "dotted", `q"uote`: "x", "ünï": "cødé"},
			BundleKEM: 0xffff, BundleKey: []byte{0, 1, 2, 0xff}, CSR: []byte{0x30, 0x82, 0, 0},
			ReplacementAllowed: true, CertificatesIssued: 3,
		}},
		{"minimal", regstore.Node{ID: "minimal", Status: regstore.StatusRejected, KeySHA256: key(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustRegister(t, s, "tok", t0, tt.n)
			want := expected(tt.n, "tok", t0)
			diff(t, "RegisterNode", want, got)
			diff(t, "GetNode", want, mustGetNode(t, s, tt.n.ID))
		})
	}
}

func testGetNodeNotFound(t *testing.T, s regstore.Store) {
	_, err := s.GetNode(ctx(t), "no-such-node")
	wantErr(t, "GetNode", err, regstore.ErrNotFound)
	_, err = s.GetNodeByKey(ctx(t), key(1))
	wantErr(t, "GetNodeByKey", err, regstore.ErrNotFound)
	_, err = s.GetNodeByKey(ctx(t), nil)
	wantErr(t, "GetNodeByKey(nil)", err, regstore.ErrNotFound)
}
