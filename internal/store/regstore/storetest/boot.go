package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/regstore"
)

func digest(i int) string { return fmt.Sprintf("sha256:%x", key(i+3_000_000)) }

// tpmNode registers an approved test node with an attestation key.
func tpmNode(t *testing.T, s regstore.Store, id string, i int) regstore.Node {
	t.Helper()
	mustCreateToken(t, s, token("tok-"+id, 1))
	n := node(id, i)
	n.Status = regstore.StatusApproved
	n.IdentitySource, n.EKHash, n.EKCertificate = "tpm", fmt.Sprintf("sha256:%x", key(i+2_000_000)), "none"
	n.AKPublic = fmt.Appendf(nil, "AK %d", i)
	return mustRegister(t, s, "tok-"+id, t0, n)
}

func testEKLabels(t *testing.T, s regstore.Store) {
	a, b, c := digest(1), digest(2), digest(3)
	if _, _, err := s.ImportEKs(ctx(t), []regstore.EnrolledEK{{Hash: a, Label: "rack 1 slot 4"}, {Hash: b}}, t0, admin); err != nil {
		t.Fatal(err)
	}
	got, err := s.EKLabels(ctx(t), []string{a, b, c, ""})
	if err != nil {
		t.Fatalf("EKLabels: %v", err)
	}
	diff(t, "EKLabels", map[string]string{a: "rack 1 slot 4", b: ""}, got)
	if got, err := s.EKLabels(ctx(t), nil); err != nil || len(got) != 0 {
		t.Errorf("EKLabels(nil) = %v, %v; want nothing", got, err)
	}
}

// testRecordBoot: each accepted quote is recorded with its time; the
// digest's changes and the violation's are events, repeats are not.
func testRecordBoot(t *testing.T, s regstore.Store) {
	n := tpmNode(t, s, "n1", 1)
	if n.BootPCRDigest != "" || !n.BootPCRDigestAt.IsZero() || n.BootNonceTime != 0 || string(n.AKPublic) != "AK 1" {
		t.Fatalf("new node boot = %q %v %d, AK %q; want none and its AK", n.BootPCRDigest, n.BootPCRDigestAt, n.BootNonceTime, n.AKPublic)
	}
	steps := []struct {
		name       string
		b          regstore.Boot
		now        time.Time
		wantEvents []string
	}{
		{"first", regstore.Boot{PCRDigest: digest(1), NonceTime: 10}, at(time.Minute), []string{regstore.EventBootDigestChanged}},
		{"same boot again", regstore.Boot{PCRDigest: digest(1), NonceTime: 20}, at(2 * time.Minute), nil},
		{"new digest", regstore.Boot{PCRDigest: digest(2), NonceTime: 30}, at(3 * time.Minute), []string{regstore.EventBootDigestChanged}},
		{"violation", regstore.Boot{PCRDigest: digest(2), NonceTime: 40, PolicyViolation: "not allowed"}, at(4 * time.Minute),
			[]string{regstore.EventBootPolicyViolation}},
		{"violation kept", regstore.Boot{PCRDigest: digest(2), NonceTime: 50, PolicyViolation: "not allowed"}, at(5 * time.Minute), nil},
		{"fixed", regstore.Boot{PCRDigest: digest(1), NonceTime: 60}, at(6 * time.Minute),
			[]string{regstore.EventBootDigestChanged, regstore.EventBootPolicyCleared}},
	}
	prev := ""
	for _, st := range steps {
		var got regstore.Node
		evs := newEvents(t, s, func() {
			var err error
			if got, err = s.RecordBoot(ctx(t), "n1", st.b, st.now); err != nil {
				t.Fatalf("%s: RecordBoot: %v", st.name, err)
			}
		})
		diff(t, st.name+": events", st.wantEvents, types(evs))
		if got.BootPCRDigest != st.b.PCRDigest || !got.BootPCRDigestAt.Equal(stored(st.now)) || got.BootNonceTime != st.b.NonceTime ||
			got.BootPolicyViolation != st.b.PolicyViolation {
			t.Errorf("%s: node boot = %q at %v nonce %d violation %q; want %+v at %v", st.name, got.BootPCRDigest, got.BootPCRDigestAt,
				got.BootNonceTime, got.BootPolicyViolation, st.b, stored(st.now))
		}
		checkUTC(t, got.BootPCRDigestAt)
		diff(t, st.name+": GetNode", got, mustGetNode(t, s, "n1"))
		for _, e := range ofType(evs, regstore.EventBootDigestChanged) {
			diff(t, st.name+": digest event", withoutEmpty(map[string]string{
				regstore.DetailDigest: st.b.PCRDigest, regstore.DetailPreviousDigest: prev}), e.Details)
		}
		for _, e := range ofType(evs, regstore.EventBootPolicyViolation) {
			diff(t, st.name+": violation event", map[string]string{regstore.DetailReason: "not allowed"}, e.Details)
		}
		for _, e := range ofType(evs, regstore.EventBootPolicyCleared) {
			diff(t, st.name+": cleared event", map[string]string{regstore.DetailPreviousReason: "not allowed"}, e.Details)
		}
		prev = st.b.PCRDigest
	}
}

func withoutEmpty(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// testRecordBootErrors: an old or reused nonce and an unknown node change
// nothing and append nothing.
func testRecordBootErrors(t *testing.T, s regstore.Store) {
	tpmNode(t, s, "n1", 1)
	if _, err := s.RecordBoot(ctx(t), "n1", regstore.Boot{PCRDigest: digest(1), NonceTime: 100}, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	before := mustGetNode(t, s, "n1")
	for _, tt := range []struct {
		name string
		id   string
		b    regstore.Boot
		want error
	}{
		{"same nonce", "n1", regstore.Boot{PCRDigest: digest(2), NonceTime: 100}, regstore.ErrStaleNonce},
		{"older nonce", "n1", regstore.Boot{PCRDigest: digest(2), NonceTime: 99}, regstore.ErrStaleNonce},
		{"unknown node", "nobody", regstore.Boot{PCRDigest: digest(2), NonceTime: 200}, regstore.ErrNotFound},
	} {
		evs := newEvents(t, s, func() {
			_, err := s.RecordBoot(ctx(t), tt.id, tt.b, at(time.Hour))
			wantErr(t, tt.name, err, tt.want)
		})
		if len(evs) != 0 {
			t.Errorf("%s appended %v", tt.name, types(evs))
		}
	}
	diff(t, "node after refusals", before, mustGetNode(t, s, "n1"))
	if _, err := s.SetBootPolicyViolation(ctx(t), "nobody", "x", t0); err == nil {
		t.Error("SetBootPolicyViolation of an unknown node succeeded")
	} else {
		wantErr(t, "SetBootPolicyViolation(unknown)", err, regstore.ErrNotFound)
	}
}

// testRecordBootConcurrent: of many callers quoting one nonce at once,
// exactly one is accepted.
func testRecordBootConcurrent(t *testing.T, s regstore.Store) {
	tpmNode(t, s, "n1", 1)
	const callers = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, used int
	)
	for range callers {
		wg.Go(func() {
			_, err := s.RecordBoot(ctx(t), "n1", regstore.Boot{PCRDigest: digest(1), NonceTime: 7}, at(time.Minute))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, regstore.ErrStaleNonce):
				used++
			default:
				t.Errorf("RecordBoot: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || used != callers-1 {
		t.Errorf("accepted %d, refused as stale %d; want 1 and %d", ok, used, callers-1)
	}
}

// testBootPolicyViolation: a violation without a quote (a node with no
// evidence) is written, with its event, only when it changes.
func testBootPolicyViolation(t *testing.T, s regstore.Store) {
	mustCreateToken(t, s, token("tok", 1))
	mustRegister(t, s, "tok", t0, node("seed", 0))
	for _, st := range []struct {
		violation string
		want      []string
	}{
		{"no boot evidence", []string{regstore.EventBootPolicyViolation}},
		{"no boot evidence", nil},
		{"", []string{regstore.EventBootPolicyCleared}},
		{"", nil},
	} {
		evs := newEvents(t, s, func() {
			n, err := s.SetBootPolicyViolation(ctx(t), "seed", st.violation, at(time.Minute))
			if err != nil {
				t.Fatalf("SetBootPolicyViolation(%q): %v", st.violation, err)
			}
			if n.BootPolicyViolation != st.violation || n.ID != "seed" {
				t.Errorf("node %s violation %q, want seed and %q", n.ID, n.BootPolicyViolation, st.violation)
			}
		})
		diff(t, fmt.Sprintf("events of %q", st.violation), st.want, types(evs))
	}
}

// testReplaceClearsBoot: a new board brings its own AK; the old board's
// boot evidence goes, and the nonce time stays, so its quotes stay old.
func testReplaceClearsBoot(t *testing.T, s regstore.Store) {
	old := tpmNode(t, s, "old", 1)
	if _, err := s.RecordBoot(ctx(t), "old", regstore.Boot{PCRDigest: digest(1), NonceTime: 50, PolicyViolation: "v"}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AllowReplacement(ctx(t), "old", t0, admin); err != nil {
		t.Fatal(err)
	}
	mustCreateToken(t, s, token("tok2", 1))
	repl := node("x", 5)
	repl.HardwareUUID = old.HardwareUUID
	repl.AKPublic = []byte("new AK")
	got, err := s.RegisterNode(ctx(t), "tok2", at(time.Minute), repl, "old")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.AKPublic) != "new AK" || got.BootPCRDigest != "" || !got.BootPCRDigestAt.IsZero() || got.BootPolicyViolation != "" || got.BootNonceTime != 50 {
		t.Errorf("replaced node AK %q boot %q at %v violation %q nonce %d; want the new AK, no boot, nonce time 50",
			got.AKPublic, got.BootPCRDigest, got.BootPCRDigestAt, got.BootPolicyViolation, got.BootNonceTime)
	}
}

func testPCRPolicies(t *testing.T, s regstore.Store) {
	if ps, err := s.ListPCRPolicies(ctx(t)); err != nil || len(ps) != 0 {
		t.Fatalf("ListPCRPolicies on an empty store = %v, %v", ps, err)
	}
	a := regstore.PCRPolicy{LabelKey: "image", LabelValue: "node-4.5", Digests: []string{digest(1), digest(2)}, Enforce: true, UpdatedAt: t0}
	b := regstore.PCRPolicy{LabelKey: "example.com/rack", LabelValue: "r1", Digests: []string{digest(3)}, UpdatedAt: at(time.Minute)}
	for _, p := range []regstore.PCRPolicy{a, b} {
		got, err := s.SetPCRPolicy(ctx(t), p, admin)
		if err != nil {
			t.Fatalf("SetPCRPolicy: %v", err)
		}
		p.UpdatedAt = stored(p.UpdatedAt)
		diff(t, "SetPCRPolicy", p, got)
		checkUTC(t, got.UpdatedAt)
	}
	// Setting a label again replaces its policy.
	a2 := regstore.PCRPolicy{LabelKey: "image", LabelValue: "node-4.5", Digests: []string{digest(4)}, UpdatedAt: at(time.Hour)}
	if _, err := s.SetPCRPolicy(ctx(t), a2, admin); err != nil {
		t.Fatal(err)
	}
	a2.UpdatedAt, b.UpdatedAt = stored(a2.UpdatedAt), stored(b.UpdatedAt)
	ps, err := s.ListPCRPolicies(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "ListPCRPolicies", []regstore.PCRPolicy{b, a2}, ps)
	if err := s.DeletePCRPolicy(ctx(t), "image", "node-4.5", t0, admin); err != nil {
		t.Fatalf("DeletePCRPolicy: %v", err)
	}
	wantErr(t, "DeletePCRPolicy again", s.DeletePCRPolicy(ctx(t), "image", "node-4.5", t0, admin), regstore.ErrNotFound)
	wantErr(t, "DeletePCRPolicy of another value", s.DeletePCRPolicy(ctx(t), "example.com/rack", "r2", t0, admin), regstore.ErrNotFound)
	ps, err = s.ListPCRPolicies(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "ListPCRPolicies after delete", []regstore.PCRPolicy{b}, ps)
}

// testSecret: the first candidate stored wins, for every later caller.
func testSecret(t *testing.T, s regstore.Store) {
	first, err := s.Secret(ctx(t), "quote-nonce", []byte("first"))
	if err != nil || string(first) != "first" {
		t.Fatalf("Secret = %q, %v; want first", first, err)
	}
	again, err := s.Secret(ctx(t), "quote-nonce", []byte("second"))
	if err != nil || string(again) != "first" {
		t.Errorf("Secret again = %q, %v; want first", again, err)
	}
	other, err := s.Secret(ctx(t), "other", []byte("second"))
	if err != nil || string(other) != "second" {
		t.Errorf("Secret(other) = %q, %v; want second", other, err)
	}
	if _, err := s.Secret(ctx(t), "empty", nil); err == nil {
		t.Error("Secret with an empty candidate succeeded")
	}
}
