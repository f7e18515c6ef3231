package attest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// These helpers build TPM public areas in software, shaped like the ones
// internal/tpm's templates give, so every check can be exercised without a
// TPM. internal/tpm's tests run the same checks on what real swtpms make.

func newECDSA(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fixedAttrs() tpm2.TPMAObject {
	return tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, NoDA: true}
}

func eccArea(pub *ecdsa.PublicKey, attrs tpm2.TPMAObject, scheme tpm2.TPMTECCScheme) tpm2.TPMTPublic {
	size := (pub.Curve.Params().BitSize + 7) / 8
	curve := tpm2.TPMECCNistP256
	if size == 48 {
		curve = tpm2.TPMECCNistP384
	}
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    scheme,
			CurveID:   curve,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: pub.X.FillBytes(make([]byte, size))},
			Y: tpm2.TPM2BECCParameter{Buffer: pub.Y.FillBytes(make([]byte, size))},
		}),
	}
}

func identityArea(pub *ecdsa.PublicKey) tpm2.TPMTPublic {
	a := fixedAttrs()
	a.SignEncrypt = true
	return eccArea(pub, a, tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull})
}

func ecdsaScheme(h tpm2.TPMIAlgHash) tpm2.TPMTECCScheme {
	return tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: h})}
}

func akArea(pub *ecdsa.PublicKey) tpm2.TPMTPublic {
	a := fixedAttrs()
	a.SignEncrypt, a.Restricted = true, true
	return eccArea(pub, a, ecdsaScheme(tpm2.TPMAlgSHA256))
}

func bundleArea(pub *ecdsa.PublicKey) tpm2.TPMTPublic {
	a := fixedAttrs()
	a.Decrypt = true
	return eccArea(pub, a, tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDH, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDH, &tpm2.TPMSKeySchemeECDH{HashAlg: tpm2.TPMAlgSHA256})})
}

// rsaEKArea is the TCG default RSA EK template holding key's modulus.
func rsaEKArea(key *rsa.PublicKey) tpm2.TPMTPublic {
	p := tpm2.RSAEKTemplate
	parms, _ := p.Parameters.RSADetail()
	parms.KeyBits = tpm2.TPMKeyBits(key.N.BitLen())
	p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, parms)
	p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: key.N.Bytes()})
	return p
}

// eccEKArea is the TCG default ECC P-256 EK template holding key's point.
func eccEKArea(key *ecdsa.PublicKey) tpm2.TPMTPublic {
	p := tpm2.ECCEKTemplate
	p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: key.X.FillBytes(make([]byte, 32))},
		Y: tpm2.TPM2BECCParameter{Buffer: key.Y.FillBytes(make([]byte, 32))},
	})
	return p
}

func marshal(p tpm2.TPMTPublic) []byte { return tpm2.Marshal(p) }

func with(p tpm2.TPMTPublic, f func(*tpm2.TPMTPublic)) []byte {
	f(&p)
	return tpm2.Marshal(p)
}
