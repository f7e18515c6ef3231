package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Key is a TPM key's public area that passed the checks for its role.
type Key struct {
	role string
	pub  *tpm2.TPMTPublic
	name []byte
	key  *ecdsa.PublicKey
}

// Name is the key's TPM Name: its name algorithm (SHA-256) followed by the
// SHA-256 of its public area. A credential is made for this Name.
func (k *Key) Name() []byte { return bytes.Clone(k.name) }

// Public is the key's public key.
func (k *Key) Public() *ecdsa.PublicKey { return k.key }

// Roles, in error messages.
const (
	roleIdentity = "identity key"
	roleBundle   = "bundle key"
	roleAK       = "attestation key"
)

// ParseIdentityKey parses and checks the identity key's TPM public area
// (a marshalled TPMT_PUBLIC): an unrestricted ECDSA P-256 signing key that
// cannot leave its TPM (fixedTPM, fixedParent: no duplication) and was
// generated inside it (sensitiveDataOrigin), whose public key is tlsKey,
// the key the node proved possession of in its TLS handshake.
func ParseIdentityKey(raw []byte, tlsKey crypto.PublicKey) (*Key, error) {
	k, err := parseKey(raw, roleIdentity)
	if err != nil {
		return nil, err
	}
	a := k.pub.ObjectAttributes
	switch {
	case !a.SignEncrypt:
		return nil, fmt.Errorf("%w: the %s is not a signing key", ErrKeyAttributes, k.role)
	case a.Decrypt:
		return nil, fmt.Errorf("%w: the %s is a decryption key too", ErrKeyAttributes, k.role)
	case a.Restricted:
		return nil, fmt.Errorf("%w: the %s is restricted and cannot sign TLS handshakes", ErrKeyAttributes, k.role)
	}
	if err := k.schemeIs(tpm2.TPMAlgNull, tpm2.TPMAlgECDSA); err != nil {
		return nil, err
	}
	if !k.key.Equal(tlsKey) {
		return nil, fmt.Errorf("%w: the %s in the TPM is not the key of the TLS connection", ErrKeyMismatch, k.role)
	}
	return k, nil
}

// ParseBundleKey parses and checks the bundle key's TPM public area: an
// unrestricted P-256 ECDH decryption key bound to its TPM like the
// identity key, whose public key is bundleKey, a DHKEM(P-256) HPKE key.
func ParseBundleKey(raw []byte, bundleKey hpke.PublicKey) (*Key, error) {
	k, err := parseKey(raw, roleBundle)
	if err != nil {
		return nil, err
	}
	a := k.pub.ObjectAttributes
	switch {
	case !a.Decrypt:
		return nil, fmt.Errorf("%w: the %s is not a decryption key", ErrKeyAttributes, k.role)
	case a.SignEncrypt:
		return nil, fmt.Errorf("%w: the %s is a signing key too", ErrKeyAttributes, k.role)
	case a.Restricted:
		return nil, fmt.Errorf("%w: the %s is restricted and cannot do ECDH", ErrKeyAttributes, k.role)
	}
	if err := k.schemeIs(tpm2.TPMAlgNull, tpm2.TPMAlgECDH); err != nil {
		return nil, err
	}
	if bundleKey == nil || bundleKey.KEM().ID() != hpke.DHKEM(ecdh.P256()).ID() {
		return nil, fmt.Errorf("%w: a TPM bundle key is DHKEM(P-256); the node's bundle key is another KEM", ErrKeyMismatch)
	}
	ek, err := k.key.ECDH()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyAttributes, k.role, err)
	}
	if !bytes.Equal(ek.Bytes(), bundleKey.Bytes()) {
		return nil, fmt.Errorf("%w: the %s in the TPM is not the node's bundle key", ErrKeyMismatch, k.role)
	}
	return k, nil
}

// ParseAK parses and checks an attestation key's TPM public area: a
// restricted ECDSA P-256 signing key with the ECDSA-SHA256 scheme, bound to
// its TPM. Restricted matters: the TPM refuses to sign, with such a key,
// anything that looks like a TPM attestation but was not made by the TPM,
// so its quotes cannot be forged.
func ParseAK(raw []byte) (*Key, error) {
	k, err := parseKey(raw, roleAK)
	if err != nil {
		return nil, err
	}
	a := k.pub.ObjectAttributes
	switch {
	case !a.Restricted || !a.SignEncrypt:
		return nil, fmt.Errorf("%w: the %s is not a restricted signing key, so its quotes could be forged", ErrKeyAttributes, k.role)
	case a.Decrypt:
		return nil, fmt.Errorf("%w: the %s is a decryption key too", ErrKeyAttributes, k.role)
	}
	if err := k.schemeIs(tpm2.TPMAlgECDSA); err != nil {
		return nil, err
	}
	parms, _ := k.pub.Parameters.ECCDetail() // checked by parseKey
	if d, err := parms.Scheme.Details.ECDSA(); err != nil || d.HashAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("%w: the %s does not sign with ECDSA-SHA256", ErrKeyAttributes, k.role)
	}
	return k, nil
}

// parseKey checks what every node key shares: a P-256 key named with
// SHA-256, made in and fixed to its TPM.
func parseKey(raw []byte, role string) (*Key, error) {
	pub, err := parsePublic(raw, role)
	if err != nil {
		return nil, err
	}
	if pub.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("%w: the %s is not an ECC key", ErrKeyAttributes, role)
	}
	if err := fixedAttributes(pub, role); err != nil {
		return nil, err
	}
	key, err := eccKey(pub, role)
	if err != nil {
		return nil, err
	}
	return &Key{role: role, pub: pub, name: name(raw), key: key}, nil
}

// fixedAttributes requires a key generated in its TPM that can never be
// duplicated out of it.
func fixedAttributes(pub *tpm2.TPMTPublic, role string) error {
	a := pub.ObjectAttributes
	var missing []string
	if !a.FixedTPM {
		missing = append(missing, "fixedTPM")
	}
	if !a.FixedParent {
		missing = append(missing, "fixedParent")
	}
	if !a.SensitiveDataOrigin {
		missing = append(missing, "sensitiveDataOrigin")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: the %s lacks %v, so it could have been made or copied outside the TPM", ErrKeyAttributes, role, missing)
	}
	return nil
}

func (k *Key) schemeIs(allowed ...tpm2.TPMAlgID) error {
	parms, err := k.pub.Parameters.ECCDetail()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, k.role, err)
	}
	for _, a := range allowed {
		if parms.Scheme.Scheme == a {
			return nil
		}
	}
	return fmt.Errorf("%w: the %s has scheme %v", ErrKeyAttributes, k.role, parms.Scheme.Scheme)
}

// eccKey returns a P-256 public area's key, checking the point.
func eccKey(pub *tpm2.TPMTPublic, role string) (*ecdsa.PublicKey, error) {
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, role, err)
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("%w: the %s is on curve %v, not P-256", ErrKeyAttributes, role, parms.CurveID)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, role, err)
	}
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) > 32 || len(y) > 32 {
		return nil, fmt.Errorf("%w: the %s's point has coordinates longer than 32 bytes", ErrMalformed, role)
	}
	raw := make([]byte, 65)
	raw[0] = 4
	copy(raw[33-len(x):33], x)
	copy(raw[65-len(y):], y)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the %s's point is not on P-256", ErrMalformed, role)
	}
	return key, nil
}

// rsaKey returns an RSA public area's key.
func rsaKey(pub *tpm2.TPMTPublic, role string) (*rsa.PublicKey, error) {
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, role, err)
	}
	n, err := pub.Unique.RSA()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, role, err)
	}
	if int(parms.KeyBits) != 2048 || len(n.Buffer) != 256 {
		return nil, fmt.Errorf("%w: the %s is RSA %d (a %d-byte modulus), not RSA 2048", ErrKeyAttributes, role, parms.KeyBits, len(n.Buffer))
	}
	key, err := tpm2.RSAPub(parms, n)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, role, err)
	}
	if key.N.BitLen() != 2048 || key.E < 3 || key.E%2 == 0 {
		return nil, fmt.Errorf("%w: the %s is not a valid RSA 2048 key", ErrKeyAttributes, role)
	}
	return key, nil
}

// parsePublic unmarshals a TPMT_PUBLIC and insists it is the canonical
// encoding of what it decodes to: no trailing bytes, nothing the decoder
// skipped. The Name hashes these exact bytes, so two encodings of one key
// must not both be accepted.
func parsePublic(raw []byte, role string) (pub *tpm2.TPMTPublic, err error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: no %s public area", ErrMalformed, role)
	}
	if len(raw) > maxPublic {
		return nil, fmt.Errorf("%w: the %s public area is %d bytes; at most %d", ErrMalformed, role, len(raw), maxPublic)
	}
	pub, err = unmarshal[tpm2.TPMTPublic](raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the %s public area: %v", ErrMalformed, role, err)
	}
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("%w: the %s is named with %v, not SHA-256", ErrKeyAttributes, role, pub.NameAlg)
	}
	return pub, nil
}

// maxPublic is sizeof(TPMT_PUBLIC) with the largest key a TPM makes,
// rounded up; anything longer is not a public area.
const maxPublic = 1024

// name is the TPM Name of a SHA-256-named object: the algorithm ID, then
// the digest of its public area.
func name(raw []byte) []byte {
	sum := sha256.Sum256(raw)
	return append([]byte{byte(tpm2.TPMAlgSHA256 >> 8), byte(tpm2.TPMAlgSHA256)}, sum[:]...)
}

// unmarshal decodes a TPM structure that must be canonically encoded.
// go-tpm's decoder is reflection-driven and not written for hostile input,
// so a panic in it is turned into an error instead of taking the server
// down.
func unmarshal[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](raw []byte) (v *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("undecodable: %v", r)
		}
	}()
	v, err = tpm2.Unmarshal[T, P](raw)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(*v), raw) {
		return nil, fmt.Errorf("not canonically encoded (%d bytes, of which %d decode)", len(raw), len(tpm2.Marshal(*v)))
	}
	return v, nil
}
