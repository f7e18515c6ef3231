package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/regstore"
)

func consoleSession(i int, link bool, tokenID string, created time.Time, ttl time.Duration) regstore.ConsoleSession {
	p := "admin:ops"
	if tokenID != "" {
		p = "token:" + tokenID + ";role=operator;name=ci"
	}
	return regstore.ConsoleSession{SecretSHA256: key(1000 + i), Link: link, Principal: p, TokenID: tokenID,
		CreatedAt: created, ExpiresAt: created.Add(ttl)}
}

func mustCreateConsole(t *testing.T, s regstore.Store, c regstore.ConsoleSession) {
	t.Helper()
	if err := s.CreateConsoleSession(ctx(t), c); err != nil {
		t.Fatalf("CreateConsoleSession: %v", err)
	}
}

// testConsoleSessions: a session is found by its hash until it expires,
// ends, or its API token is revoked or expires; a link is not a session,
// is spent once into the session it becomes, and not after it expired;
// expired rows go when another is made.
func testConsoleSessions(t *testing.T, s regstore.Store) {
	live := apiToken("0123456789abcdef", "operator", t0)
	live.ExpiresAt = at(10 * time.Hour)
	if err := s.CreateAPIToken(ctx(t), live); err != nil {
		t.Fatal(err)
	}
	admin := consoleSession(1, false, "", t0, time.Hour)
	tok := consoleSession(2, false, live.ID, t0, 20*time.Hour)
	link := consoleSession(3, true, live.ID, t0, 5*time.Minute)
	mustCreateConsole(t, s, admin)
	mustCreateConsole(t, s, tok)
	mustCreateConsole(t, s, link)
	if err := s.CreateConsoleSession(ctx(t), admin); err == nil {
		t.Error("a second session with the same hash was recorded")
	}
	// Minting the link is an event naming whom it signs in; sessions and
	// the refused duplicate are not.
	links := ofType(logOf(t, s), regstore.EventSignInLinkCreated)
	if len(links) != 1 || links[0].NodeID != "" || links[0].Details[regstore.DetailActor] != link.Principal {
		t.Errorf("sign_in_link_created events %+v, want one of no node by %q", links, link.Principal)
	}
	want := admin
	want.CreatedAt, want.ExpiresAt = stored(admin.CreatedAt), stored(admin.ExpiresAt)
	got, err := s.ConsoleSession(ctx(t), admin.SecretSHA256, at(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "ConsoleSession", want, got)
	for _, tt := range []struct {
		name string
		sum  []byte
		now  time.Duration
	}{
		{"unknown", key(999), 0},
		{"a link is not a session", link.SecretSHA256, 0},
		{"expired", admin.SecretSHA256, time.Hour},
		{"its token expired", tok.SecretSHA256, 10 * time.Hour},
	} {
		_, err := s.ConsoleSession(ctx(t), tt.sum, at(tt.now))
		wantErr(t, tt.name, err, regstore.ErrNotFound)
	}

	// The link becomes a session for its principal, once.
	next := consoleSession(4, false, "", at(time.Minute), 8*time.Hour)
	next.Principal = "" // the link's is taken
	made, err := s.UseConsoleLink(ctx(t), link.SecretSHA256, next)
	if err != nil || made.Principal != link.Principal || made.TokenID != live.ID || made.Link {
		t.Fatalf("UseConsoleLink = %+v, %v; want a session of the link's principal", made, err)
	}
	if _, err := s.ConsoleSession(ctx(t), next.SecretSHA256, at(2*time.Minute)); err != nil {
		t.Errorf("the session a link became: %v", err)
	}
	_, err = s.UseConsoleLink(ctx(t), link.SecretSHA256, consoleSession(5, false, "", at(2*time.Minute), time.Hour))
	wantErr(t, "a link used twice", err, regstore.ErrNotFound)
	late := consoleSession(6, true, "", t0, 5*time.Minute)
	mustCreateConsole(t, s, late)
	_, err = s.UseConsoleLink(ctx(t), late.SecretSHA256, consoleSession(7, false, "", at(5*time.Minute), time.Hour))
	wantErr(t, "an expired link", err, regstore.ErrNotFound)
	_, err = s.UseConsoleLink(ctx(t), admin.SecretSHA256, consoleSession(8, false, "", at(time.Minute), time.Hour))
	wantErr(t, "a session used as a link", err, regstore.ErrNotFound)

	// Revoking the token ends its sessions and links at once.
	revokedLink := consoleSession(9, true, live.ID, at(3*time.Minute), 5*time.Minute)
	mustCreateConsole(t, s, revokedLink)
	if _, err := s.RevokeAPIToken(ctx(t), live.ID, at(3*time.Minute), admin.Principal); err != nil {
		t.Fatal(err)
	}
	for name, sum := range map[string][]byte{"session": tok.SecretSHA256, "link's session": next.SecretSHA256} {
		_, err := s.ConsoleSession(ctx(t), sum, at(4*time.Minute))
		wantErr(t, name+" of a revoked token", err, regstore.ErrNotFound)
	}
	_, err = s.UseConsoleLink(ctx(t), revokedLink.SecretSHA256, consoleSession(10, false, "", at(4*time.Minute), time.Hour))
	wantErr(t, "a link of a revoked token", err, regstore.ErrNotFound)

	// Sign-out ends a session; ending it again is no error.
	fresh := consoleSession(11, false, "", at(4*time.Minute), time.Hour)
	mustCreateConsole(t, s, fresh)
	for range 2 {
		if err := s.EndConsoleSession(ctx(t), fresh.SecretSHA256); err != nil {
			t.Fatalf("EndConsoleSession: %v", err)
		}
	}
	_, err = s.ConsoleSession(ctx(t), fresh.SecretSHA256, at(5*time.Minute))
	wantErr(t, "an ended session", err, regstore.ErrNotFound)

	// Made after the admin session expired, a new one drops it: the same
	// hash may then be recorded again.
	mustCreateConsole(t, s, consoleSession(12, false, "", at(2*time.Hour), time.Hour))
	mustCreateConsole(t, s, consoleSession(1, false, "", at(2*time.Hour), time.Hour))
}

// testConsoleLinkRace: of many replicas spending one link at once,
// exactly one gets its session.
func testConsoleLinkRace(t *testing.T, s regstore.Store) {
	link := consoleSession(1, true, "", t0, 5*time.Minute)
	mustCreateConsole(t, s, link)
	const racers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  int
		errs []error
	)
	for i := range racers {
		wg.Go(func() {
			_, err := s.UseConsoleLink(ctx(t), link.SecretSHA256, consoleSession(100+i, false, "", at(time.Minute), time.Hour))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !isNotFound(err):
				errs = append(errs, fmt.Errorf("racer %d: %w", i, err))
			}
		})
	}
	wg.Wait()
	if won != 1 || len(errs) > 0 {
		t.Fatalf("%d of %d racers spent the link (errors %v), want exactly one and the rest ErrNotFound", won, racers, errs)
	}
}

func isNotFound(err error) bool { return errors.Is(err, regstore.ErrNotFound) }
