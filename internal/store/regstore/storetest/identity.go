package storetest

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/regstore"
)

// types lists the types of evs, in order.
func types(evs []eventlog.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// testTokenIdentityPolicy: a token's identity policy is stored as given.
func testTokenIdentityPolicy(t *testing.T, s regstore.Store) {
	tok := token("tok-pol", 3)
	tok.MinIdentity, tok.AllowSiteSecret = "seed-file", true
	mustCreateToken(t, s, tok)
	got := mustGetToken(t, s, tok.ID)
	if got.MinIdentity != "seed-file" || !got.AllowSiteSecret {
		t.Errorf("GetToken: min identity %q, allow site secret %v; want seed-file, true", got.MinIdentity, got.AllowSiteSecret)
	}
	list, err := s.ListTokens(ctx(t), false, t0)
	if err != nil || len(list) != 1 || list[0].MinIdentity != "seed-file" || !list[0].AllowSiteSecret {
		t.Errorf("ListTokens = %+v, %v; want the policy kept", list, err)
	}
}

// hwNode is test node i with the given hardware.
func hwNode(id string, i int, uuid string, macs ...string) regstore.Node {
	n := node(id, i)
	n.HardwareUUID, n.MACs = uuid, macs
	return n
}

func testNodesByHardware(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	for _, n := range []regstore.Node{
		hwNode("n1", 1, "u1", "02:00:00:00:00:01", "02:00:00:00:00:aa"),
		hwNode("n2", 2, "u2", "02:00:00:00:00:02"),
		hwNode("n3", 3, "u1"),
		hwNode("n4", 4, "", "02:00:00:00:00:aa"),
		hwNode("n5", 5, "u5"),
	} {
		mustRegister(t, s, "tok", t0, n)
	}
	for _, tt := range []struct {
		name        string
		uuids, macs []string
		want        []string
	}{
		{"uuid", []string{"u1"}, nil, []string{"n1", "n3"}},
		{"mac", nil, []string{"02:00:00:00:00:aa"}, []string{"n1", "n4"}},
		{"both, once each", []string{"u2", "u1"}, []string{"02:00:00:00:00:aa", "02:00:00:00:00:02"}, []string{"n1", "n2", "n3", "n4"}},
		{"unknown", []string{"u9"}, []string{"02:00:00:00:00:99"}, nil},
		{"empty values match nothing", []string{""}, []string{""}, nil},
		{"none", nil, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.NodesByHardware(ctx(t), tt.uuids, tt.macs)
			if err != nil {
				t.Fatalf("NodesByHardware: %v", err)
			}
			diff(t, "IDs", tt.want, nodeIDs(got))
		})
	}

	// A node's MACs are its replacement's once replaced, and go with its
	// deletion.
	if _, err := s.AllowReplacement(ctx(t), "n4", t0, admin); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterNode(ctx(t), "tok", at(time.Minute), hwNode("ignored", 6, "", "02:00:00:00:00:06"), "n4"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNode(ctx(t), "n1", at(time.Minute), admin); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		mac  string
		want []string
	}{
		{"02:00:00:00:00:aa", nil},
		{"02:00:00:00:00:01", nil},
		{"02:00:00:00:00:06", []string{"n4"}},
		{"02:00:00:00:00:02", []string{"n2"}},
	} {
		got, err := s.NodesByHardware(ctx(t), nil, []string{tt.mac})
		if err != nil {
			t.Fatalf("NodesByHardware(%s): %v", tt.mac, err)
		}
		diff(t, "after a replacement and a deletion, "+tt.mac, tt.want, nodeIDs(got))
	}
}

// testDuplicateHardwareEvents: a node registering with a MAC or UUID another
// node reports gets a duplicate_hardware event after its registered event,
// in the same commit; one with its own hardware gets none.
func testDuplicateHardwareEvents(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	mustRegister(t, s, "tok", t0, hwNode("n1", 0, "u1", "02:00:00:00:00:01", "02:00:00:00:00:aa"))
	mustRegister(t, s, "tok", t0, hwNode("n2", 0+4, "u2", "02:00:00:00:00:aa"))
	evs := newEvents(t, s, func() {
		mustRegister(t, s, "tok", at(time.Second), hwNode("n3", 8, "u3", "02:00:00:00:00:aa", "02:00:00:00:00:01"))
	})
	diff(t, "events", []string{regstore.EventRegistered, regstore.EventDuplicateHardware}, types(evs))
	if len(evs) == 2 {
		diff(t, "duplicate event", event(regstore.EventDuplicateHardware, "n3", at(time.Second),
			regstore.DetailDuplicateOf, "n1,n2", regstore.DetailMACs, "02:00:00:00:00:01,02:00:00:00:00:aa"), withoutCursors(evs)[1])
		diff(t, "registered event source", "seed-file", evs[0].Details[regstore.DetailIdentitySource])
	}
	evs = newEvents(t, s, func() { mustRegister(t, s, "tok", t0, hwNode("n4", 12, "u4", "02:00:00:00:00:04")) })
	diff(t, "events of a node with its own hardware", []string{regstore.EventRegistered}, types(evs))

	// A replacement takes over its own row: the hardware it shares with
	// the node it replaces is no duplicate.
	if _, err := s.AllowReplacement(ctx(t), "n4", t0, admin); err != nil {
		t.Fatal(err)
	}
	evs = newEvents(t, s, func() {
		r := hwNode("n4-new", 16, "u4", "02:00:00:00:00:04")
		if _, err := s.RegisterNode(ctx(t), "tok", t0, r, "n4"); err != nil {
			t.Fatalf("replace: %v", err)
		}
	})
	diff(t, "events of a replacement", []string{regstore.EventReplaced}, types(evs))
}

// testRegisterClaims: RegisterIssuing refuses a new key for a hardware
// UUID another node reports, consuming and writing nothing, unless that
// node may be replaced; RegisterNode does not look.
func testRegisterClaims(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	held := mustRegister(t, s, "tok", t0, hwNode("held", 1, "u1", "02:00:00:00:00:01"))
	mustRegister(t, s, "tok", t0, hwNode("free", 2, "u2"))
	mustRegister(t, s, "tok", t0, hwNode("no-uuid", 3, ""))
	if _, err := s.AllowReplacement(ctx(t), "free", t0, admin); err != nil {
		t.Fatal(err)
	}
	claims := func(n regstore.Node, replaceID string) (*regstore.HardwareClaimedError, error) {
		t.Helper()
		var claimed *regstore.HardwareClaimedError
		var err error
		evs := newEvents(t, s, func() {
			_, _, err = s.RegisterIssuing(ctx(t), "tok", at(time.Minute), n, replaceID, "req-"+n.ID)
		})
		if errors.As(err, &claimed) {
			diff(t, "events of a refused registration", 0, len(evs))
			if _, gerr := s.GetNode(ctx(t), n.ID); !errors.Is(gerr, regstore.ErrNotFound) {
				t.Errorf("refused node %s: GetNode = %v, want ErrNotFound", n.ID, gerr)
			}
		}
		return claimed, err
	}
	for _, tt := range []struct {
		name string
		n    regstore.Node
		want *regstore.HardwareClaimedError
	}{
		{"UUID held", hwNode("n1", 11, "u1"), &regstore.HardwareClaimedError{NodeID: "held"}},
		{"UUID of a replaceable node", hwNode("n2", 12, "u2"), &regstore.HardwareClaimedError{NodeID: "free", Replaceable: true}},
	} {
		got, err := claims(tt.n, "")
		if got == nil {
			t.Fatalf("%s: RegisterIssuing = %v, want a HardwareClaimedError", tt.name, err)
		}
		diff(t, tt.name, tt.want, got)
	}
	diff(t, "token uses after refusals", 7, mustGetToken(t, s, "tok").UsesLeft)

	// A MAC alone, or no UUID at all, claims nothing.
	for _, n := range []regstore.Node{hwNode("n3", 13, "u3", "02:00:00:00:00:01"), hwNode("n4", 14, "")} {
		if got, err := claims(n, ""); err != nil {
			t.Errorf("RegisterIssuing(%s) = %v, %v; want it registered", n.ID, got, err)
		}
	}
	// A registered key is its own node's retry, with its hardware or
	// with none: refused as registered, with the node as it is stored,
	// and nothing consumed.
	before := mustGetToken(t, s, "tok").UsesLeft
	for _, tt := range []struct {
		retry regstore.Node
		owner string
	}{{hwNode("held-retry", 1, "u1"), "held"}, {hwNode("no-uuid-retry", 3, ""), "no-uuid"}} {
		var taken *regstore.KeyRegisteredError
		got, err := claims(tt.retry, "")
		if got != nil || !errors.As(err, &taken) || !errors.Is(err, regstore.ErrConflict) {
			t.Fatalf("RegisterIssuing(%s's key again) = %v, %v; want a KeyRegisteredError, an ErrConflict", tt.owner, got, err)
		}
		diff(t, "node of a registered key", mustGetNode(t, s, tt.owner), taken.Node)
	}
	diff(t, "token uses after retries", before, mustGetToken(t, s, "tok").UsesLeft)
	// Replacing the replaceable node is allowed; with another node holding
	// the UUID too, that one refuses it.
	if got, err := claims(hwNode("n5", 15, "u2"), "free"); err != nil {
		t.Fatalf("RegisterIssuing(replace free) = %v, %v", got, err)
	}
	diff(t, "replaced node's key", key(15), mustGetNode(t, s, "free").KeySHA256)
	if _, err := s.AllowReplacement(ctx(t), "held", t0, admin); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, s, "tok", t0, hwNode("held-twin", 16, "u1"))
	got, err := claims(hwNode("n6", 17, "u1"), "held")
	diff(t, "replacing beside a twin", &regstore.HardwareClaimedError{NodeID: "held-twin"}, got)
	if got == nil {
		t.Fatalf("RegisterIssuing(replace held beside held-twin) = %v; want refused", err)
	}
	diff(t, "held after the refusal", held.KeySHA256, mustGetNode(t, s, "held").KeySHA256)
}

func testNoteDuplicate(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	n := mustRegister(t, s, "tok", t0, hwNode("n1", 1, "u1"))
	claim := regstore.Claim{HardwareUUID: "u1", KeySHA256: key(99), IdentitySource: "site-secret"}
	evs := newEvents(t, s, func() {
		if err := s.NoteDuplicate(ctx(t), "n1", at(time.Minute), claim); err != nil {
			t.Fatalf("NoteDuplicate: %v", err)
		}
	})
	diff(t, "events", []eventlog.Event{event(regstore.EventDuplicateHardware, "n1", at(time.Minute),
		regstore.DetailHardwareUUID, "u1", regstore.DetailClaimantKey, hex.EncodeToString(key(99)),
		regstore.DetailIdentitySource, "site-secret")}, withoutCursors(evs))
	diff(t, "node after NoteDuplicate", n, mustGetNode(t, s, "n1"))

	evs = newEvents(t, s, func() {
		wantErr(t, "NoteDuplicate(missing)", s.NoteDuplicate(ctx(t), "missing", t0, claim), regstore.ErrNotFound)
	})
	diff(t, "events of a refused NoteDuplicate", 0, len(evs))
}

// testRegisterWithoutToken: tokenID "" registers (and replaces) without
// consuming anything.
func testRegisterWithoutToken(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 1))
	n := node("n1", 1)
	n.Status = regstore.StatusApproved
	got := mustRegister(t, s, "", t0, n)
	diff(t, "node", expected(n, "", t0), got)
	diff(t, "stored node", got, mustGetNode(t, s, "n1"))
	if tok := mustGetToken(t, s, "tok"); tok.UsesLeft != 1 {
		t.Errorf("a registration without a token used the token: %d uses left", tok.UsesLeft)
	}
	if _, err := s.AllowReplacement(ctx(t), "n1", t0, admin); err != nil {
		t.Fatal(err)
	}
	r := node("ignored", 5)
	r.EKHash, r.EKCertificate = "sha256:new", "none"
	out, err := s.RegisterNode(ctx(t), "", at(time.Minute), r, "n1")
	if err != nil {
		t.Fatalf("replace without a token: %v", err)
	}
	if out.ID != "n1" || out.EKHash != "sha256:new" || out.EKCertificate != "none" || out.TokenID != "" {
		t.Errorf("replaced node = %+v, want n1 with the new EK and no token", out)
	}
}

func testEnrolledEKs(t *testing.T, s regstore.Store) {
	_, err := s.GetEK(ctx(t), "sha256:aa")
	wantErr(t, "GetEK(unknown)", err, regstore.ErrNotFound)
	added, updated, err := s.ImportEKs(ctx(t), []regstore.EnrolledEK{{Hash: "sha256:aa", Label: "rack1-a"}, {Hash: "sha256:bb"}}, t0, admin)
	if err != nil || added != 2 || updated != 0 {
		t.Fatalf("ImportEKs = %d added, %d updated, %v; want 2, 0", added, updated, err)
	}
	added, updated, err = s.ImportEKs(ctx(t), []regstore.EnrolledEK{{Hash: "sha256:aa", Label: "rack1-b"}, {Hash: "sha256:cc"}}, at(time.Hour), admin)
	if err != nil || added != 1 || updated != 1 {
		t.Fatalf("second ImportEKs = %d added, %d updated, %v; want 1, 1", added, updated, err)
	}
	got, err := s.GetEK(ctx(t), "sha256:aa")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "re-imported EK", regstore.EnrolledEK{Hash: "sha256:aa", Label: "rack1-b", CreatedAt: stored(t0)}, got)
	checkUTC(t, got.CreatedAt)
}
