package attest_test

import (
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/berth-dev/berth/internal/attest"
)

// FuzzParsePublic feeds arbitrary bytes, as a hostile node would, to every
// public-area parser: they must return an error or a key, never panic.
func FuzzParsePublic(f *testing.F) {
	k := newECDSA(f, elliptic.P256())
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(marshal(identityArea(&k.PublicKey)))
	f.Add(marshal(akArea(&k.PublicKey)))
	f.Add(marshal(bundleArea(&k.PublicKey)))
	f.Add(marshal(rsaEKArea(&rsaKey.PublicKey)))
	f.Add(marshal(eccEKArea(&k.PublicKey)))
	f.Add([]byte{0x00, 0x23, 0x00, 0x0b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if key, err := attest.ParseIdentityKey(raw, &k.PublicKey); err == nil && len(key.Name()) != 34 {
			t.Fatalf("identity key Name of %d bytes", len(key.Name()))
		}
		_, _ = attest.ParseAK(raw)
		if ek, err := attest.ParseEK(raw); err == nil && ek.Hash() == "" {
			t.Fatal("an EK without a hash")
		}
	})
}

// FuzzVerifyQuote signs arbitrary attestation bytes with the AK, so the
// fuzzer reaches the decoder behind the signature check.
func FuzzVerifyQuote(f *testing.F) {
	s := newSoftQuote(f)
	good := marshalAttest(s)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18})
	f.Fuzz(func(t *testing.T, raw []byte) {
		q := attest.Quote{Attest: raw, Signature: s.sign(t, raw, 0x000b), PCRs: s.values}
		_, _ = attest.VerifyQuote(s.akKey, s.nonce, nil, q)
	})
}
