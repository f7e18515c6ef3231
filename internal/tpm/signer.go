package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// signer is the identity key as a crypto.Signer over TPM2_Sign.
type signer struct {
	t   *TPM
	pub *ecdsa.PublicKey
}

func newSigner(t *TPM) (signer, error) {
	pub, err := eccPublic(t.keys[KeyIdentity].pub)
	if err != nil {
		return signer{}, fmt.Errorf("identity key: %w", err)
	}
	return signer{t: t, pub: pub}, nil
}

// Public implements crypto.Signer.
func (s signer) Public() crypto.PublicKey { return s.pub }

// sigHashes are the digests the identity key signs: what TLS 1.3 and 1.2
// ask of a P-256 key. SHA-1 is refused.
var sigHashes = map[crypto.Hash]tpm2.TPMAlgID{
	crypto.SHA256: tpm2.TPMAlgSHA256,
	crypto.SHA384: tpm2.TPMAlgSHA384,
	crypto.SHA512: tpm2.TPMAlgSHA512,
}

var hashBySize = map[int]crypto.Hash{32: crypto.SHA256, 48: crypto.SHA384, 64: crypto.SHA512}

// Sign implements crypto.Signer: an ECDSA signature over digest, made by
// the TPM, returned ASN.1-encoded like ecdsa.SignASN1. The TPM draws its
// own nonce, so rand is unused.
func (s signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := crypto.Hash(0)
	if opts != nil {
		h = opts.HashFunc()
	} else {
		// ecdsa.PrivateKey ignores opts; callers that pass nil mean the
		// hash whose size the digest has.
		h = hashBySize[len(digest)]
	}
	alg, ok := sigHashes[h]
	if !ok {
		return nil, fmt.Errorf("%w: the TPM identity key signs SHA-256, SHA-384 or SHA-512 digests, not %v", ErrInvalid, h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("%w: a %v digest is %d bytes, got %d", ErrInvalid, h, h.Size(), len(digest))
	}
	var sig *tpm2.TPMSSignatureECC
	err := s.t.doTimeout(func(tp transport.TPM) error {
		o := s.t.keys[KeyIdentity]
		if err := s.t.objs.ensure(tp, o); err != nil {
			return err
		}
		rsp, err := tpm2.Sign{
			KeyHandle: o.named(),
			Digest:    tpm2.TPM2BDigest{Buffer: digest},
			InScheme: tpm2.TPMTSigScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
			},
			// An unrestricted key needs no proof that the TPM made the
			// digest: the NULL ticket.
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm sign: %w", err)
		}
		sig, err = rsp.Signature.Signature.ECDSA()
		return err
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

// eccPublic returns the P-256 public key of a TPM public area, checking
// that the point is on the curve.
func eccPublic(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, err
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("curve %v is not P-256", parms.CurveID)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, err
	}
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) > 32 || len(y) > 32 {
		return nil, fmt.Errorf("P-256 point coordinates longer than 32 bytes")
	}
	raw := make([]byte, 65)
	raw[0] = 4
	copy(raw[33-len(x):33], x)
	copy(raw[65-len(y):], y)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
}
