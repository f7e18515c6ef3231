package bundle

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"testing"
)

// fuzzKey is fixed so that the corpus stays meaningful between runs.
func fuzzKey(t testing.TB) hpke.PrivateKey {
	t.Helper()
	k, err := hpke.DHKEM(ecdh.P256()).DeriveKeyPair([]byte("berth bundle fuzz key, not secret"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzOpen feeds arbitrary bytes to Open. It must never panic, and must
// fail with one of the package's errors.
func FuzzOpen(f *testing.F) {
	priv := fuzzKey(f)
	sealed := seal(f, priv, "n1", sampleFiles())
	f.Add(sealed)
	f.Add(sealed[:HeaderSize+70])
	f.Add([]byte(Magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := Open(priv, "n1", b)
		if err == nil {
			// Only a genuine bundle opens, and the seed is the only one. (Each
			// fuzzing process seals its own, so compare what it holds.)
			diffFiles(t, sortedSample(), files)
			return
		}
		if files != nil || !errors.Is(err, ErrFormat) && !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Open = %d files, %v", len(files), err)
		}
	})
}

// FuzzPlaintext fuzzes what follows decryption, which random sealed bytes
// never reach: inflating and decoding a payload from a sealer that may be
// hostile. Whatever opens must be valid and re-encode to the same payload.
func FuzzPlaintext(f *testing.F) {
	for _, files := range [][]File{nil, sampleFiles(), sampleFiles()[:1]} {
		p, err := encode(files)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(mustDeflate(f, p))
	}
	f.Add([]byte("not deflate"))
	f.Fuzz(func(t *testing.T, compressed []byte) {
		files, err := openPlaintext(compressed)
		if err != nil {
			if files != nil || !errors.Is(err, ErrFormat) && !errors.Is(err, ErrInvalidFile) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("openPlaintext = %d files, %v", len(files), err)
			}
			return
		}
		if err := Validate(files); err != nil {
			t.Fatalf("opened files do not validate: %v", err)
		}
		p, err := encode(files)
		if err != nil {
			t.Fatalf("opened files do not encode: %v", err)
		}
		payload, err := inflate(bytes.NewReader(compressed))
		if err != nil || !bytes.Equal(p, payload) {
			t.Fatalf("payload is not canonical: re-encoded %d bytes, inflated %d (%v)", len(p), len(payload), err)
		}
	})
}
