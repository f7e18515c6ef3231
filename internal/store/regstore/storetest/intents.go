package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/regstore"
)

// approved registers node id (key i) approved, without a certificate.
func approved(t *testing.T, s regstore.Store, id string, i int) regstore.Node {
	t.Helper()
	n := node(id, i)
	n.Status = regstore.StatusApproved
	return mustRegister(t, s, "tok", t0, n)
}

func intent(requestID, nodeID string, i int, prev string, created time.Time) regstore.Intent {
	return regstore.Intent{RequestID: requestID, NodeID: nodeID, KeySHA256: key(i), PrevSerial: prev, CreatedAt: created}
}

// mustClaim opens an intent and wants it claimed.
func mustClaim(t *testing.T, s regstore.Store, in regstore.Intent) regstore.Intent {
	t.Helper()
	open, claimed, err := s.ClaimIssuance(ctx(t), in)
	if err != nil || !claimed {
		t.Fatalf("ClaimIssuance(%s) = %v, %v; want claimed", in.RequestID, claimed, err)
	}
	return open
}

// issue makes c node id's certificate in place of prev ("" = none) as the
// service does, through an issuance: ErrNotFound for an unknown node,
// ErrConflict when the node's serial is not prev or another issuance is
// open for it.
func issue(t *testing.T, s regstore.Store, id, prev string, c regstore.Cert, now time.Time) (regstore.Node, error) {
	n, err := s.GetNode(ctx(t), id)
	if err != nil {
		return regstore.Node{}, err
	}
	in := regstore.Intent{RequestID: "issue-" + id + "-" + c.Serial, NodeID: id, KeySHA256: n.KeySHA256, PrevSerial: prev, CreatedAt: now}
	open, claimed, err := s.ClaimIssuance(ctx(t), in)
	if err != nil {
		return regstore.Node{}, err
	}
	if !claimed {
		return regstore.Node{}, fmt.Errorf("issuance %s is open: %w", open.RequestID, regstore.ErrConflict)
	}
	n, installed, err := s.CompleteIssuance(ctx(t), in.RequestID, c, now)
	if err == nil && !installed {
		err = fmt.Errorf("certificate %s not installed", c.Serial)
	}
	return n, err
}

func lastEventTypes(t *testing.T, s regstore.Store, n int) []string {
	t.Helper()
	evs := logOf(t, s)
	var types []string
	for _, e := range evs[max(0, len(evs)-n):] {
		types = append(types, e.Type)
	}
	return types
}

func testClaimAndComplete(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	n := approved(t, s, "n1", 1)

	open := mustClaim(t, s, intent("req-1", "n1", 1, "", at(time.Minute)))
	want := intent("req-1", "n1", 1, "", stored(at(time.Minute)))
	want.Hostname, want.CSR = n.Hostname, n.CSR // taken from the node
	diff(t, "ClaimIssuance", want, open)
	checkUTC(t, open.CreatedAt)

	// A second claim (another replica, another boot) gets the open one.
	again, claimed, err := s.ClaimIssuance(ctx(t), intent("req-2", "n1", 1, "", at(2*time.Minute)))
	if err != nil || claimed {
		t.Fatalf("second ClaimIssuance = %v, %v; want the open intent, not claimed", claimed, err)
	}
	diff(t, "second ClaimIssuance", want, again)

	list, err := s.ListIntents(ctx(t), at(time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "ListIntents", []regstore.Intent{want}, list)
	if list, err := s.ListIntents(ctx(t), at(time.Second), 0); err != nil || len(list) != 0 {
		t.Errorf("ListIntents(before it) = %v, %v; want none", list, err)
	}

	c := cert("aa01")
	got, installed, err := s.CompleteIssuance(ctx(t), "req-1", c, at(3*time.Minute))
	if err != nil || !installed {
		t.Fatalf("CompleteIssuance = %v, %v; want installed", installed, err)
	}
	n.Cert, n.CertificatesIssued, n.UpdatedAt = storedCert(c), 1, stored(at(3*time.Minute))
	diff(t, "CompleteIssuance", n, got)
	diff(t, "GetNode", n, mustGetNode(t, s, "n1"))
	diff(t, "event of the first certificate", []string{regstore.EventCertificateIssued}, lastEventTypes(t, s, 1))

	// Completing again (a second replica with the same CA answer) counts
	// nothing.
	_, _, err = s.CompleteIssuance(ctx(t), "req-1", c, at(4*time.Minute))
	wantErr(t, "CompleteIssuance again", err, regstore.ErrNotFound)
	diff(t, "after completing again", n, mustGetNode(t, s, "n1"))
	if list, err := s.ListIntents(ctx(t), at(time.Hour), 0); err != nil || len(list) != 0 {
		t.Errorf("ListIntents after completion = %v, %v; want none", list, err)
	}

	// Renewal: a claim on the stale serial is refused, on the current one
	// it opens.
	_, _, err = s.ClaimIssuance(ctx(t), intent("req-3", "n1", 1, "", at(5*time.Minute)))
	wantErr(t, "ClaimIssuance(stale serial)", err, regstore.ErrConflict)
	mustClaim(t, s, intent("req-4", "n1", 1, "aa01", at(5*time.Minute)))
	got, installed, err = s.CompleteIssuance(ctx(t), "req-4", cert("aa02"), at(6*time.Minute))
	if err != nil || !installed || got.Cert.Serial != "aa02" || got.CertificatesIssued != 2 {
		t.Fatalf("CompleteIssuance(renewal) = %+v, %v, %v", got.Cert, installed, err)
	}
	diff(t, "event of a renewal", []string{regstore.EventCertificateRenewed}, lastEventTypes(t, s, 1))
}

func testClaimErrors(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	approved(t, s, "n1", 1)
	mustRegister(t, s, "tok", t0, node("pending", 2))
	tests := []struct {
		name string
		in   regstore.Intent
		want error
	}{
		{"unknown node", intent("r1", "no-such-node", 1, "", t0), regstore.ErrNotFound},
		{"pending node", intent("r2", "pending", 2, "", t0), regstore.ErrConflict},
		{"other key", intent("r3", "n1", 3, "", t0), regstore.ErrConflict},
		{"wrong serial", intent("r4", "n1", 1, "aa", t0), regstore.ErrConflict},
		{"empty request ID", intent("", "n1", 1, "", t0), errAny},
		{"short key hash", regstore.Intent{RequestID: "r5", NodeID: "n1", KeySHA256: []byte{1}}, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, claimed, err := s.ClaimIssuance(ctx(t), tt.in)
			if claimed {
				t.Fatal("claimed")
			}
			if tt.want == errAny {
				if err == nil || errors.Is(err, regstore.ErrConflict) || errors.Is(err, regstore.ErrNotFound) {
					t.Fatalf("err = %v, want a plain error", err)
				}
				return
			}
			wantErr(t, "ClaimIssuance", err, tt.want)
		})
	}
	if list, err := s.ListIntents(ctx(t), at(time.Hour), 0); err != nil || len(list) != 0 {
		t.Errorf("ListIntents = %v, %v; want none", list, err)
	}
	mustClaim(t, s, intent("r6", "n1", 1, "", t0))
	if _, _, err := s.CompleteIssuance(ctx(t), "r6", regstore.Cert{}, t0); err == nil {
		t.Error("CompleteIssuance with an empty serial succeeded")
	}
	if _, _, err := s.CompleteIssuance(ctx(t), "no-such-request", cert("aa"), t0); !errors.Is(err, regstore.ErrNotFound) {
		t.Errorf("CompleteIssuance(unknown) = %v, want ErrNotFound", err)
	}
}

// testCompleteMovedOn: the node changed while the CA signed. The
// certificate is counted, since the CA issued it, but not installed.
func testCompleteMovedOn(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	approved(t, s, "revoked", 1)
	approved(t, s, "replaced", 2)
	approved(t, s, "deleted", 3)
	for i, id := range []string{"revoked", "replaced", "deleted"} {
		mustClaim(t, s, intent("req-"+id, id, i+1, "", t0))
	}
	if _, err := s.SetStatus(ctx(t), "revoked", []regstore.Status{regstore.StatusApproved}, regstore.StatusRevoked, at(time.Minute), "admin:x", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AllowReplacement(ctx(t), "replaced", at(time.Minute), admin); err != nil {
		t.Fatal(err)
	}
	repl := node("ignored", 12)
	repl.Status = regstore.StatusApproved
	if _, err := s.RegisterNode(ctx(t), "tok", at(time.Minute), repl, "replaced"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNode(ctx(t), "deleted", at(time.Minute), "admin:x"); err != nil {
		t.Fatal(err)
	}
	before := len(logOf(t, s))
	for _, id := range []string{"revoked", "replaced"} {
		got, installed, err := s.CompleteIssuance(ctx(t), "req-"+id, cert("c-"+id), at(2*time.Minute))
		if err != nil || installed {
			t.Fatalf("CompleteIssuance(%s) = %v, %v; want not installed", id, installed, err)
		}
		if got.Cert != nil || got.CertificatesIssued != 1 {
			t.Errorf("%s: cert %+v, issued %d; want none, 1", id, got.Cert, got.CertificatesIssued)
		}
		diff(t, id, got, mustGetNode(t, s, id))
	}
	got, installed, err := s.CompleteIssuance(ctx(t), "req-deleted", cert("c-deleted"), at(2*time.Minute))
	if err != nil || installed || got.ID != "" {
		t.Errorf("CompleteIssuance(deleted) = %+v, %v, %v; want the zero node, not installed", got, installed, err)
	}
	if after := len(logOf(t, s)); after != before {
		t.Errorf("%d events appended for certificates not installed, want 0", after-before)
	}
	if list, err := s.ListIntents(ctx(t), at(time.Hour), 0); err != nil || len(list) != 0 {
		t.Errorf("ListIntents = %v, %v; want none", list, err)
	}
}

// testIssuanceRace is several replicas renewing one node at once: one
// intent is opened, everyone completes that one, and it is counted once.
func testIssuanceRace(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	approved(t, s, "n1", 1)
	const n = 8
	var (
		opens    [n]regstore.Intent
		claims   [n]bool
		errs     [n]error
		complete [n]error
		start    = make(chan struct{})
		wg       sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			<-start
			opens[i], claims[i], errs[i] = s.ClaimIssuance(ctx(t), intent(fmt.Sprintf("req-%d", i), "n1", 1, "", t0))
			if errs[i] == nil {
				// Each replica completes the open intent with the CA's one
				// answer to it.
				_, _, complete[i] = s.CompleteIssuance(ctx(t), opens[i].RequestID, cert("aa01"), at(time.Minute))
			}
		})
	}
	close(start)
	wg.Wait()
	claimed, completed := 0, 0
	for i := range n {
		switch {
		case errs[i] == nil:
			if claims[i] {
				claimed++
			}
		case !errors.Is(errs[i], regstore.ErrConflict):
			// The intent was already completed: the serial moved on.
			t.Errorf("claim %d: %v", i, errs[i])
		}
		if errs[i] != nil {
			continue
		}
		switch {
		case complete[i] == nil:
			completed++
		case !errors.Is(complete[i], regstore.ErrNotFound):
			t.Errorf("complete %d: %v", i, complete[i])
		}
	}
	if claimed != 1 || completed != 1 {
		t.Errorf("%d claimed, %d completed; want 1 and 1", claimed, completed)
	}
	if got := mustGetNode(t, s, "n1"); got.CertificatesIssued != 1 || got.Cert == nil || got.Cert.Serial != "aa01" {
		t.Errorf("node after the race: cert %+v, issued %d", got.Cert, got.CertificatesIssued)
	}
}

// testListUncertified: the reconciler's view of approved nodes nobody is
// issuing a certificate for.
func testListUncertified(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 20))
	register := func(id string, i int, status regstore.Status, now time.Time) regstore.Node {
		n := node(id, i)
		n.Status = status
		return mustRegister(t, s, "tok", now, n)
	}
	first := register("first", 1, regstore.StatusApproved, t0)
	register("pending", 2, regstore.StatusPending, t0)
	register("issuing", 3, regstore.StatusApproved, t0)
	mustClaim(t, s, intent("req-3", "issuing", 3, "", t0))
	register("certified", 4, regstore.StatusApproved, t0)
	mustClaim(t, s, intent("req-4", "certified", 4, "", t0))
	if _, _, err := s.CompleteIssuance(ctx(t), "req-4", cert("aa04"), t0); err != nil {
		t.Fatal(err)
	}
	register("revoked", 5, regstore.StatusApproved, t0)
	if _, err := s.SetStatus(ctx(t), "revoked", []regstore.Status{regstore.StatusApproved}, regstore.StatusRevoked, t0, "admin:a", ""); err != nil {
		t.Fatal(err)
	}
	// Approved by an admin later: its approval is its last change.
	register("later", 6, regstore.StatusPending, t0)
	later, err := s.SetStatus(ctx(t), "later", []regstore.Status{regstore.StatusPending}, regstore.StatusApproved, at(30*time.Minute), "admin:a", "")
	if err != nil {
		t.Fatal(err)
	}
	young := register("young", 7, regstore.StatusApproved, at(40*time.Minute))

	ids := func(ns []regstore.Node) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.ID)
		}
		return out
	}
	tests := []struct {
		name   string
		before time.Time
		limit  int
		want   []string
	}{
		{"before anything", at(-time.Second), 0, nil},
		{"at the first registration", t0, 0, []string{"first"}},
		{"after the approval", at(35 * time.Minute), 0, []string{"first", "later"}},
		{"everything", at(time.Hour), 0, []string{"first", "later", "young"}},
		{"limited, oldest first", at(time.Hour), 2, []string{"first", "later"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListUncertified(ctx(t), tt.before, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			diff(t, "ListUncertified", tt.want, ids(got))
		})
	}
	got, err := s.ListUncertified(ctx(t), at(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "ListUncertified nodes", []regstore.Node{first, later, young}, got)

	// Once its intent is open, a node is the intents' business.
	mustClaim(t, s, intent("req-1", "first", 1, "", at(time.Hour)))
	if got, err := s.ListUncertified(ctx(t), at(time.Hour), 0); err != nil {
		t.Fatal(err)
	} else {
		diff(t, "ListUncertified after a claim", []string{"later", "young"}, ids(got))
	}
}

// testRegisterIssuing: registering an approved node opens its first
// issuance in the same transaction, as ClaimIssuance would have; a pending
// node, an empty request ID, a refused registration and a replaced node
// whose old issuance is still open get none.
func testRegisterIssuing(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	mustCreateToken(t, s, token("spent", 1))
	n := node("n1", 1)
	n.Status = regstore.StatusApproved
	got, open, err := s.RegisterIssuing(ctx(t), "tok", at(time.Minute), n, "", "req-1")
	if err != nil {
		t.Fatalf("RegisterIssuing: %v", err)
	}
	want := intent("req-1", "n1", 1, "", stored(at(time.Minute)))
	want.Hostname, want.CSR = n.Hostname, n.CSR
	diff(t, "RegisterIssuing's intent", want, open)
	checkUTC(t, open.CreatedAt)
	diff(t, "RegisterIssuing's node", mustGetNode(t, s, "n1"), got)
	list, err := s.ListIntents(ctx(t), at(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "ListIntents", []regstore.Intent{want}, list)
	// Another caller's claim finds it open, and completing it installs the
	// certificate as for a claimed one.
	again, claimed, err := s.ClaimIssuance(ctx(t), intent("req-2", "n1", 1, "", at(2*time.Minute)))
	if err != nil || claimed {
		t.Fatalf("ClaimIssuance after RegisterIssuing = %v, %v; want the open intent, not claimed", claimed, err)
	}
	diff(t, "ClaimIssuance after RegisterIssuing", want, again)
	if n, installed, err := s.CompleteIssuance(ctx(t), "req-1", cert("aa01"), at(3*time.Minute)); err != nil || !installed || n.Cert == nil {
		t.Fatalf("CompleteIssuance = %+v, %v, %v; want installed", n.Cert, installed, err)
	}
	diff(t, "events", []string{regstore.EventRegistered, regstore.EventCertificateIssued}, lastEventTypes(t, s, 2))

	// No intent for a pending node, nor without a request ID.
	if _, open, err := s.RegisterIssuing(ctx(t), "tok", t0, node("pending", 2), "", "req-3"); err != nil || open.RequestID != "" {
		t.Errorf("RegisterIssuing(pending) = %+v, %v; want no intent", open, err)
	}
	n = node("plain", 3)
	n.Status = regstore.StatusApproved
	if _, open, err := s.RegisterIssuing(ctx(t), "tok", t0, n, "", ""); err != nil || open.RequestID != "" {
		t.Errorf("RegisterIssuing(no request ID) = %+v, %v; want no intent", open, err)
	}
	// A refused registration opens nothing.
	mustRegister(t, s, "spent", t0, node("spender", 4))
	n = node("refused", 5)
	n.Status = regstore.StatusApproved
	_, _, err = s.RegisterIssuing(ctx(t), "spent", t0, n, "", "req-4")
	wantErr(t, "RegisterIssuing(spent token)", err, regstore.ErrTokenExhausted)
	if list, err := s.ListIntents(ctx(t), at(time.Hour), 0); err != nil || len(list) != 0 {
		t.Errorf("ListIntents = %+v, %v; want none", list, err)
	}

	// A replaced node whose old key's renewal is open keeps that one: one
	// issuance per node.
	mustClaim(t, s, intent("req-old", "n1", 1, "aa01", at(4*time.Minute)))
	if _, err := s.AllowReplacement(ctx(t), "n1", at(4*time.Minute), admin); err != nil {
		t.Fatal(err)
	}
	repl := node("ignored", 6)
	repl.Status = regstore.StatusApproved
	got, open, err = s.RegisterIssuing(ctx(t), "tok", at(5*time.Minute), repl, "n1", "req-5")
	if err != nil || open.RequestID != "" || got.ID != "n1" || !bytes.Equal(got.KeySHA256, key(6)) {
		t.Fatalf("RegisterIssuing(replace, issuance open) = %s %x, %+v, %v; want n1 with the new key, no intent", got.ID, got.KeySHA256, open, err)
	}
	if list, err := s.ListIntents(ctx(t), at(time.Hour), 0); err != nil || len(list) != 1 || list[0].RequestID != "req-old" {
		t.Errorf("ListIntents = %+v, %v; want the old key's only", list, err)
	}
}

// testInstallIssuance: InstallIssuance installs as CompleteIssuance does
// when the node is as its intent found it, and otherwise (revoked,
// replaced, deleted) changes nothing: the intent stays open and nothing is
// counted, until CompleteIssuance closes it.
func testInstallIssuance(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 10))
	n := approved(t, s, "n1", 1)
	mustClaim(t, s, intent("req-n1", "n1", 1, "", t0))
	c := cert("aa01")
	got, installed, err := s.InstallIssuance(ctx(t), "req-n1", c, at(time.Minute))
	if err != nil || !installed {
		t.Fatalf("InstallIssuance = %v, %v; want installed", installed, err)
	}
	n.Cert, n.CertificatesIssued, n.UpdatedAt = storedCert(c), 1, stored(at(time.Minute))
	diff(t, "InstallIssuance", n, got)
	diff(t, "GetNode", n, mustGetNode(t, s, "n1"))
	diff(t, "event of the first certificate", []string{regstore.EventCertificateIssued}, lastEventTypes(t, s, 1))
	_, _, err = s.InstallIssuance(ctx(t), "req-n1", c, at(2*time.Minute))
	wantErr(t, "InstallIssuance again", err, regstore.ErrNotFound)
	_, _, err = s.InstallIssuance(ctx(t), "req-unknown", c, at(2*time.Minute))
	wantErr(t, "InstallIssuance(unknown)", err, regstore.ErrNotFound)

	approved(t, s, "revoked", 2)
	approved(t, s, "replaced", 3)
	approved(t, s, "deleted", 4)
	for i, id := range []string{"revoked", "replaced", "deleted"} {
		mustClaim(t, s, intent("req-"+id, id, i+2, "", t0))
	}
	if _, err := s.SetStatus(ctx(t), "revoked", []regstore.Status{regstore.StatusApproved}, regstore.StatusRevoked, at(time.Minute), admin, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AllowReplacement(ctx(t), "replaced", at(time.Minute), admin); err != nil {
		t.Fatal(err)
	}
	repl := node("ignored", 13)
	repl.Status = regstore.StatusApproved
	if _, err := s.RegisterNode(ctx(t), "tok", at(time.Minute), repl, "replaced"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNode(ctx(t), "deleted", at(time.Minute), admin); err != nil {
		t.Fatal(err)
	}
	before := len(logOf(t, s))
	for _, id := range []string{"revoked", "replaced", "deleted"} {
		var row regstore.Node
		if id != "deleted" {
			row = mustGetNode(t, s, id)
		}
		got, installed, err := s.InstallIssuance(ctx(t), "req-"+id, cert("c-"+id), at(2*time.Minute))
		if err != nil || installed || got.ID != "" {
			t.Fatalf("InstallIssuance(%s) = %s, %v, %v; want the zero node, not installed", id, got.ID, installed, err)
		}
		if id != "deleted" {
			diff(t, id+" after InstallIssuance", row, mustGetNode(t, s, id))
		}
	}
	if list, err := s.ListIntents(ctx(t), at(time.Hour), 0); err != nil || len(list) != 3 {
		t.Fatalf("ListIntents = %+v, %v; want the three still open", list, err)
	}
	if after := len(logOf(t, s)); after != before {
		t.Errorf("%d events appended by InstallIssuance of moved-on nodes, want 0", after-before)
	}
	for _, id := range []string{"revoked", "replaced"} {
		got, installed, err := s.CompleteIssuance(ctx(t), "req-"+id, cert("c-"+id), at(3*time.Minute))
		if err != nil || installed || got.CertificatesIssued != 1 || got.Cert != nil {
			t.Errorf("CompleteIssuance(%s) after InstallIssuance = %+v, %v, %v; want counted once, not installed", id, got, installed, err)
		}
	}
	if got, installed, err := s.CompleteIssuance(ctx(t), "req-deleted", cert("c-deleted"), at(3*time.Minute)); err != nil || installed || got.ID != "" {
		t.Errorf("CompleteIssuance(deleted) = %+v, %v, %v; want the zero node, not installed", got, installed, err)
	}
	if list, err := s.ListIntents(ctx(t), at(time.Hour), 0); err != nil || len(list) != 0 {
		t.Errorf("ListIntents = %+v, %v; want none", list, err)
	}
}
