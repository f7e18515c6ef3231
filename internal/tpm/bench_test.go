package tpm

import (
	"crypto"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/tpm/tpmtest"
	"github.com/google/go-tpm/tpm2/transport"
)

// Benchmarks run against swtpm over loopback; a hardware TPM is one to two
// orders of magnitude slower (tens of ms per ECC operation).

func BenchmarkIdentitySign(b *testing.B) {
	tp := openSim(b, tpmtest.Start(b))
	d := sha256.Sum256([]byte("handshake"))
	for b.Loop() {
		if _, err := tp.Identity().Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkECDHZGen(b *testing.B) {
	tp := openSim(b, tpmtest.Start(b))
	peer, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	x := exchanger{t: tp}
	for b.Loop() {
		if _, err := x.ECDH(peer.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBundleOpen(b *testing.B) {
	tp := openSim(b, tpmtest.Start(b))
	kdf, aead := hpke.HKDFSHA256(), hpke.AES256GCM()
	ct, err := hpke.Seal(tp.BundleKey().PublicKey(), kdf, aead, nil, make([]byte, 4096))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := hpke.Open(tp.BundleKey(), kdf, aead, nil, ct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreatePrimary(b *testing.B) {
	tp := openSim(b, tpmtest.Start(b))
	for _, k := range []Key{KeyIdentity, KeyBundle, KeyAK} {
		b.Run(k.String(), func(b *testing.B) {
			o := tp.keys[k]
			for b.Loop() {
				err := tp.do(testCtx(b), func(c transport.TPM) error {
					if err := tp.objs.flush(c, o); err != nil {
						return err
					}
					return tp.objs.ensure(c, o)
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen is an agent's TPM start: connect, three primary keys.
func BenchmarkOpen(b *testing.B) {
	sim := tpmtest.Start(b)
	for b.Loop() {
		tp, err := Open(testCtx(b), Config{Device: sim.Device()})
		if err != nil {
			b.Fatal(err)
		}
		if err := tp.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkActivation is registration's proof: the server makes a
// credential, the TPM activates it, the server checks the secret.
func BenchmarkActivation(b *testing.B) {
	for _, ekType := range []EKType{EKRSA, EKECC} {
		b.Run(string(ekType), func(b *testing.B) {
			tp, err := Open(testCtx(b), Config{Device: tpmtest.Start(b).Device(), EK: ekType})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { tp.Close() })
			e, err := tp.Endorsement(testCtx(b))
			if err != nil {
				b.Fatal(err)
			}
			ek, err := attest.ParseEK(e.Public)
			if err != nil {
				b.Fatal(err)
			}
			key, err := attest.ParseIdentityKey(tp.PublicArea(KeyIdentity), tp.Identity().Public())
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				ch, secret, err := attest.MakeCredential(rand.Reader, ek, key)
				if err != nil {
					b.Fatal(err)
				}
				got, err := tp.ActivateCredential(testCtx(b), KeyIdentity, ch)
				if err != nil {
					b.Fatal(err)
				}
				if err := attest.CheckSecret(secret, got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQuote is a boot's evidence: quote PCRs 0-7 and verify.
func BenchmarkQuote(b *testing.B) {
	tp := openSim(b, tpmtest.Start(b))
	ak, err := attest.ParseAK(tp.PublicArea(KeyAK))
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, attest.NonceSize)
	for b.Loop() {
		q, err := tp.Quote(testCtx(b), nonce, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := attest.VerifyQuote(ak, nonce, nil, q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEndorsement reads the EK public and its certificate, as a
// registration does once.
func BenchmarkEndorsement(b *testing.B) {
	sim := tpmtest.StartProvisioned(b, tpmtest.NewManufacturer(b, "Acme"))
	for b.Loop() {
		tp, err := Open(testCtx(b), Config{Device: sim.Device()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tp.Endorsement(testCtx(b)); err != nil {
			b.Fatal(err)
		}
		if err := tp.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
