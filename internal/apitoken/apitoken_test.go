package apitoken

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/store/regstore"
)

func TestGenerateParse(t *testing.T) {
	id, tok, hash := Generate()
	if !strings.HasPrefix(tok, Prefix) || len(tok) != Len {
		t.Fatalf("Generate() token %q: want %q and %d characters", tok, Prefix, Len)
	}
	gotID, secret, err := Parse(tok)
	if err != nil || gotID != id {
		t.Fatalf("Parse(generated) = %q, %v; want ID %q", gotID, err, id)
	}
	if !Matches(secret, hash) || Matches(secret+"0", hash) || Matches(strings.Repeat("0", secretLen), hash) {
		t.Error("Matches does not tell the secret from others")
	}
	if id2, tok2, _ := Generate(); id2 == id || tok2 == tok {
		t.Error("two tokens are the same")
	}
	for _, bad := range []string{
		"", "Bearer " + tok, tok[1:], tok + "0", strings.ToUpper(tok), "berth_" + id + "." + secret,
		"berth_" + strings.Repeat("g", 16) + "_" + secret, "berth_" + id + "_" + strings.Repeat("x", 64),
		strings.Replace(tok, "_", "-", 1), "abcdefgh.abcdefghijklmnopqrstuvwxyz",
	} {
		if _, _, err := Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

// failingStore fails TouchAPITokens while fail is set.
type failingStore struct {
	regstore.Store
	fail bool
}

func (f *failingStore) TouchAPITokens(ctx context.Context, used map[string]time.Time) error {
	if f.fail {
		return errors.New("database is down")
	}
	return f.Store.TouchAPITokens(ctx, used)
}

func newStore(t *testing.T) regstore.Store {
	s, err := regstore.Open(context.Background(), db.SQLite, filepath.Join(t.TempDir(), "registration.db"))
	if err != nil {
		t.Fatalf("NewSQLite: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func mint(t *testing.T, s regstore.Store, role, name string, created, expires time.Time) (string, regstore.APIToken) {
	t.Helper()
	id, tok, hash := Generate()
	rec := regstore.APIToken{ID: id, Name: name, Role: role, SecretHash: hash, CreatedAt: created, ExpiresAt: expires, CreatedBy: "admin:admin"}
	if err := s.CreateAPIToken(t.Context(), rec); err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	return tok, rec
}

func TestCheckerAuthenticate(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clk := clock.NewFake(now)
	store := newStore(t)
	c, err := NewChecker(Config{Store: store, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	viewer, vrec := mint(t, store, "viewer", "dashboard", now, time.Time{})
	operator, orec := mint(t, store, "operator", "", now, now.Add(time.Hour))
	expired, _ := mint(t, store, "admin", "old", now.Add(-2*time.Hour), now)
	revoked, rrec := mint(t, store, "admin", "gone", now, time.Time{})
	if _, err := store.RevokeAPIToken(t.Context(), rrec.ID, now, "admin:admin"); err != nil {
		t.Fatal(err)
	}
	unknownID, unknown, _ := Generate()
	_ = unknownID
	// The real ID with another secret: as unknown as no token at all.
	wrongSecret := viewer[:len(viewer)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", viewer[len(viewer)-1])+1)%16])

	tests := []struct {
		name    string
		bearer  string
		want    Principal
		wantErr error
	}{
		{"viewer", viewer, Principal{ID: vrec.ID, Name: "dashboard", Role: mtls.RoleViewer}, nil},
		{"operator without a name", operator, Principal{ID: orec.ID, Role: mtls.RoleOperator}, nil},
		{"expired at its expiry", expired, Principal{}, ErrExpired},
		{"revoked", revoked, Principal{}, ErrRevoked},
		{"unknown", unknown, Principal{}, ErrUnknown},
		{"wrong secret", wrongSecret, Principal{}, ErrUnknown},
		{"malformed", "not-a-token", Principal{}, ErrMalformed},
		{"empty", "", Principal{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Authenticate(t.Context(), tt.bearer)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("Authenticate = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if got := c.Identity(t, viewer); got.String() != "token:"+vrec.ID+"/dashboard" || mtls.RoleOf(got) != mtls.RoleViewer {
		t.Errorf("identity of the viewer = %s (role %s)", got, mtls.RoleOf(got))
	}
	// An hour on, the operator's token has expired too.
	clk.Set(now.Add(time.Hour))
	if _, err := c.Authenticate(t.Context(), operator); !errors.Is(err, ErrExpired) {
		t.Errorf("operator an hour on: %v, want ErrExpired", err)
	}
}

// Identity authenticates bearer and returns the principal's identity.
func (c *Checker) Identity(t *testing.T, bearer string) mtls.Identity {
	t.Helper()
	p, err := c.Authenticate(t.Context(), bearer)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return p.Identity()
}

// TestLastUsedBatched: uses are written in one batch per flush, not one
// write per call; a failed flush keeps its times for the next.
func TestLastUsedBatched(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clk := clock.NewFake(now)
	store := &failingStore{Store: newStore(t)}
	c, err := NewChecker(Config{Store: store, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	tok, rec := mint(t, store, "viewer", "v", now, time.Time{})
	for i := range 100 {
		clk.Set(now.Add(time.Duration(i) * time.Second))
		if _, err := c.Authenticate(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	last := now.Add(99 * time.Second)
	if got, _ := store.GetAPIToken(t.Context(), rec.ID); !got.LastUsedAt.IsZero() {
		t.Errorf("last use written before a flush: %v", got.LastUsedAt)
	}
	if got := c.LastUsed(rec.ID); !got.Equal(last) {
		t.Errorf("LastUsed = %v, want %v", got, last)
	}
	store.fail = true
	if err := c.Flush(t.Context()); err == nil {
		t.Fatal("Flush with the database down succeeded")
	}
	if got := c.pending()[rec.ID]; !got.Equal(last) {
		t.Errorf("after a failed flush the pending use is %v, want %v kept", got, last)
	}
	store.fail = false
	if err := c.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.GetAPIToken(t.Context(), rec.ID); !got.LastUsedAt.Equal(last) {
		t.Errorf("stored LastUsedAt = %v, want %v", got.LastUsedAt, last)
	}
	if len(c.pending()) != 0 {
		t.Errorf("pending after a flush: %v", c.pending())
	}
}

// TestRunFlushesAtShutdown: Run writes what it collected when its context ends.
func TestRunFlushesAtShutdown(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	store := newStore(t)
	c, err := NewChecker(Config{Store: store, Clock: clock.NewFake(now)})
	if err != nil {
		t.Fatal(err)
	}
	tok, rec := mint(t, store, "admin", "a", now, time.Time{})
	if _, err := c.Authenticate(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if got, _ := store.GetAPIToken(t.Context(), rec.ID); !got.LastUsedAt.Equal(now) {
		t.Errorf("LastUsedAt after Run ended = %v, want %v", got.LastUsedAt, now)
	}
}
