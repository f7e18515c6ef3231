package tpm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// MaxNonce is the longest quote nonce: TPM2B_DATA holds a SHA-512 digest.
const MaxNonce = 64

// maxPCR is the last PCR the PC Client profile guarantees.
const maxPCR = 23

// quoteAttempts bounds retries when a PCR is extended between reading the
// PCRs and quoting them.
const quoteAttempts = 3

// Quote has the attestation key sign the SHA-256 bank of pcrs (nil means
// attest.DefaultPCRs) with the server's nonce, and returns the quote with
// the PCR values it covers.
func (t *TPM) Quote(ctx context.Context, nonce []byte, pcrs []int) (attest.Quote, error) {
	if len(nonce) == 0 || len(nonce) > MaxNonce {
		return attest.Quote{}, fmt.Errorf("%w: quote nonce of %d bytes; want 1 to %d", ErrInvalid, len(nonce), MaxNonce)
	}
	if pcrs == nil {
		pcrs = attest.DefaultPCRs()
	}
	sel, err := selection(pcrs)
	if err != nil {
		return attest.Quote{}, err
	}
	var q attest.Quote
	err = t.do(ctx, func(tp transport.TPM) error {
		ak := t.keys[KeyAK]
		for range quoteAttempts {
			values, err := readPCRs(tp, pcrs)
			if err != nil {
				return err
			}
			if err := t.objs.ensure(tp, ak); err != nil {
				return err
			}
			rsp, err := tpm2.Quote{
				SignHandle:     ak.named(),
				QualifyingData: tpm2.TPM2BData{Buffer: nonce},
				InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}, // the AK's own: ECDSA-SHA256
				PCRSelect:      sel,
			}.Execute(tp)
			if err != nil {
				return fmt.Errorf("tpm quote: %w", err)
			}
			att, err := rsp.Quoted.Contents()
			if err != nil {
				return fmt.Errorf("tpm quote: %w", err)
			}
			info, err := att.Attested.Quote()
			if err != nil {
				return fmt.Errorf("tpm quote: %w", err)
			}
			if !bytes.Equal(info.PCRDigest.Buffer, pcrDigest(pcrs, values)) {
				continue // a PCR moved between the read and the quote
			}
			q = attest.Quote{Attest: rsp.Quoted.Bytes(), Signature: tpm2.Marshal(rsp.Signature), PCRs: values}
			return nil
		}
		return fmt.Errorf("tpm quote: PCRs kept changing while being quoted (%d attempts)", quoteAttempts)
	})
	if err != nil {
		return attest.Quote{}, err
	}
	return q, nil
}

// ReadPCRs returns the SHA-256 bank's value of each PCR in pcrs.
func (t *TPM) ReadPCRs(ctx context.Context, pcrs []int) (map[int][]byte, error) {
	if _, err := selection(pcrs); err != nil {
		return nil, err
	}
	var out map[int][]byte
	err := t.do(ctx, func(tp transport.TPM) error {
		var err error
		out, err = readPCRs(tp, pcrs)
		return err
	})
	return out, err
}

// ExtendPCR extends the SHA-256 bank of a PCR with digest
// (TPM2_PCR_Extend), as a boot stage measuring the next one does.
func (t *TPM) ExtendPCR(ctx context.Context, pcr int, digest [sha256.Size]byte) error {
	if _, err := selection([]int{pcr}); err != nil {
		return err
	}
	return t.do(ctx, func(tp transport.TPM) error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
				{HashAlg: tpm2.TPMAlgSHA256, Digest: digest[:]},
			}},
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("extend PCR %d: %w", pcr, err)
		}
		return nil
	})
}

// selection is the SHA-256 bank selection of pcrs, which must be distinct
// and within the PC Client range.
func selection(pcrs []int) (tpm2.TPMLPCRSelection, error) {
	if len(pcrs) == 0 {
		return tpm2.TPMLPCRSelection{}, fmt.Errorf("%w: no PCRs selected", ErrInvalid)
	}
	idx := make([]uint, 0, len(pcrs))
	for _, p := range pcrs {
		if p < 0 || p > maxPCR {
			return tpm2.TPMLPCRSelection{}, fmt.Errorf("%w: PCR %d is outside 0-%d", ErrInvalid, p, maxPCR)
		}
		if slices.Contains(idx, uint(p)) {
			return tpm2.TPMLPCRSelection{}, fmt.Errorf("%w: PCR %d selected twice", ErrInvalid, p)
		}
		idx = append(idx, uint(p))
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
		{Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(idx...)},
	}}, nil
}

// readPCRs reads the SHA-256 bank of pcrs. TPM2_PCR_Read returns at most
// eight values per call and says which; it is asked again for the rest.
func readPCRs(tp transport.TPM, pcrs []int) (map[int][]byte, error) {
	out := make(map[int][]byte, len(pcrs))
	want := slices.Clone(pcrs)
	for len(want) > 0 {
		sel, err := selection(want)
		if err != nil {
			return nil, err
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(tp)
		if err != nil {
			return nil, fmt.Errorf("read PCRs: %w", err)
		}
		got := selected(rsp.PCRSelectionOut)
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("read PCRs: the TPM returned %d values for %d PCRs (is the SHA-256 bank active?)", len(rsp.PCRValues.Digests), len(got))
		}
		for i, p := range got {
			out[p] = rsp.PCRValues.Digests[i].Buffer
			want = slices.DeleteFunc(want, func(x int) bool { return x == p })
		}
	}
	return out, nil
}

// selected lists, in ascending order, the SHA-256 PCRs a selection names.
func selected(sel tpm2.TPMLPCRSelection) []int {
	var out []int
	for _, s := range sel.PCRSelections {
		if s.Hash != tpm2.TPMAlgSHA256 {
			continue
		}
		for i, b := range s.PCRSelect {
			for bit := range 8 {
				if b&(1<<bit) != 0 {
					out = append(out, i*8+bit)
				}
			}
		}
	}
	return out
}

// pcrDigest is what a quote's pcrDigest must be: SHA-256 over the values
// in ascending PCR order.
func pcrDigest(pcrs []int, values map[int][]byte) []byte {
	h := sha256.New()
	for _, p := range slices.Sorted(slices.Values(pcrs)) {
		h.Write(values[p])
	}
	return h.Sum(nil)
}
