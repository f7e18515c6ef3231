package attest_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/google/go-tpm/tpm2"
)

func TestParseIdentityKey(t *testing.T) {
	k := newECDSA(t, elliptic.P256())
	other := newECDSA(t, elliptic.P256())
	p384 := newECDSA(t, elliptic.P384())
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := identityArea(&k.PublicKey)
	raw := marshal(good)

	key, err := attest.ParseIdentityKey(raw, &k.PublicKey)
	if err != nil {
		t.Fatalf("parse a good identity key: %v", err)
	}
	if !key.Public().Equal(&k.PublicKey) {
		t.Fatal("parsed key is not the key")
	}
	wantName := append([]byte{0x00, 0x0b}, sha256Sum(raw)...)
	if !bytes.Equal(key.Name(), wantName) {
		t.Fatalf("Name = %x, want %x", key.Name(), wantName)
	}
	// The ECDSA scheme, named, is as good as NULL.
	if _, err := attest.ParseIdentityKey(with(good, func(p *tpm2.TPMTPublic) {
		p.Parameters = eccArea(&k.PublicKey, p.ObjectAttributes, ecdsaScheme(tpm2.TPMAlgSHA384)).Parameters
	}), &k.PublicKey); err != nil {
		t.Fatalf("identity key with an ECDSA scheme: %v", err)
	}

	offCurve := good
	offCurve.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: bytes.Repeat([]byte{1}, 32)},
		Y: tpm2.TPM2BECCParameter{Buffer: bytes.Repeat([]byte{2}, 32)},
	})
	attr := func(f func(*tpm2.TPMAObject)) []byte {
		return with(good, func(p *tpm2.TPMTPublic) { f(&p.ObjectAttributes) })
	}
	for _, c := range []struct {
		name string
		raw  []byte
		tls  any
		want error
	}{
		{"empty", nil, &k.PublicKey, attest.ErrMalformed},
		{"garbage", []byte("this is not a TPM public area at all"), &k.PublicKey, attest.ErrMalformed},
		{"truncated", raw[:len(raw)-5], &k.PublicKey, attest.ErrMalformed},
		{"trailing byte", append(bytes.Clone(raw), 0), &k.PublicKey, attest.ErrMalformed},
		{"huge", make([]byte, 1<<20), &k.PublicKey, attest.ErrMalformed},
		{"point not on the curve", marshal(offCurve), &k.PublicKey, attest.ErrMalformed},
		{"RSA key", marshal(rsaEKArea(&rsaKey.PublicKey)), &k.PublicKey, attest.ErrKeyAttributes},
		{"P-384", marshal(identityArea(&p384.PublicKey)), &p384.PublicKey, attest.ErrKeyAttributes},
		{"named with SHA-1", with(good, func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 }), &k.PublicKey, attest.ErrKeyAttributes},
		{"without fixedTPM", attr(func(a *tpm2.TPMAObject) { a.FixedTPM = false }), &k.PublicKey, attest.ErrKeyAttributes},
		{"without fixedParent (duplicable)", attr(func(a *tpm2.TPMAObject) { a.FixedParent = false }), &k.PublicKey, attest.ErrKeyAttributes},
		{"without sensitiveDataOrigin (imported)", attr(func(a *tpm2.TPMAObject) { a.SensitiveDataOrigin = false }), &k.PublicKey, attest.ErrKeyAttributes},
		{"not a signing key", attr(func(a *tpm2.TPMAObject) { a.SignEncrypt = false; a.Decrypt = true }), &k.PublicKey, attest.ErrKeyAttributes},
		{"decrypts too", attr(func(a *tpm2.TPMAObject) { a.Decrypt = true }), &k.PublicKey, attest.ErrKeyAttributes},
		{"restricted", attr(func(a *tpm2.TPMAObject) { a.Restricted = true }), &k.PublicKey, attest.ErrKeyAttributes},
		{"ECDH scheme", marshal(eccArea(&k.PublicKey, good.ObjectAttributes, bundleScheme())), &k.PublicKey, attest.ErrKeyAttributes},
		{"another TLS key", raw, &other.PublicKey, attest.ErrKeyMismatch},
		{"an RSA TLS key", raw, &rsaKey.PublicKey, attest.ErrKeyMismatch},
		{"no TLS key", raw, nil, attest.ErrKeyMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := attest.ParseIdentityKey(c.raw, c.tls)
			if !errors.Is(err, c.want) {
				t.Fatalf("ParseIdentityKey = %v, want %v", err, c.want)
			}
			if strings.ContainsRune(err.Error(), '\n') {
				t.Fatalf("error %q is not one line", err)
			}
		})
	}
}

func bundleScheme() tpm2.TPMTECCScheme {
	return tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDH, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDH, &tpm2.TPMSKeySchemeECDH{HashAlg: tpm2.TPMAlgSHA256})}
}

func TestParseAK(t *testing.T) {
	k := newECDSA(t, elliptic.P256())
	good := akArea(&k.PublicKey)
	if _, err := attest.ParseAK(marshal(good)); err != nil {
		t.Fatalf("parse a good AK: %v", err)
	}
	for _, c := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"garbage", []byte{0, 1, 2, 3}, attest.ErrMalformed},
		{"unrestricted (quotes could be forged)", marshal(identityArea(&k.PublicKey)), attest.ErrKeyAttributes},
		{"restricted decryption key", with(good, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SignEncrypt, p.ObjectAttributes.Decrypt = false, true }), attest.ErrKeyAttributes},
		{"signs and decrypts", with(good, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Decrypt = true }), attest.ErrKeyAttributes},
		{"ECDSA-SHA384", marshal(eccArea(&k.PublicKey, good.ObjectAttributes, ecdsaScheme(tpm2.TPMAlgSHA384))), attest.ErrKeyAttributes},
		{"NULL scheme", marshal(eccArea(&k.PublicKey, good.ObjectAttributes, tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull})), attest.ErrKeyAttributes},
		{"without fixedTPM", with(good, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false }), attest.ErrKeyAttributes},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := attest.ParseAK(c.raw); !errors.Is(err, c.want) {
				t.Fatalf("ParseAK = %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseBundleKey(t *testing.T) {
	k := newECDSA(t, elliptic.P256())
	ek, err := k.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	hpub, err := hpke.NewDHKEMPublicKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	good := bundleArea(&k.PublicKey)
	if _, err := attest.ParseBundleKey(marshal(good), hpub); err != nil {
		t.Fatalf("parse a good bundle key: %v", err)
	}
	otherPriv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _ := hpke.NewDHKEMPublicKey(otherPriv.PublicKey())
	xwing, err := hpke.MLKEM768X25519().GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		raw  []byte
		pub  hpke.PublicKey
		want error
	}{
		{"garbage", []byte{0xff}, hpub, attest.ErrMalformed},
		{"signing key", marshal(identityArea(&k.PublicKey)), hpub, attest.ErrKeyAttributes},
		{"restricted", with(good, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = true }), hpub, attest.ErrKeyAttributes},
		{"signs too", with(good, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SignEncrypt = true }), hpub, attest.ErrKeyAttributes},
		{"without fixedParent", with(good, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedParent = false }), hpub, attest.ErrKeyAttributes},
		{"another bundle key", marshal(good), otherPub, attest.ErrKeyMismatch},
		{"another KEM", marshal(good), xwing.PublicKey(), attest.ErrKeyMismatch},
		{"no bundle key", marshal(good), nil, attest.ErrKeyMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := attest.ParseBundleKey(c.raw, c.pub); !errors.Is(err, c.want) {
				t.Fatalf("ParseBundleKey = %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseEK(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ecc := newECDSA(t, elliptic.P256())
	goodRSA, goodECC := rsaEKArea(&rsaKey.PublicKey), eccEKArea(&ecc.PublicKey)
	for _, c := range []struct {
		name string
		raw  []byte
		key  any
	}{
		{"RSA 2048", marshal(goodRSA), &rsaKey.PublicKey},
		{"ECC P-256", marshal(goodECC), &ecc.PublicKey},
	} {
		ek, err := attest.ParseEK(c.raw)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !equalKey(ek.Public(), c.key) {
			t.Fatalf("%s: parsed another key", c.name)
		}
		der, _ := x509.MarshalPKIXPublicKey(c.key)
		if want := "sha256:" + hex.EncodeToString(sha256Sum(der)); ek.Hash() != want {
			t.Fatalf("%s: hash %s, want %s", c.name, ek.Hash(), want)
		}
	}
	for _, c := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, attest.ErrMalformed},
		{"garbage", bytes.Repeat([]byte{0x23}, 300), attest.ErrMalformed},
		{"truncated", marshal(goodRSA)[:100], attest.ErrMalformed},
		{"unrestricted (would decrypt the credential for anyone)", with(goodRSA, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false }), attest.ErrKeyAttributes},
		{"signing key", with(goodECC, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Decrypt, p.ObjectAttributes.SignEncrypt = false, true }), attest.ErrKeyAttributes},
		{"without fixedTPM", with(goodRSA, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false }), attest.ErrKeyAttributes},
		{"RSA 1024", marshal(rsaEKArea(&small.PublicKey)), attest.ErrKeyAttributes},
		{"named with SHA-384", with(goodECC, func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA384 }), attest.ErrKeyAttributes},
		{"an identity key", marshal(identityArea(&ecc.PublicKey)), attest.ErrKeyAttributes},
		{"keyed hash object", with(goodECC, func(p *tpm2.TPMTPublic) {
			p.Type = tpm2.TPMAlgKeyedHash
			p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull}})
			p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: make([]byte, 32)})
		}), attest.ErrKeyAttributes},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := attest.ParseEK(c.raw); !errors.Is(err, c.want) {
				t.Fatalf("ParseEK = %v, want %v", err, c.want)
			}
		})
	}
}

func TestEKHash(t *testing.T) {
	k := newECDSA(t, elliptic.P256())
	h, err := attest.EKHash(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "sha256:") || len(h) != len("sha256:")+64 || strings.ToLower(h) != h {
		t.Fatalf("EK hash %q is not sha256:<64 lower-case hex>", h)
	}
	if h2, _ := attest.EKHash(&newECDSA(t, elliptic.P256()).PublicKey); h2 == h {
		t.Fatal("two keys, one hash")
	}
	if _, err := attest.EKHash("not a key"); !errors.Is(err, attest.ErrKeyAttributes) {
		t.Fatalf("EKHash of a string = %v, want ErrKeyAttributes", err)
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func equalKey(a, b crypto.PublicKey) bool {
	x, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && x.Equal(b)
}
