package attest

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// EK is an endorsement key's public area that passed the EK checks.
type EK struct {
	pub  *tpm2.TPMTPublic
	key  crypto.PublicKey // *rsa.PublicKey or *ecdsa.PublicKey
	hash string
}

const roleEK = "endorsement key"

// ParseEK parses and checks an EK's TPM public area (a marshalled
// TPMT_PUBLIC): an RSA 2048 or ECC P-256 key named with SHA-256, fixed to
// its TPM, and a restricted decryption key. Restricted matters: an
// unrestricted EK would decrypt a credential's seed for anyone who asked
// (TPM2_RSA_Decrypt, TPM2_ECDH_ZGen), and the credential could then be
// recovered without the key it names ever being in the TPM.
func ParseEK(raw []byte) (*EK, error) {
	pub, err := parsePublic(raw, roleEK)
	if err != nil {
		return nil, err
	}
	if err := fixedAttributes(pub, roleEK); err != nil {
		return nil, err
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.Decrypt || a.SignEncrypt {
		return nil, fmt.Errorf("%w: the %s is not a restricted decryption key", ErrKeyAttributes, roleEK)
	}
	var key crypto.PublicKey
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		key, err = rsaKey(pub, roleEK)
	case tpm2.TPMAlgECC:
		key, err = eccKey(pub, roleEK)
	default:
		err = fmt.Errorf("%w: the %s is neither RSA nor ECC", ErrKeyAttributes, roleEK)
	}
	if err != nil {
		return nil, err
	}
	// MakeCredential encrypts to the EK with its own symmetric parameters;
	// refuse now what it could not use later.
	if _, err := tpm2.ImportEncapsulationKey(pub); err != nil {
		return nil, fmt.Errorf("%w: the %s cannot receive a credential: %v", ErrKeyAttributes, roleEK, err)
	}
	hash, err := EKHash(key)
	if err != nil {
		return nil, err
	}
	return &EK{pub: pub, key: key, hash: hash}, nil
}

// Public is the EK's public key, *rsa.PublicKey or *ecdsa.PublicKey.
func (e *EK) Public() crypto.PublicKey { return e.key }

// Hash is the EK's ek_hash; see EKHash.
func (e *EK) Hash() string { return e.hash }

// EKHash is how berth names an endorsement key: "sha256:" and the
// lower-case hex SHA-256 of the EK public key's DER SubjectPublicKeyInfo.
// It depends only on the key, not on the TPM encoding, so an operator can
// compute it from an EK certificate with standard tools before the machine
// ever boots:
//
//	openssl x509 -in ek.pem -noout -pubkey | openssl pkey -pubin -outform der | sha256sum
func EKHash(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: endorsement key: %v", ErrKeyAttributes, err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
