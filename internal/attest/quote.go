package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// NonceSize is the size of the nonce a server should send for a quote.
const NonceSize = 32

// maxAttest bounds a quote's TPMS_ATTEST: a few hundred bytes in practice.
const maxAttest = 4096

// QuoteResult is what a verified quote says about the boot.
type QuoteResult struct {
	// PCRDigest is "sha256:" and the hex SHA-256 over the quoted PCR values
	// in ascending PCR order, the quote's own pcrDigest. Equal digests mean
	// the same measured boot.
	PCRDigest string
	// PCRs are the quoted values, by index.
	PCRs map[int][]byte
}

// VerifyQuote checks a quote: signed by ak (which must be an attestation
// key from ParseAK, activated as a credential by the same TPM as the
// node's identity), over exactly the SHA-256 PCRs in pcrs (nil means
// DefaultPCRs), carrying nonce, with PCR values whose digest is the one
// the TPM signed.
func VerifyQuote(ak *Key, nonce []byte, pcrs []int, q Quote) (QuoteResult, error) {
	if ak == nil || ak.role != roleAK {
		return QuoteResult{}, fmt.Errorf("%w: not signed by an attestation key", ErrQuote)
	}
	if len(nonce) == 0 {
		return QuoteResult{}, fmt.Errorf("verify quote: no nonce to check")
	}
	if pcrs == nil {
		pcrs = DefaultPCRs()
	}
	want := slices.Sorted(slices.Values(pcrs))
	if len(slices.Compact(slices.Clone(want))) != len(want) {
		return QuoteResult{}, fmt.Errorf("verify quote: PCR selection %v repeats a PCR", pcrs)
	}
	if len(q.Attest) == 0 || len(q.Attest) > maxAttest {
		return QuoteResult{}, fmt.Errorf("%w: attestation of %d bytes", ErrMalformed, len(q.Attest))
	}
	if err := verifySignature(ak.key, q.Attest, q.Signature); err != nil {
		return QuoteResult{}, err
	}
	// Only now, signed by the TPM, is the attestation worth decoding.
	att, err := unmarshal[tpm2.TPMSAttest](q.Attest)
	if err != nil {
		return QuoteResult{}, fmt.Errorf("%w: quote attestation: %v", ErrMalformed, err)
	}
	if att.Magic != tpm2.TPMGeneratedValue || att.Type != tpm2.TPMSTAttestQuote {
		return QuoteResult{}, fmt.Errorf("%w: the signed attestation is not a TPM quote", ErrQuote)
	}
	if subtle.ConstantTimeCompare(att.ExtraData.Buffer, nonce) != 1 {
		return QuoteResult{}, fmt.Errorf("%w: the quote is not for this nonce (a replay?)", ErrQuote)
	}
	info, err := att.Attested.Quote()
	if err != nil {
		return QuoteResult{}, fmt.Errorf("%w: quote info: %v", ErrMalformed, err)
	}
	if got := quotedPCRs(info.PCRSelect); !slices.Equal(got, want) {
		return QuoteResult{}, fmt.Errorf("%w: the quote covers SHA-256 PCRs %v, not %v", ErrQuote, got, want)
	}
	h := sha256.New()
	values := make(map[int][]byte, len(want))
	for _, p := range want {
		v, ok := q.PCRs[p]
		if !ok || len(v) != sha256.Size {
			return QuoteResult{}, fmt.Errorf("%w: no SHA-256 value for PCR %d", ErrMalformed, p)
		}
		h.Write(v)
		values[p] = bytes.Clone(v)
	}
	if len(q.PCRs) != len(want) {
		return QuoteResult{}, fmt.Errorf("%w: %d PCR values for %d quoted PCRs", ErrMalformed, len(q.PCRs), len(want))
	}
	digest := h.Sum(nil)
	if !bytes.Equal(digest, info.PCRDigest.Buffer) {
		return QuoteResult{}, fmt.Errorf("%w: the PCR values are not the ones the TPM quoted", ErrQuote)
	}
	return QuoteResult{PCRDigest: "sha256:" + hex.EncodeToString(digest), PCRs: values}, nil
}

// verifySignature checks an ECDSA-SHA256 TPMT_SIGNATURE over data.
func verifySignature(key *ecdsa.PublicKey, data, rawSig []byte) error {
	if len(rawSig) == 0 || len(rawSig) > maxAttest {
		return fmt.Errorf("%w: quote signature of %d bytes", ErrMalformed, len(rawSig))
	}
	sig, err := unmarshal[tpm2.TPMTSignature](rawSig)
	if err != nil {
		return fmt.Errorf("%w: quote signature: %v", ErrMalformed, err)
	}
	if sig.SigAlg != tpm2.TPMAlgECDSA {
		return fmt.Errorf("%w: the quote signature is %v, not ECDSA", ErrQuote, sig.SigAlg)
	}
	ecc, err := sig.Signature.ECDSA()
	if err != nil {
		return fmt.Errorf("%w: quote signature: %v", ErrMalformed, err)
	}
	if ecc.Hash != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("%w: the quote signature hashes with %v, not SHA-256", ErrQuote, ecc.Hash)
	}
	d := sha256.Sum256(data)
	r := new(big.Int).SetBytes(ecc.SignatureR.Buffer)
	s := new(big.Int).SetBytes(ecc.SignatureS.Buffer)
	if !ecdsa.Verify(key, d[:], r, s) {
		return fmt.Errorf("%w: the signature is not the attestation key's", ErrQuote)
	}
	return nil
}

// quotedPCRs lists, ascending, the PCRs a quote's selection names, or nil
// if it selects anything but the SHA-256 bank.
func quotedPCRs(sel tpm2.TPMLPCRSelection) []int {
	var out []int
	for _, s := range sel.PCRSelections {
		for i, b := range s.PCRSelect {
			for bit := range 8 {
				if b&(1<<bit) == 0 {
					continue
				}
				if s.Hash != tpm2.TPMAlgSHA256 {
					return nil
				}
				out = append(out, i*8+bit)
			}
		}
	}
	slices.Sort(out)
	return out
}
