package attest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/google/go-tpm/tpm2"
)

// softQuote is a quote made in software with a software "AK": the
// verifier's checks on structure, selection and digest can be driven
// where a real TPM would never produce the bad input. Real TPM quotes are
// verified in internal/tpm's tests.
type softQuote struct {
	ak     *ecdsa.PrivateKey
	akKey  *attest.Key
	nonce  []byte
	values map[int][]byte
}

func newSoftQuote(t testing.TB) *softQuote {
	t.Helper()
	k := newECDSA(t, elliptic.P256())
	ak, err := attest.ParseAK(marshal(akArea(&k.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	values := map[int][]byte{}
	for i := range 8 {
		values[i] = bytes.Repeat([]byte{byte(i)}, 32)
	}
	return &softQuote{ak: k, akKey: ak, nonce: []byte("server nonce"), values: values}
}

func pcrSel(hash tpm2.TPMIAlgHash, pcrs ...uint) tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: hash, PCRSelect: tpm2.PCClientCompatible.PCRs(pcrs...)}}}
}

func digestOf(values map[int][]byte, pcrs ...int) []byte {
	h := sha256.New()
	for _, p := range pcrs {
		h.Write(values[p])
	}
	return h.Sum(nil)
}

// attestation returns the TPMS_ATTEST of a good quote, for edit.
func (s *softQuote) attestation() tpm2.TPMSAttest {
	return tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: s.akKey.Name()},
		ExtraData:       tpm2.TPM2BData{Buffer: s.nonce},
		FirmwareVersion: 1,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: pcrSel(tpm2.TPMAlgSHA256, 0, 1, 2, 3, 4, 5, 6, 7),
			PCRDigest: tpm2.TPM2BDigest{Buffer: digestOf(s.values, 0, 1, 2, 3, 4, 5, 6, 7)},
		}),
	}
}

func (s *softQuote) sign(t testing.TB, data []byte, hash tpm2.TPMIAlgHash) []byte {
	t.Helper()
	d := sha256.Sum256(data)
	r, sv, err := ecdsa.Sign(rand.Reader, s.ak, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       hash,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.Bytes()},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: sv.Bytes()},
		}),
	})
}

func (s *softQuote) quote(t *testing.T, att tpm2.TPMSAttest) attest.Quote {
	t.Helper()
	raw := tpm2.Marshal(att)
	return attest.Quote{Attest: raw, Signature: s.sign(t, raw, tpm2.TPMAlgSHA256), PCRs: s.values}
}

func TestVerifyQuote(t *testing.T) {
	s := newSoftQuote(t)
	good := s.quote(t, s.attestation())
	res, err := attest.VerifyQuote(s.akKey, s.nonce, nil, good)
	if err != nil {
		t.Fatalf("verify a good quote: %v", err)
	}
	if want := "sha256:" + hex.EncodeToString(digestOf(s.values, 0, 1, 2, 3, 4, 5, 6, 7)); res.PCRDigest != want {
		t.Fatalf("digest %s, want %s", res.PCRDigest, want)
	}
	// The PCR selection's order in the request does not matter.
	if _, err := attest.VerifyQuote(s.akKey, s.nonce, []int{7, 6, 5, 4, 3, 2, 1, 0}, good); err != nil {
		t.Fatalf("verify with the selection reversed: %v", err)
	}

	edit := func(f func(*tpm2.TPMSAttest)) attest.Quote {
		a := s.attestation()
		f(&a)
		return s.quote(t, a)
	}
	values := func(f func(map[int][]byte)) attest.Quote {
		q := good
		q.PCRs = map[int][]byte{}
		for k, v := range s.values {
			q.PCRs[k] = v
		}
		f(q.PCRs)
		return q
	}
	identity, err := attest.ParseIdentityKey(marshal(identityArea(&s.ak.PublicKey)), &s.ak.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte("not a TPMS_ATTEST, but signed")
	for _, c := range []struct {
		name  string
		ak    *attest.Key
		nonce []byte
		pcrs  []int
		q     attest.Quote
		want  error
	}{
		{"wrong nonce", s.akKey, []byte("other"), nil, good, attest.ErrQuote},
		{"nonce prefix", s.akKey, s.nonce[:4], nil, good, attest.ErrQuote},
		{"not a quote (certify)", s.akKey, s.nonce, nil, edit(func(a *tpm2.TPMSAttest) {
			a.Type = tpm2.TPMSTAttestCertify
			a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{Name: tpm2.TPM2BName{Buffer: []byte{0, 4}}})
		}), attest.ErrQuote},
		{"wrong magic", s.akKey, s.nonce, nil, edit(func(a *tpm2.TPMSAttest) { a.Magic = 0x12345678 }), attest.ErrQuote},
		{"SHA-1 bank", s.akKey, s.nonce, nil, edit(func(a *tpm2.TPMSAttest) {
			a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
				PCRSelect: pcrSel(tpm2.TPMAlgSHA1, 0, 1, 2, 3, 4, 5, 6, 7),
				PCRDigest: tpm2.TPM2BDigest{Buffer: digestOf(s.values, 0, 1, 2, 3, 4, 5, 6, 7)},
			})
		}), attest.ErrQuote},
		{"fewer PCRs quoted", s.akKey, s.nonce, nil, edit(func(a *tpm2.TPMSAttest) {
			a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
				PCRSelect: pcrSel(tpm2.TPMAlgSHA256, 0),
				PCRDigest: tpm2.TPM2BDigest{Buffer: digestOf(s.values, 0)},
			})
		}), attest.ErrQuote},
		{"other PCRs requested", s.akKey, s.nonce, []int{0, 7, 14}, good, attest.ErrQuote},
		{"digest over other values", s.akKey, s.nonce, nil, values(func(m map[int][]byte) { m[4] = bytes.Repeat([]byte{9}, 32) }), attest.ErrQuote},
		{"a value missing", s.akKey, s.nonce, nil, values(func(m map[int][]byte) { delete(m, 3) }), attest.ErrMalformed},
		{"an extra value", s.akKey, s.nonce, nil, values(func(m map[int][]byte) { m[9] = make([]byte, 32) }), attest.ErrMalformed},
		{"a short value", s.akKey, s.nonce, nil, values(func(m map[int][]byte) { m[2] = m[2][:20] }), attest.ErrMalformed},
		{"SHA-384 signature", s.akKey, s.nonce, nil, attest.Quote{Attest: good.Attest, Signature: s.sign(t, good.Attest, tpm2.TPMAlgSHA384), PCRs: good.PCRs}, attest.ErrQuote},
		{"RSA signature", s.akKey, s.nonce, nil, attest.Quote{Attest: good.Attest, Signature: tpm2.Marshal(tpm2.TPMTSignature{
			SigAlg:    tpm2.TPMAlgRSASSA,
			Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}}),
		}), PCRs: good.PCRs}, attest.ErrQuote},
		{"signature over something else", s.akKey, s.nonce, nil, attest.Quote{Attest: good.Attest, Signature: s.sign(t, []byte("x"), tpm2.TPMAlgSHA256), PCRs: good.PCRs}, attest.ErrQuote},
		{"garbage signature", s.akKey, s.nonce, nil, attest.Quote{Attest: good.Attest, Signature: []byte{0, 0x18, 1}, PCRs: good.PCRs}, attest.ErrMalformed},
		{"signature with trailing bytes", s.akKey, s.nonce, nil, attest.Quote{Attest: good.Attest, Signature: append(bytes.Clone(good.Signature), 0), PCRs: good.PCRs}, attest.ErrMalformed},
		{"signed garbage", s.akKey, s.nonce, nil, attest.Quote{Attest: garbage, Signature: s.sign(t, garbage, tpm2.TPMAlgSHA256), PCRs: good.PCRs}, attest.ErrMalformed},
		{"no attestation", s.akKey, s.nonce, nil, attest.Quote{Signature: good.Signature, PCRs: good.PCRs}, attest.ErrMalformed},
		{"huge attestation", s.akKey, s.nonce, nil, attest.Quote{Attest: make([]byte, 1<<20), Signature: good.Signature, PCRs: good.PCRs}, attest.ErrMalformed},
		{"an identity key, not an AK", identity, s.nonce, nil, good, attest.ErrQuote},
		{"no AK", nil, s.nonce, nil, good, attest.ErrQuote},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := attest.VerifyQuote(c.ak, c.nonce, c.pcrs, c.q); !errors.Is(err, c.want) {
				t.Fatalf("VerifyQuote = %v, want %v", err, c.want)
			}
		})
	}
	// Caller mistakes are refused too, though they are not the node's fault.
	if _, err := attest.VerifyQuote(s.akKey, nil, nil, good); err == nil {
		t.Fatal("verified a quote against no nonce")
	}
	if _, err := attest.VerifyQuote(s.akKey, s.nonce, []int{0, 0, 1, 2, 3, 4, 5, 6, 7}, good); err == nil {
		t.Fatal("verified against a selection that repeats a PCR")
	}
}

func marshalAttest(s *softQuote) []byte { return tpm2.Marshal(s.attestation()) }
