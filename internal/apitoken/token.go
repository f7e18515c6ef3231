// Package apitoken is berth's API tokens: bearer credentials of the admin
// API, each with a role (mtls.Role). It holds the token format, the check
// of a presented token against the registration store (Checker, with
// batched last-use times), and a client of that check for a process that
// has no store (Client, over the registration service's
// AuthenticateAPIToken). Both answer Authenticate(ctx, bearer) with the
// token's Principal, so the front door, the interceptor and the web
// console authenticate a token one way.
//
// A token is "berth_" ID "_" SECRET: ID is 16 lower-case hex digits (the
// token's name in lists and logs), SECRET 64 (256 random bits). Only
// SHA-256(SECRET) is stored; it is compared in constant time.
package apitoken

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/berth-dev/berth/internal/mtls"
)

// Prefix starts every API token, so that secret scanners and people can
// tell one from a bootstrap token ("id.secret").
const Prefix = "berth_"

const (
	idLen     = 16
	secretLen = 64
	// Len is the length of a whole token.
	Len = len(Prefix) + idLen + 1 + secretLen
)

// Public messages of a refused token: what a client sees, and what the
// errors below say.
const (
	MsgMalformed = `API token is malformed: want "berth_" followed by the ID and secret berthctl api-tokens create printed`
	MsgUnknown   = "API token is unknown"
	MsgRevoked   = "API token has been revoked"
	MsgExpired   = "API token has expired"
)

// Why a token is refused. A wrong secret for a known ID is ErrUnknown:
// only a caller that holds the secret learns that its token was revoked
// or has expired.
var (
	ErrMalformed = errors.New(MsgMalformed)
	ErrUnknown   = errors.New(MsgUnknown)
	ErrRevoked   = errors.New(MsgRevoked)
	ErrExpired   = errors.New(MsgExpired)
)

// Principal is whom a token names.
type Principal struct {
	// ID is the token's ID, Name the name it was created with.
	ID, Name string
	Role     mtls.Role
}

// Identity is the principal as the caller identity that authorisation,
// logs and events use (mtls.KindToken).
func (p Principal) Identity() mtls.Identity {
	return mtls.Identity{Kind: mtls.KindToken, Name: p.ID, TokenName: p.Name, Role: p.Role}
}

// String is the principal as events and logs name it: "token:ID/NAME".
func (p Principal) String() string { return p.Identity().String() }

// Generate makes a new token: its ID, the whole token to hand out once,
// and the hash to store.
func Generate() (id, token string, hash []byte) {
	id = randomHex(idLen)
	secret := randomHex(secretLen)
	return id, Prefix + id + "_" + secret, Hash(secret)
}

// Parse splits a token into its ID and secret; ErrMalformed unless it has
// the form Generate makes.
func Parse(token string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(token, Prefix)
	if !ok || len(token) != Len {
		return "", "", ErrMalformed
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || !IsID(id) || len(secret) != secretLen || !lowerHex(secret) {
		return "", "", ErrMalformed
	}
	return id, secret, nil
}

// IsID reports whether s has the form of a token ID.
func IsID(s string) bool { return len(s) == idLen && lowerHex(s) }

// Hash is what the store keeps of a secret.
func Hash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// Matches reports, in constant time, whether secret hashes to hash.
func Matches(secret string, hash []byte) bool {
	return subtle.ConstantTimeCompare(Hash(secret), hash) == 1
}

func lowerHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
