package bundle

import (
	"bytes"
	"crypto/hpke"
	"encoding/binary"
	"fmt"
)

// Header constants.
const (
	// Magic starts every sealed bundle.
	Magic = "BERTHBDL"
	// Version is the format version this package writes, and the only one
	// Open accepts.
	Version = 2
	// VersionUnsigned is format version 1, without a signature, which Parse
	// still recognises.
	VersionUnsigned = 1
	// HeaderSize is the length of the clear-text header of version 2.
	HeaderSize = headerV1Size + 4

	headerV1Size  = len(Magic) + 1 + 3*2
	kdfHKDFSHA256 = 0x0001
	aeadAES256GCM = 0x0002
	aeadTagSize   = 16

	// infoLabel starts the HPKE info string of version 2.
	infoLabel = "berth bundle v2\x00"
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
// learns from a bundle besides its size and signature.
type Header struct {
	Version uint8
	KEM     uint16
	KDF     uint16
	AEAD    uint16
	// BodyLen is the length of enc and ciphertext (version 2; 0 for 1).
	BodyLen uint32
}

func (h Header) size() int {
	if h.Version == VersionUnsigned {
		return headerV1Size
	}
	return HeaderSize
}

func (h Header) bytes() []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, Magic...)
	b = append(b, h.Version)
	b = binary.BigEndian.AppendUint16(b, h.KEM)
	b = binary.BigEndian.AppendUint16(b, h.KDF)
	b = binary.BigEndian.AppendUint16(b, h.AEAD)
	if h.Version != VersionUnsigned {
		b = binary.BigEndian.AppendUint32(b, h.BodyLen)
	}
	return b
}

// Parsed is a sealed bundle split into its parts, without any decryption
// or verification.
type Parsed struct {
	Header Header
	// Sealed is the sealed part: header, enc and ciphertext. Its SHA-256 is
	// what the signature covers.
	Sealed []byte
	// Signature is the signature block; nil for format version 1.
	Signature *Signature
}

// ParseHeader reads and checks the header of a sealed bundle; see Parse.
func ParseHeader(sealed []byte) (Header, error) {
	p, err := Parse(sealed)
	if err != nil {
		return Header{}, err
	}
	return p.Header, nil
}

// Parse splits a sealed bundle into header, sealed part and signature
// block and checks their structure: the magic, a format version and
// algorithms this package supports, lengths that leave room for the
// encapsulated key and the AEAD tag, and a well-formed signature block
// that ends exactly where the bundle does. It neither decrypts nor
// verifies, so a server may call it on bundles it cannot open. Format
// version 1 parses, with no signature.
func Parse(b []byte) (*Parsed, error) {
	if len(b) < headerV1Size || string(b[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: no bundle header", ErrFormat)
	}
	r := b[len(Magic):]
	h := Header{
		Version: r[0],
		KEM:     binary.BigEndian.Uint16(r[1:]),
		KDF:     binary.BigEndian.Uint16(r[3:]),
		AEAD:    binary.BigEndian.Uint16(r[5:]),
	}
	if h.Version != Version && h.Version != VersionUnsigned {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrFormat, h.Version, Version)
	}
	if h.KDF != kdfHKDFSHA256 || h.AEAD != aeadAES256GCM {
		return nil, fmt.Errorf("%w: KDF 0x%04x and AEAD 0x%04x, want HKDF-SHA256 and AES-256-GCM", ErrFormat, h.KDF, h.AEAD)
	}
	enc, ok := encSizes[h.KEM]
	if !ok {
		return nil, fmt.Errorf("%w: unsupported KEM 0x%04x", ErrFormat, h.KEM)
	}
	if h.Version == VersionUnsigned {
		if len(b) < headerV1Size+enc+aeadTagSize {
			return nil, fmt.Errorf("%w: truncated", ErrFormat)
		}
		return &Parsed{Header: h, Sealed: b}, nil
	}
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("%w: truncated header", ErrFormat)
	}
	h.BodyLen = binary.BigEndian.Uint32(b[headerV1Size:])
	// Compared in 64 bits: no length can overflow an int.
	if uint64(h.BodyLen) < uint64(enc+aeadTagSize) || uint64(h.BodyLen) > uint64(len(b)-HeaderSize) {
		return nil, fmt.Errorf("%w: truncated", ErrFormat)
	}
	end := HeaderSize + int(h.BodyLen)
	sig, err := parseSignature(b[end:])
	if err != nil {
		return nil, err
	}
	return &Parsed{Header: h, Sealed: b[:end:end], Signature: sig}, nil
}

// info is the HPKE info string of format version 2: a label, the header,
// then the node ID.
func info(h Header, nodeID string) []byte {
	b := append([]byte(infoLabel), h.bytes()...)
	return append(b, nodeID...)
}

// Target says who a bundle is for and which version it is: the node, its
// bundle public key (KEM ID and encoding as registered), and the version
// number the bundle store will give it.
type Target struct {
	NodeID  string
	KEM     uint16
	Public  []byte
	Version int64
}

// Seal checks c against the format's rules, seals it for t.NodeID to the
// HPKE public key t.Public of KEM t.KEM and signs it with s for version
// t.Version. The result is a sealed bundle as described in the package
// documentation. Sealing is randomised: the same contents seal
// differently every time.
func Seal(t Target, c Contents, s *Signer) ([]byte, error) {
	if err := checkTarget(s, t); err != nil {
		return nil, fmt.Errorf("seal bundle: %w", err)
	}
	if _, ok := encSizes[t.KEM]; !ok {
		return nil, fmt.Errorf("seal bundle: %w: KEM 0x%04x", ErrKey, t.KEM)
	}
	kem, err := hpke.NewKEM(t.KEM)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w: KEM 0x%04x", ErrKey, t.KEM)
	}
	pk, err := kem.NewPublicKey(t.Public)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w: public key does not parse for KEM 0x%04x", ErrKey, t.KEM)
	}
	payload, err := encode(c)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w", err)
	}
	compressed, err := deflate(payload)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w", err)
	}
	h := Header{Version: Version, KEM: t.KEM, KDF: kdfHKDFSHA256, AEAD: aeadAES256GCM,
		BodyLen: uint32(encSizes[t.KEM] + len(compressed) + aeadTagSize)}
	ct, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info(h, t.NodeID), compressed)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w", err)
	}
	if len(ct) != int(h.BodyLen) {
		return nil, fmt.Errorf("seal bundle: HPKE output is %d bytes, want %d", len(ct), h.BodyLen)
	}
	sealed := append(h.bytes(), ct...)
	block, err := s.sign(t.NodeID, t.Version, sealed)
	if err != nil {
		return nil, fmt.Errorf("seal bundle: %w", err)
	}
	return append(sealed, block...), nil
}

// Opened is a bundle that verified and decrypted.
type Opened struct {
	Contents
	// SignedBy is who signed it.
	SignedBy SignedBy
	// Version is the version it is signed for.
	Version int64
}

// Open verifies a sealed bundle against v, decrypts it with the node's
// bundle key as node v.NodeID and returns its contents, files sorted by
// path, after checking them against the format's rules. Nothing is
// decrypted before the signature verified. A bundle of format version 1
// fails with ErrUnsigned; a signature by anyone v does not trust, or for
// another node or version, with ErrSigner, ErrWrongTarget,
// ErrWrongVersion or ErrSignature; one sealed to another key or for
// another node, or altered in any byte, with ErrDecrypt or ErrSignature.
func Open(priv hpke.PrivateKey, sealed []byte, v Verifier) (*Opened, error) {
	p, err := Parse(sealed)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	by, err := p.Verify(v)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	if priv == nil {
		return nil, fmt.Errorf("open bundle: %w: no key", ErrKey)
	}
	h := p.Header
	if id := priv.KEM().ID(); id != h.KEM {
		return nil, fmt.Errorf("open bundle: %w: sealed for KEM 0x%04x, key is KEM 0x%04x", ErrDecrypt, h.KEM, id)
	}
	compressed, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info(h, v.NodeID), p.Sealed[HeaderSize:])
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", ErrDecrypt)
	}
	c, err := openPlaintext(compressed)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	return &Opened{Contents: c, SignedBy: by, Version: p.Signature.Version}, nil
}

// openPlaintext inflates and decodes a decrypted payload.
func openPlaintext(compressed []byte) (Contents, error) {
	r := bytes.NewReader(compressed)
	payload, err := inflate(r)
	if err != nil {
		return Contents{}, err
	}
	if r.Len() != 0 {
		return Contents{}, fmt.Errorf("%w: data after the compressed payload", ErrFormat)
	}
	return decode(payload)
}
