package storetest

import (
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/regstore"
)

func testTokenRoundTrip(t *testing.T, s regstore.Store) {
	tests := []struct {
		name string
		tok  regstore.Token
	}{
		{"full", regstore.Token{
			ID: "tok-full", SecretHash: key(1), ExpiresAt: at(time.Hour), UsesLeft: 7, AutoApprove: true,
			Labels: map[string]string{"rack": "r1", "role": "worker", "ünï": "cødé"}, Description: "all fields",
			CreatedAt: t0,
		}},
		{"minimal", regstore.Token{ID: "tok-min", SecretHash: key(2), ExpiresAt: at(time.Minute), UsesLeft: 1, CreatedAt: t0}},
		{"revoked", regstore.Token{ID: "tok-rev", SecretHash: key(3), ExpiresAt: at(time.Minute), Revoked: true, CreatedAt: t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustCreateToken(t, s, tt.tok)
			got := mustGetToken(t, s, tt.tok.ID)
			want := tt.tok
			want.ExpiresAt, want.CreatedAt = stored(want.ExpiresAt), stored(want.CreatedAt)
			diff(t, "GetToken", want, got)
			checkUTC(t, got.ExpiresAt, got.CreatedAt)
		})
	}
	_, err := s.GetToken(ctx(t), "no-such-token")
	wantErr(t, "GetToken(unknown)", err, regstore.ErrNotFound)
}

func testCreateTokenConflict(t *testing.T, s regstore.Store) {
	first := token("tok", 3)
	mustCreateToken(t, s, first)
	second := token("tok", 9)
	second.Description = "second"
	wantErr(t, "CreateToken(duplicate)", s.CreateToken(ctx(t), second), regstore.ErrConflict)
	if got := mustGetToken(t, s, "tok"); got.UsesLeft != 3 || got.Description != first.Description {
		t.Errorf("duplicate CreateToken changed the token: %+v", got)
	}
}

func testListTokens(t *testing.T, s regstore.Store) {
	now := at(time.Minute)
	toks := []regstore.Token{
		// Created out of order, to check ordering by CreatedAt.
		{ID: "d-active-late", ExpiresAt: at(time.Hour), UsesLeft: 1, CreatedAt: at(3 * time.Second)},
		{ID: "a-active", ExpiresAt: at(time.Hour), UsesLeft: 5, CreatedAt: at(1 * time.Second)},
		{ID: "b-revoked", ExpiresAt: at(time.Hour), UsesLeft: 5, Revoked: true, CreatedAt: at(2 * time.Second)},
		{ID: "c-exhausted", ExpiresAt: at(time.Hour), UsesLeft: 0, CreatedAt: at(4 * time.Second)},
		{ID: "e-expired", ExpiresAt: at(time.Second), UsesLeft: 5, CreatedAt: at(0)},
		// Expiry is exclusive: a token expiring exactly now is expired.
		{ID: "f-expires-now", ExpiresAt: now, UsesLeft: 5, CreatedAt: at(5 * time.Second)},
		// Same CreatedAt as a-active: ties are broken by ID.
		{ID: "0-active-tie", ExpiresAt: at(time.Hour), UsesLeft: 1, CreatedAt: at(1 * time.Second)},
	}
	for _, tok := range toks {
		tok.SecretHash = key(0)
		mustCreateToken(t, s, tok)
	}
	tests := []struct {
		name            string
		includeInactive bool
		want            []string
	}{
		{"active", false, []string{"0-active-tie", "a-active", "d-active-late"}},
		{"all", true, []string{"e-expired", "0-active-tie", "a-active", "b-revoked", "d-active-late", "c-exhausted", "f-expires-now"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListTokens(ctx(t), tt.includeInactive, now)
			if err != nil {
				t.Fatalf("ListTokens: %v", err)
			}
			var ids []string
			for _, tok := range got {
				ids = append(ids, tok.ID)
				// A token is usable strictly before ExpiresAt.
				if active := !tok.Revoked && now.Before(tok.ExpiresAt) && tok.UsesLeft > 0; !tt.includeInactive && !active {
					t.Errorf("ListTokens(active) returned inactive token %s", tok.ID)
				}
			}
			diff(t, "ListTokens IDs", tt.want, ids)
		})
	}
	t.Run("empty store", func(t *testing.T) {
		got, err := s.ListTokens(ctx(t), false, at(100*time.Hour))
		if err != nil || len(got) != 0 {
			t.Errorf("ListTokens after expiry = %v, %v; want none", got, err)
		}
	})
}

func testRevokeToken(t *testing.T, s regstore.Store) {
	tok := token("tok", 2)
	mustCreateToken(t, s, tok)
	want := tok
	want.ExpiresAt, want.CreatedAt, want.Revoked = stored(tok.ExpiresAt), stored(tok.CreatedAt), true

	got, err := s.RevokeToken(ctx(t), "tok", t0, admin)
	if err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	diff(t, "RevokeToken", want, got)
	diff(t, "GetToken after revoke", want, mustGetToken(t, s, "tok"))

	// Revoking twice is not an error and changes nothing.
	got, err = s.RevokeToken(ctx(t), "tok", t0, admin)
	if err != nil {
		t.Fatalf("RevokeToken again: %v", err)
	}
	diff(t, "RevokeToken again", want, got)

	_, err = s.RevokeToken(ctx(t), "no-such-token", t0, admin)
	wantErr(t, "RevokeToken(unknown)", err, regstore.ErrNotFound)
}
