package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/regstore"
)

func apiToken(id, role string, created time.Time) regstore.APIToken {
	return regstore.APIToken{ID: id, Name: "name-" + id, Role: role, SecretHash: key(-2), CreatedAt: created, CreatedBy: "admin:admin"}
}

// storedAPI is t as a store returns it.
func storedAPI(t regstore.APIToken) regstore.APIToken {
	for _, tm := range []*time.Time{&t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt, &t.RevokedAt} {
		if !tm.IsZero() {
			*tm = stored(*tm)
		}
	}
	return t
}

func mustGetAPIToken(t *testing.T, s regstore.Store, id string) regstore.APIToken {
	t.Helper()
	tok, err := s.GetAPIToken(ctx(t), id)
	if err != nil {
		t.Fatalf("GetAPIToken(%s): %v", id, err)
	}
	return tok
}

func testAPITokenRoundTrip(t *testing.T, s regstore.Store) {
	full := apiToken("a1", "admin", t0)
	full.ExpiresAt, full.LastUsedAt, full.RevokedAt = at(time.Hour), at(time.Minute), at(2*time.Minute)
	tests := []struct {
		name string
		tok  regstore.APIToken
	}{
		{"full", full},
		{"never expires, never used", apiToken("a2", "viewer", t0)},
		{"no name", regstore.APIToken{ID: "a3", Role: "operator", SecretHash: key(3), CreatedAt: t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateAPIToken(ctx(t), tt.tok); err != nil {
				t.Fatalf("CreateAPIToken: %v", err)
			}
			got := mustGetAPIToken(t, s, tt.tok.ID)
			diff(t, "GetAPIToken", storedAPI(tt.tok), got)
			checkUTC(t, got.CreatedAt)
			if got.Expired(at(time.Minute)) {
				t.Errorf("%s expired an hour early", tt.tok.ID)
			}
		})
	}
	if got := mustGetAPIToken(t, s, "a1"); !got.Revoked() || !got.Expired(at(time.Hour)) {
		t.Errorf("a1 = %+v, want revoked and expired at its ExpiresAt", got)
	}
	_, err := s.GetAPIToken(ctx(t), "unknown")
	wantErr(t, "GetAPIToken(unknown)", err, regstore.ErrNotFound)
}

func testAPITokenInvalid(t *testing.T, s regstore.Store) {
	good := apiToken("ok", "viewer", t0)
	if err := s.CreateAPIToken(ctx(t), good); err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	dup := apiToken("ok", "admin", t0)
	wantErr(t, "CreateAPIToken(duplicate)", s.CreateAPIToken(ctx(t), dup), regstore.ErrConflict)
	if got := mustGetAPIToken(t, s, "ok"); got.Role != "viewer" {
		t.Errorf("a duplicate changed the token's role to %q", got.Role)
	}
	for name, mutate := range map[string]func(*regstore.APIToken){
		"no ID":      func(tk *regstore.APIToken) { tk.ID = "" },
		"short hash": func(tk *regstore.APIToken) { tk.SecretHash = []byte("short") },
		"bad role":   func(tk *regstore.APIToken) { tk.Role = "root" },
	} {
		tk := apiToken("bad-"+name, "viewer", t0)
		mutate(&tk)
		if err := s.CreateAPIToken(ctx(t), tk); err == nil {
			t.Errorf("CreateAPIToken(%s) succeeded", name)
		}
	}
	toks, err := s.ListAPITokens(ctx(t), true, t0)
	if err != nil || len(toks) != 1 {
		t.Errorf("ListAPITokens after refusals = %d tokens, %v; want only ok", len(toks), err)
	}
}

func testListAPITokens(t *testing.T, s regstore.Store) {
	now := at(time.Hour)
	expired := apiToken("c-expired", "viewer", at(2*time.Second))
	expired.ExpiresAt = at(time.Minute)
	atNow := apiToken("d-expires-now", "viewer", at(3*time.Second))
	atNow.ExpiresAt = now
	later := apiToken("e-later", "operator", at(4*time.Second))
	later.ExpiresAt = at(2 * time.Hour)
	toks := []regstore.APIToken{
		later, expired, atNow,
		apiToken("b-active", "admin", at(time.Second)),
		apiToken("a-tie", "viewer", at(time.Second)),
		apiToken("f-revoked", "admin", at(5*time.Second)),
	}
	for _, tk := range toks {
		if err := s.CreateAPIToken(ctx(t), tk); err != nil {
			t.Fatalf("CreateAPIToken(%s): %v", tk.ID, err)
		}
	}
	if _, err := s.RevokeAPIToken(ctx(t), "f-revoked", at(10*time.Second), "admin:admin"); err != nil {
		t.Fatalf("RevokeAPIToken: %v", err)
	}
	ids := func(ts []regstore.APIToken) []string {
		var out []string
		for _, tk := range ts {
			out = append(out, tk.ID)
		}
		return out
	}
	active, err := s.ListAPITokens(ctx(t), false, now)
	if err != nil {
		t.Fatalf("ListAPITokens: %v", err)
	}
	diff(t, "active", []string{"a-tie", "b-active", "e-later"}, ids(active))
	all, err := s.ListAPITokens(ctx(t), true, now)
	if err != nil {
		t.Fatalf("ListAPITokens(all): %v", err)
	}
	diff(t, "all", []string{"a-tie", "b-active", "c-expired", "d-expires-now", "e-later", "f-revoked"}, ids(all))
}

func testRevokeAPIToken(t *testing.T, s regstore.Store) {
	if err := s.CreateAPIToken(ctx(t), apiToken("r", "operator", t0)); err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	var first regstore.APIToken
	evs := newEvents(t, s, func() {
		var err error
		if first, err = s.RevokeAPIToken(ctx(t), "r", at(time.Minute), "token:0123456789abcdef/ops"); err != nil {
			t.Fatalf("RevokeAPIToken: %v", err)
		}
	})
	diff(t, "events of a revocation", []eventlog.Event{event(regstore.EventAPITokenRevoked, "", at(time.Minute),
		"api_token", "r", "name", "name-r", "actor", "token:0123456789abcdef/ops")}, withoutCursors(evs))
	if !first.RevokedAt.Equal(stored(at(time.Minute))) {
		t.Errorf("RevokedAt = %v, want %v", first.RevokedAt, at(time.Minute))
	}
	var again regstore.APIToken
	evs = newEvents(t, s, func() {
		var err error
		if again, err = s.RevokeAPIToken(ctx(t), "r", at(time.Hour), "admin:admin"); err != nil {
			t.Fatalf("RevokeAPIToken again: %v", err)
		}
	})
	if !again.RevokedAt.Equal(first.RevokedAt) || len(evs) != 0 {
		t.Errorf("a second revocation moved RevokedAt to %v, or appended %v", again.RevokedAt, evs)
	}
	diff(t, "GetAPIToken after revoke", again, mustGetAPIToken(t, s, "r"))
	evs = newEvents(t, s, func() {
		_, err := s.RevokeAPIToken(ctx(t), "unknown", at(time.Hour), "admin:admin")
		wantErr(t, "RevokeAPIToken(unknown)", err, regstore.ErrNotFound)
	})
	if len(evs) != 0 {
		t.Errorf("revoking an unknown token appended %v", evs)
	}
}

// testAPITokenEvents: a creation is in the log with who did it; a refused
// one is not.
func testAPITokenEvents(t *testing.T, s regstore.Store) {
	tok := apiToken("e1", "admin", at(time.Second))
	tok.CreatedBy = "admin:alice"
	evs := newEvents(t, s, func() {
		if err := s.CreateAPIToken(ctx(t), tok); err != nil {
			t.Fatal(err)
		}
	})
	diff(t, "events of a creation", []eventlog.Event{event(regstore.EventAPITokenCreated, "", at(time.Second),
		"api_token", "e1", "name", "name-e1", "role", "admin", "actor", "admin:alice")}, withoutCursors(evs))
	evs = newEvents(t, s, func() {
		wantErr(t, "CreateAPIToken(duplicate)", s.CreateAPIToken(ctx(t), tok), regstore.ErrConflict)
	})
	if len(evs) != 0 {
		t.Errorf("a refused creation appended %v", evs)
	}
}

func testTouchAPITokens(t *testing.T, s regstore.Store) {
	for _, id := range []string{"t1", "t2", "t3"} {
		if err := s.CreateAPIToken(ctx(t), apiToken(id, "viewer", t0)); err != nil {
			t.Fatalf("CreateAPIToken: %v", err)
		}
	}
	if err := s.TouchAPITokens(ctx(t), map[string]time.Time{"t1": at(time.Minute), "t2": at(2 * time.Minute), "gone": at(time.Hour)}); err != nil {
		t.Fatalf("TouchAPITokens: %v", err)
	}
	// An older batch (a slower replica's) never moves a time back.
	if err := s.TouchAPITokens(ctx(t), map[string]time.Time{"t1": at(3 * time.Minute), "t2": at(time.Second)}); err != nil {
		t.Fatalf("TouchAPITokens: %v", err)
	}
	want := map[string]time.Time{"t1": stored(at(3 * time.Minute)), "t2": stored(at(2 * time.Minute)), "t3": {}}
	for id, w := range want {
		if got := mustGetAPIToken(t, s, id).LastUsedAt; !got.Equal(w) {
			t.Errorf("%s LastUsedAt = %v, want %v", id, got, w)
		}
	}
	if err := s.TouchAPITokens(ctx(t), nil); err != nil {
		t.Errorf("TouchAPITokens(nil): %v", err)
	}
	// Replicas flush at once.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := s.TouchAPITokens(ctx(t), map[string]time.Time{"t1": at(time.Duration(10+i) * time.Minute), "t3": at(time.Duration(10+i) * time.Minute)}); err != nil {
				t.Errorf("concurrent TouchAPITokens: %v", err)
			}
		})
	}
	wg.Wait()
	for _, id := range []string{"t1", "t3"} {
		if got := mustGetAPIToken(t, s, id).LastUsedAt; !got.Equal(stored(at(17 * time.Minute))) {
			t.Errorf("%s LastUsedAt after concurrent flushes = %v, want the latest", id, got)
		}
	}
}
