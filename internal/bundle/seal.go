package bundle

import (
	"bytes"
	"crypto/hpke"
	"encoding/binary"
	"fmt"
)

// Header constants of format version 1.
const (
	// Magic starts every sealed bundle.
	Magic = "BERTHBDL"
	// Version is the format version this package writes and reads.
	Version = 1
	// HeaderSize is the length of the clear-text header.
	HeaderSize = len(Magic) + 1 + 3*2

	kdfHKDFSHA256 = 0x0001
	aeadAES256GCM = 0x0002
	aeadTagSize   = 16
)

// encSizes are the encapsulated key sizes of the KEMs crypto/hpke offers,
// by KEM ID, so that a truncated bundle is refused before any decryption.
var encSizes = map[uint16]int{
	0x0010: 65,   // DHKEM(P-256, HKDF-SHA256)
	0x0011: 97,   // DHKEM(P-384, HKDF-SHA384)
	0x0012: 133,  // DHKEM(P-521, HKDF-SHA512)
	0x0020: 32,   // DHKEM(X25519, HKDF-SHA256)
	0x0041: 1088, // ML-KEM-768
	0x0042: 1568, // ML-KEM-1024
	0x0050: 1153, // ML-KEM-768 + P-256
	0x0051: 1665, // ML-KEM-1024 + P-384
	0x647a: 1120, // ML-KEM-768 + X25519
}

// Header is the clear-text start of a sealed bundle. It is all a server
// learns from a bundle besides its size.
type Header struct {
	Version uint8
	KEM     uint16
	KDF     uint16
	AEAD    uint16
}

func (h Header) bytes() []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, Magic...)
	b = append(b, h.Version)
	b = binary.BigEndian.AppendUint16(b, h.KEM)
	b = binary.BigEndian.AppendUint16(b, h.KDF)
	return binary.BigEndian.AppendUint16(b, h.AEAD)
}

// ParseHeader reads and checks the header of a sealed bundle: the magic,
// a format version and algorithms this package supports, and a length that
// leaves room for the encapsulated key and the AEAD tag. It does not
// decrypt anything, so a server may call it on bundles it cannot open.
func ParseHeader(sealed []byte) (Header, error) {
	if len(sealed) < HeaderSize || string(sealed[:len(Magic)]) != Magic {
		return Header{}, fmt.Errorf("%w: no bundle header", ErrFormat)
	}
	b := sealed[len(Magic):]
	h := Header{
		Version: b[0],
		KEM:     binary.BigEndian.Uint16(b[1:]),
		KDF:     binary.BigEndian.Uint16(b[3:]),
		AEAD:    binary.BigEndian.Uint16(b[5:]),
	}
	if h.Version != Version {
		return Header{}, fmt.Errorf("%w: format version %d, want %d", ErrFormat, h.Version, Version)
	}
	if h.KDF != kdfHKDFSHA256 || h.AEAD != aeadAES256GCM {
		return Header{}, fmt.Errorf("%w: KDF 0x%04x and AEAD 0x%04x, want HKDF-SHA256 and AES-256-GCM", ErrFormat, h.KDF, h.AEAD)
	}
	enc, ok := encSizes[h.KEM]
	if !ok {
		return Header{}, fmt.Errorf("%w: unsupported KEM 0x%04x", ErrFormat, h.KEM)
	}
	if len(sealed) < HeaderSize+enc+aeadTagSize {
		return Header{}, fmt.Errorf("%w: truncated", ErrFormat)
	}
	return h, nil
}

// info is the HPKE info string: the header, then the node ID.
func info(h Header, nodeID string) []byte {
	return append(h.bytes(), nodeID...)
}

// Seal checks files against the format's rules and seals them for node
// nodeID to the HPKE public key pub of KEM kemID, as registered with the
// node. The result is a sealed bundle as described in the package
// documentation. Sealing is randomised: the same files seal differently
// every time.
func Seal(kemID uint16, pub []byte, nodeID string, files []File) ([]byte, error) {
	if nodeID == "" {
		return nil, fmt.Errorf("seal bundle: empty node ID")
	}
	if _, ok := encSizes[kemID]; !ok {
		return nil, fmt.Errorf("seal bundle: %w: KEM 0x%04x", ErrKey, kemID)
	}
	kem, err := hpke.NewKEM(kemID)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w: KEM 0x%04x", ErrKey, kemID)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w: public key does not parse for KEM 0x%04x", ErrKey, kemID)
	}
	payload, err := encode(files)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w", err)
	}
	compressed, err := deflate(payload)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w", err)
	}
	h := Header{Version: Version, KEM: kemID, KDF: kdfHKDFSHA256, AEAD: aeadAES256GCM}
	ct, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info(h, nodeID), compressed)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w", err)
	}
	return append(h.bytes(), ct...), nil
}

// Open decrypts a sealed bundle with the node's bundle key, as node nodeID,
// and returns its files, sorted by path, after checking them against the
// format's rules. A bundle sealed to another key or for another node, or
// altered in any byte, fails with ErrDecrypt.
func Open(priv hpke.PrivateKey, nodeID string, sealed []byte) ([]File, error) {
	h, err := ParseHeader(sealed)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	if priv == nil {
		return nil, fmt.Errorf("open bundle: %w: no key", ErrKey)
	}
	if id := priv.KEM().ID(); id != h.KEM {
		return nil, fmt.Errorf("open bundle: %w: sealed for KEM 0x%04x, key is KEM 0x%04x", ErrDecrypt, h.KEM, id)
	}
	compressed, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info(h, nodeID), sealed[HeaderSize:])
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", ErrDecrypt)
	}
	files, err := openPlaintext(compressed)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	return files, nil
}

// openPlaintext inflates and decodes a decrypted payload.
func openPlaintext(compressed []byte) ([]File, error) {
	r := bytes.NewReader(compressed)
	payload, err := inflate(r)
	if err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: data after the compressed payload", ErrFormat)
	}
	return decode(payload)
}
