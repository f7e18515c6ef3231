package bundle

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hpke"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fuzzFixture has fixed keys so that the corpus stays meaningful between
// runs; its PKI is made anew by each process, which does not matter to the
// parsers fuzzed here.
func fuzzFixture(t testing.TB) *fixture {
	t.Helper()
	k, err := hpke.DHKEM(ecdh.P256()).DeriveKeyPair([]byte("berth bundle fuzz key, not secret"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	f.priv = k
	return f
}

// errorsOfOpen are the errors Open may fail with.
var errorsOfOpen = []error{ErrFormat, ErrDecrypt, ErrUnsigned, ErrSigner, ErrSignature, ErrWrongTarget,
	ErrWrongVersion, ErrInvalidFile, ErrInvalidHook, ErrTooLarge}

func isOneOf(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// FuzzOpen feeds arbitrary bytes to Open. It must never panic, and must
// fail with one of the package's errors.
func FuzzOpen(f *testing.F) {
	fx := fuzzFixture(f)
	sealed := fx.seal(f, "n1", 1, sampleContents(), fx.admin)
	f.Add(sealed)
	f.Add(fx.seal(f, "n1", 1, sampleContents(), nodeSigner(f, fx.nodeKey)))
	f.Add(sealed[:HeaderSize+70])
	f.Add(sealV1(f, fx.priv, "n1", sampleFiles()))
	f.Add([]byte(Magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := fx.open("n1", 1, b)
		if err == nil {
			// Only a genuine bundle opens, and the seeds are the only ones.
			// (Each fuzzing process seals its own, so compare what it holds.)
			diffFiles(t, sortedSample(), got.Files)
			return
		}
		if got != nil || !isOneOf(err, errorsOfOpen) {
			t.Fatalf("Open = %v, %v", got, err)
		}
	})
}

// FuzzParse fuzzes the structural parser a server runs on every upload,
// the signature block included. Whatever parses must split into parts
// that add up to the input, and a signature block that re-encodes to the
// same bytes.
func FuzzParse(f *testing.F) {
	fx := fuzzFixture(f)
	f.Add(fx.seal(f, "n1", 1, sampleContents(), fx.admin))
	f.Add(fx.seal(f, "n1", 1<<62, Contents{}, nodeSigner(f, fx.nodeKey)))
	f.Add(sealV1(f, fx.priv, "n1", nil))
	f.Add([]byte(Magic + "\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if p != nil || !errors.Is(err, ErrFormat) {
				t.Fatalf("Parse = %v, %v", p, err)
			}
			return
		}
		if !bytes.HasPrefix(b, p.Sealed) {
			t.Fatal("the sealed part is not the start of the bundle")
		}
		_ = p.SignedBy()
		if p.Signature == nil {
			if p.Header.Version != VersionUnsigned || len(p.Sealed) != len(b) {
				t.Fatalf("version %d parsed without a signature", p.Header.Version)
			}
			return
		}
		if got := encodeSignature(p.Signature); !bytes.Equal(got, b[len(p.Sealed):]) {
			t.Fatalf("signature block does not re-encode: %x, want %x", got, b[len(p.Sealed):])
		}
	})
}

// FuzzSignatureBlock fuzzes the signature block parser alone, and then
// verification of what parses, which must fail (the fuzzer cannot sign)
// with one of the verification errors and never panic.
func FuzzSignatureBlock(f *testing.F) {
	fx := fuzzFixture(f)
	for _, s := range []*Signer{fx.admin, nodeSigner(f, fx.nodeKey)} {
		sealed := fx.seal(f, "n1", 3, Contents{}, s)
		p, err := Parse(sealed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed[len(p.Sealed):])
	}
	f.Add([]byte{1, 4, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSignature(b)
		if err != nil {
			if s != nil || !errors.Is(err, ErrFormat) {
				t.Fatalf("parseSignature = %v, %v", s, err)
			}
			return
		}
		if d := cmp.Diff(b, encodeSignature(s)); d != "" {
			t.Fatalf("block does not re-encode (-in +out):\n%s", d)
		}
		p := &Parsed{Sealed: []byte("not what was signed"), Signature: s}
		by, err := p.Verify(Verifier{TrustDomain: s.TrustDomain, NodeID: s.NodeID, Version: s.Version,
			Roots: fx.pki.pool, NodeKey: fx.nodeKey.Public().(*ecdsa.PublicKey)})
		if err == nil || !isOneOf(err, []error{ErrSigner, ErrSignature}) {
			t.Fatalf("Verify = %v, %v; want ErrSigner or ErrSignature", by, err)
		}
	})
}

// FuzzPlaintext fuzzes what follows decryption, which random sealed bytes
// never reach: inflating and decoding a payload from a sealer that may be
// hostile. Whatever opens must be valid and re-encode to the same payload.
func FuzzPlaintext(f *testing.F) {
	for _, c := range []Contents{{}, sampleContents(), {Files: sampleFiles()[:1]}} {
		p, err := encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(mustDeflate(f, p))
	}
	f.Add([]byte("not deflate"))
	f.Fuzz(func(t *testing.T, compressed []byte) {
		c, err := openPlaintext(compressed)
		if err != nil {
			if c.Files != nil || c.Hooks != nil || !isOneOf(err, []error{ErrFormat, ErrInvalidFile, ErrInvalidHook, ErrTooLarge}) {
				t.Fatalf("openPlaintext = %v, %v", c, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("opened contents do not validate: %v", err)
		}
		p, err := encode(c)
		if err != nil {
			t.Fatalf("opened contents do not encode: %v", err)
		}
		payload, err := inflate(bytes.NewReader(compressed))
		if err != nil || !bytes.Equal(p, payload) {
			t.Fatalf("payload is not canonical: re-encoded %d bytes, inflated %d (%v)", len(p), len(payload), err)
		}
	})
}
