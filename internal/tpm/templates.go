package tpm

import (
	"crypto/sha256"

	"github.com/google/go-tpm/tpm2"
)

// Key templates. A primary key is derived from the hierarchy's seed and its
// template alone, so the same template gives the same key on every boot;
// nothing is stored. Every byte of these templates is therefore part of
// berth's contract with the fleet: changing one changes the identity of
// every TPM node. They carry a version in their unique label and are never
// edited, only superseded.
//
// All three berth keys live in the owner (storage) hierarchy: a TPM2_Clear
// by the machine's owner gives the node a new identity, as it should.
const (
	labelIdentity = "berth/v1 node identity key ecdsa-p256"
	labelBundle   = "berth/v1 bundle key ecdh-p256"
	labelAK       = "berth/v1 attestation key ecdsa-p256"
)

// keyAttrs are the attributes every berth key shares: created inside this
// TPM (sensitiveDataOrigin), never leaving it (fixedTPM, fixedParent: no
// duplication), usable with its empty auth value (userWithAuth), and exempt
// from dictionary-attack lockout (noDA), because an empty auth value cannot
// be guessed and a lockout caused by some other program must not take the
// node's identity down with it.
func keyAttrs() tpm2.TPMAObject {
	return tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
	}
}

// eccTemplate is a P-256 key whose unique field holds the SHA-256 of label.
// The TPM feeds unique into the key derivation, so berth's keys differ from
// any other program's key made from an otherwise identical template.
func eccTemplate(label string, attrs tpm2.TPMAObject, scheme tpm2.TPMTECCScheme) tpm2.TPMTPublic {
	unique := sha256.Sum256([]byte(label))
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    scheme,
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: unique[:]},
			Y: tpm2.TPM2BECCParameter{Buffer: unique[:]},
		}),
	}
}

// identityTemplate is the node identity key: an unrestricted ECDSA P-256
// signing key. Unrestricted, because it signs TLS handshake transcripts
// the TPM did not hash itself. Its scheme is left NULL so that each
// signature names its own hash (TLS 1.2 peers may ask for SHA-384).
func identityTemplate() tpm2.TPMTPublic {
	a := keyAttrs()
	a.SignEncrypt = true
	return eccTemplate(labelIdentity, a, tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull})
}

// bundleTemplate is the bundle key: an unrestricted P-256 decryption key
// with the ECDH scheme, so TPM2_ECDH_ZGen computes DHKEM(P-256)'s shared
// point and the private scalar never leaves the TPM.
func bundleTemplate() tpm2.TPMTPublic {
	a := keyAttrs()
	a.Decrypt = true
	return eccTemplate(labelBundle, a, tpm2.TPMTECCScheme{
		Scheme:  tpm2.TPMAlgECDH,
		Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDH, &tpm2.TPMSKeySchemeECDH{HashAlg: tpm2.TPMAlgSHA256}),
	})
}

// akTemplate is the attestation key: a restricted ECDSA P-256 signing key.
// A restricted key signs only digests the TPM computed itself and will not
// sign anything that starts with TPM_GENERATED_VALUE, so a quote it signed
// cannot have been forged with TPM2_Sign. The identity key is unrestricted
// and therefore cannot sign quotes that mean anything.
func akTemplate() tpm2.TPMTPublic {
	a := keyAttrs()
	a.SignEncrypt = true
	a.Restricted = true
	return eccTemplate(labelAK, a, tpm2.TPMTECCScheme{
		Scheme:  tpm2.TPMAlgECDSA,
		Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
	})
}
