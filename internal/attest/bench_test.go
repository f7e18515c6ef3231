package attest_test

import (
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/berth-dev/berth/internal/attest"
)

// The server's share of a registration and of a boot, without a TPM.

func BenchmarkMakeCredential(b *testing.B) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	id := newECDSA(b, elliptic.P256())
	key, err := attest.ParseIdentityKey(marshal(identityArea(&id.PublicKey)), &id.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	for name, raw := range map[string][]byte{
		"rsa": marshal(rsaEKArea(&rsaKey.PublicKey)),
		"ecc": marshal(eccEKArea(&newECDSA(b, elliptic.P256()).PublicKey)),
	} {
		ek, err := attest.ParseEK(raw)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := attest.MakeCredential(rand.Reader, ek, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyQuote(b *testing.B) {
	s := newSoftQuote(b)
	q := attest.Quote{Attest: marshalAttest(s), PCRs: s.values}
	q.Signature = s.sign(b, q.Attest, 0x000b)
	for b.Loop() {
		if _, err := attest.VerifyQuote(s.akKey, s.nonce, nil, q); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRegistration(b *testing.B) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	id := newECDSA(b, elliptic.P256())
	ekRaw, idRaw, akRaw := marshal(rsaEKArea(&rsaKey.PublicKey)), marshal(identityArea(&id.PublicKey)), marshal(akArea(&id.PublicKey))
	for b.Loop() {
		if _, err := attest.ParseEK(ekRaw); err != nil {
			b.Fatal(err)
		}
		if _, err := attest.ParseIdentityKey(idRaw, &id.PublicKey); err != nil {
			b.Fatal(err)
		}
		if _, err := attest.ParseAK(akRaw); err != nil {
			b.Fatal(err)
		}
	}
}
