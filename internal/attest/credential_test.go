package attest_test

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"testing"

	"github.com/berth-dev/berth/internal/attest"
)

func TestMakeCredential(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaEK, err := attest.ParseEK(marshal(rsaEKArea(&rsaKey.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	eccEK, err := attest.ParseEK(marshal(eccEKArea(&newECDSA(t, elliptic.P256()).PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	id := newECDSA(t, elliptic.P256())
	key, err := attest.ParseIdentityKey(marshal(identityArea(&id.PublicKey)), &id.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, ek := range map[string]*attest.EK{"RSA EK": rsaEK, "ECC EK": eccEK} {
		t.Run(name, func(t *testing.T) {
			ch, secret, err := attest.MakeCredential(rand.Reader, ek, key)
			if err != nil {
				t.Fatal(err)
			}
			if len(secret) != attest.SecretSize || len(ch.CredentialBlob) == 0 || len(ch.EncryptedSecret) == 0 {
				t.Fatalf("credential %d/%d bytes, secret %d bytes", len(ch.CredentialBlob), len(ch.EncryptedSecret), len(secret))
			}
			// The secret is not in the clear anywhere in the challenge.
			if bytes.Contains(ch.CredentialBlob, secret) || bytes.Contains(ch.EncryptedSecret, secret) {
				t.Fatal("the secret is visible in the challenge")
			}
			ch2, secret2, err := attest.MakeCredential(rand.Reader, ek, key)
			if err != nil || bytes.Equal(secret, secret2) || bytes.Equal(ch.CredentialBlob, ch2.CredentialBlob) {
				t.Fatal("two credentials share a secret or a blob")
			}
		})
	}
	if _, _, err := attest.MakeCredential(rand.Reader, nil, key); err == nil {
		t.Fatal("made a credential without an EK")
	}
	if _, _, err := attest.MakeCredential(rand.Reader, rsaEK, nil); err == nil {
		t.Fatal("made a credential without a key")
	}
	if _, _, err := attest.MakeCredential(io.LimitReader(rand.Reader, 8), rsaEK, key); err == nil {
		t.Fatal("made a credential with a failing random source")
	}
}

func TestCheckSecret(t *testing.T) {
	want := bytes.Repeat([]byte{7}, attest.SecretSize)
	if err := attest.CheckSecret(want, bytes.Clone(want)); err != nil {
		t.Fatalf("the right secret: %v", err)
	}
	wrong := bytes.Clone(want)
	wrong[31] ^= 1
	for _, c := range []struct {
		name string
		got  []byte
	}{
		{"none", nil},
		{"short", want[:16]},
		{"one byte short", want[:31]},
		{"long", append(bytes.Clone(want), 0)},
		{"wrong", wrong},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := attest.CheckSecret(want, c.got); !errors.Is(err, attest.ErrCredential) {
				t.Fatalf("CheckSecret = %v, want ErrCredential", err)
			}
		})
	}
	// A server bug (no secret kept) must not turn into an accepted answer.
	if err := attest.CheckSecret(nil, nil); err == nil {
		t.Fatal("an empty expected secret matched an empty answer")
	}
}
