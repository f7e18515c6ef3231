package bundle

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kems are the two KEMs berth uses: the default hybrid and the one a TPM
// can hold.
var kems = []struct {
	name string
	kem  hpke.KEM
}{
	{"MLKEM768X25519", hpke.MLKEM768X25519()},
	{"DHKEM-P256", hpke.DHKEM(ecdh.P256())},
}

func newKey(t testing.TB, kem hpke.KEM) hpke.PrivateKey {
	t.Helper()
	k, err := kem.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seal(t testing.TB, k hpke.PrivateKey, nodeID string, files []File) []byte {
	t.Helper()
	sealed, err := Seal(k.KEM().ID(), k.PublicKey().Bytes(), nodeID, files)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return sealed
}

// sealPlaintext seals arbitrary bytes as a bundle's compressed payload, for
// tests of what Open does with a payload Seal would never write.
func sealPlaintext(t testing.TB, k hpke.PrivateKey, nodeID string, plaintext []byte) []byte {
	t.Helper()
	h := Header{Version: Version, KEM: k.KEM().ID(), KDF: kdfHKDFSHA256, AEAD: aeadAES256GCM}
	ct, err := hpke.Seal(k.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), info(h, nodeID), plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return append(h.bytes(), ct...)
}

func sampleFiles() []File {
	return []File{
		{Path: "etc/hostname", Mode: 0o644, Content: []byte("node-07\n")},
		{Path: "etc/berth/secret.conf", Mode: 0o600, Owner: "root", Group: "berth", Content: []byte("password = hunter2\n")},
		{Path: "usr/local/bin/hook", Mode: 0o755 | fs.ModeSetgid, Owner: "0", Group: "1000", Content: bytes.Repeat([]byte("#!/bin/sh\necho hi\n"), 100)},
		{Path: "var/empty", Mode: 0o400},
		{Path: "tmp/sticky", Mode: 0o777 | fs.ModeSticky | fs.ModeSetuid, Owner: "www-data", Group: "_apt", Content: []byte{0, 1, 2, 0xff}},
	}
}

func sortedSample() []File {
	f := sampleFiles()
	return []File{f[1], f[0], f[4], f[2], f[3]}
}

func diffFiles(t *testing.T, want, got []File) {
	t.Helper()
	// bytes.Equal, rather than cmp's element by element walk, keeps
	// megabytes of content quick to compare; it also equates nil and empty.
	if d := cmp.Diff(want, got, cmp.Comparer(bytes.Equal)); d != "" {
		t.Errorf("files mismatch (-want +got):\n%s", d)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, k := range kems {
		t.Run(k.name, func(t *testing.T) {
			priv := newKey(t, k.kem)
			sealed := seal(t, priv, "node-a", sampleFiles())
			h, err := ParseHeader(sealed)
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
			}
			if want := (Header{Version: 1, KEM: k.kem.ID(), KDF: 1, AEAD: 2}); h != want {
				t.Errorf("header = %+v, want %+v", h, want)
			}
			got, err := Open(priv, "node-a", sealed)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			diffFiles(t, sortedSample(), got)
			for _, f := range sampleFiles() {
				if len(f.Content) > 4 && bytes.Contains(sealed, f.Content) {
					t.Errorf("sealed bundle contains the content of %s in clear", f.Path)
				}
			}
			again := seal(t, priv, "node-a", sampleFiles())
			if bytes.Equal(sealed, again) || Digest(sealed) == Digest(again) {
				t.Error("sealing twice gave the same bytes; HPKE sealing must be randomised")
			}
		})
	}
}

func TestRoundTripEmpty(t *testing.T) {
	priv := newKey(t, hpke.DHKEM(ecdh.P256()))
	got, err := Open(priv, "n1", seal(t, priv, "n1", nil))
	if err != nil || len(got) != 0 {
		t.Fatalf("Open = %v, %v; want no files", got, err)
	}
}

func TestDigest(t *testing.T) {
	// SHA-256 of "abc".
	if got, want := Digest([]byte("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("Digest = %s, want %s", got, want)
	}
}

// TestEncSizes checks the table ParseHeader relies on against crypto/hpke.
func TestEncSizes(t *testing.T) {
	for id, want := range encSizes {
		kem, err := hpke.NewKEM(id)
		if err != nil {
			t.Errorf("KEM 0x%04x: %v", id, err)
			continue
		}
		priv := newKey(t, kem)
		ct, err := hpke.Seal(priv.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(ct) - aeadTagSize; got != want {
			t.Errorf("KEM 0x%04x: enc is %d bytes, table says %d", id, got, want)
		}
		// Every KEM in the table round-trips.
		if _, err := Open(priv, "n1", seal(t, priv, "n1", sampleFiles())); err != nil {
			t.Errorf("KEM 0x%04x: %v", id, err)
		}
	}
}

func TestOpenWrongKeyOrNode(t *testing.T) {
	for _, k := range kems {
		t.Run(k.name, func(t *testing.T) {
			a, b := newKey(t, k.kem), newKey(t, k.kem)
			other := newKey(t, kems[0].kem)
			if k.kem.ID() == other.KEM().ID() {
				other = newKey(t, kems[1].kem)
			}
			sealed := seal(t, a, "node-a", sampleFiles())
			tests := []struct {
				name   string
				key    hpke.PrivateKey
				nodeID string
			}{
				{"another node's key", b, "node-a"},
				{"a key of another KEM", other, "node-a"},
				{"right key, claimed as another node", a, "node-b"},
				{"right key, node ID extended", a, "node-a2"},
				{"right key, empty node ID", a, ""},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					files, err := Open(tt.key, tt.nodeID, sealed)
					if !errors.Is(err, ErrDecrypt) || files != nil {
						t.Errorf("Open = %v, %v; want ErrDecrypt", files, err)
					}
				})
			}
		})
	}
}

// TestTamper flips every bit of a sealed bundle in turn, and truncates it at
// every length: every variant must be refused.
func TestTamper(t *testing.T) {
	for _, k := range kems {
		t.Run(k.name, func(t *testing.T) {
			priv := newKey(t, k.kem)
			sealed := seal(t, priv, "node-a", sampleFiles()[:2])
			for i := range sealed {
				for _, bit := range []byte{0x01, 0x80} {
					bad := bytes.Clone(sealed)
					bad[i] ^= bit
					files, err := Open(priv, "node-a", bad)
					if err == nil || files != nil || !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrFormat) {
						t.Fatalf("byte %d ^ %#x: Open = %d files, %v; want ErrDecrypt or ErrFormat", i, bit, len(files), err)
					}
				}
			}
			for n := range len(sealed) {
				if files, err := Open(priv, "node-a", sealed[:n]); err == nil || files != nil {
					t.Fatalf("truncated to %d bytes: Open succeeded", n)
				}
			}
			if _, err := Open(priv, "node-a", append(bytes.Clone(sealed), 0)); !errors.Is(err, ErrDecrypt) {
				t.Errorf("one byte appended: err = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	priv := newKey(t, hpke.DHKEM(ecdh.P256()))
	good := seal(t, priv, "n1", sampleFiles())
	withHeader := func(edit func(b []byte)) []byte {
		b := bytes.Clone(good)
		edit(b)
		return b
	}
	tests := []struct {
		name   string
		sealed []byte
	}{
		{"empty", nil},
		{"garbage", []byte("this is not a bundle at all, just some text")},
		{"plain gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"magic only", []byte(Magic)},
		{"wrong magic", withHeader(func(b []byte) { b[0] = 'b' })},
		{"version 0", withHeader(func(b []byte) { b[8] = 0 })},
		{"version 2", withHeader(func(b []byte) { b[8] = 2 })},
		{"unknown KEM", withHeader(func(b []byte) { binary.BigEndian.PutUint16(b[9:], 0x0021) })},
		{"other KDF", withHeader(func(b []byte) { binary.BigEndian.PutUint16(b[11:], 0x0002) })},
		{"other AEAD", withHeader(func(b []byte) { binary.BigEndian.PutUint16(b[13:], 0x0003) })},
		{"header only", good[:HeaderSize]},
		{"no room for the tag", good[:HeaderSize+65+aeadTagSize-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseHeader(tt.sealed); !errors.Is(err, ErrFormat) {
				t.Errorf("ParseHeader: err = %v, want ErrFormat", err)
			}
			if _, err := Open(priv, "n1", tt.sealed); !errors.Is(err, ErrFormat) {
				t.Errorf("Open: err = %v, want ErrFormat", err)
			}
		})
	}
	if _, err := ParseHeader(good[:HeaderSize+65+aeadTagSize]); err != nil {
		t.Errorf("shortest well-formed bundle: %v", err)
	}
}

func TestValidate(t *testing.T) {
	file := func(p string) File { return File{Path: p, Mode: 0o644} }
	many := make([]File, MaxFiles+1)
	for i := range many {
		many[i] = file("f/" + strings.Repeat("x", i%200) + string(rune('a'+i%26)) + "/" + string(rune('a'+i/26%26)) + string(rune('a'+i/676)))
	}
	tests := []struct {
		name  string
		files []File
		want  error
	}{
		{"good", sampleFiles(), nil},
		{"none", nil, nil},
		{"longest path", []File{file(strings.Repeat(strings.Repeat("a", 254)+"/", 4) + "bbbb")}, nil},
		{"longest element", []File{file("etc/" + strings.Repeat("a", 255))}, nil},
		{"unicode path", []File{file("etc/motd-ß")}, nil},
		{"dots inside names", []File{file("etc/.hidden"), file("a..b"), file("...")}, nil},
		{"names that share a prefix", []File{file("etc/a"), file("etc/ab"), file("etc/a-b/c")}, nil},
		{"max files", many[:MaxFiles], nil},
		{"empty path", []File{file("")}, ErrInvalidFile},
		{"dot", []File{file(".")}, ErrInvalidFile},
		{"dot-dot", []File{file("..")}, ErrInvalidFile},
		{"escapes the root", []File{file("etc/../../x")}, ErrInvalidFile},
		{"dot-dot element", []File{file("etc/../passwd")}, ErrInvalidFile},
		{"dot element", []File{file("etc/./passwd")}, ErrInvalidFile},
		{"absolute", []File{file("/etc/passwd")}, ErrInvalidFile},
		{"trailing slash", []File{file("etc/")}, ErrInvalidFile},
		{"double slash", []File{file("etc//passwd")}, ErrInvalidFile},
		{"NUL", []File{file("etc/pass\x00wd")}, ErrInvalidFile},
		{"newline", []File{file("etc/pass\nwd")}, ErrInvalidFile},
		{"DEL", []File{file("etc/pass\x7fwd")}, ErrInvalidFile},
		{"bad UTF-8", []File{file("etc/\xff")}, ErrInvalidFile},
		{"path too long", []File{file(strings.Repeat("a/", MaxPathLen/2) + "b")}, ErrInvalidFile},
		{"element too long", []File{file(strings.Repeat("a", 256))}, ErrInvalidFile},
		{"duplicate", []File{file("etc/a"), file("etc/b"), file("etc/a")}, ErrInvalidFile},
		{"file is another's directory", []File{file("etc/a/b/c"), file("etc/a")}, ErrInvalidFile},
		{"file is another's parent directory", []File{file("etc"), file("etc/a/b")}, ErrInvalidFile},
		{"directory mode", []File{{Path: "etc", Mode: fs.ModeDir | 0o755}}, ErrInvalidFile},
		{"symlink mode", []File{{Path: "etc", Mode: fs.ModeSymlink | 0o777}}, ErrInvalidFile},
		{"device mode", []File{{Path: "dev/x", Mode: fs.ModeDevice | 0o600}}, ErrInvalidFile},
		{"unix setuid bit as a number", []File{{Path: "x", Mode: 0o4755}}, ErrInvalidFile},
		{"owner with a space", []File{{Path: "x", Owner: "a b"}}, ErrInvalidFile},
		{"owner with a colon", []File{{Path: "x", Owner: "root:root"}}, ErrInvalidFile},
		{"owner starting with a dash", []File{{Path: "x", Owner: "-r"}}, ErrInvalidFile},
		{"owner too long", []File{{Path: "x", Owner: strings.Repeat("a", MaxNameLen+1)}}, ErrInvalidFile},
		{"owner -1", []File{{Path: "x", Owner: "4294967295"}}, ErrInvalidFile},
		{"owner over 32 bits", []File{{Path: "x", Owner: "4294967296"}}, ErrInvalidFile},
		{"owner with leading zeros", []File{{Path: "x", Owner: "007"}}, ErrInvalidFile},
		{"group with a slash", []File{{Path: "x", Group: "a/b"}}, ErrInvalidFile},
		{"too many files", many, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.files)
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Validate: err = %v, want %v", err, tt.want)
			}
			// Seal refuses exactly what Validate refuses.
			priv := newKey(t, hpke.DHKEM(ecdh.P256()))
			_, err = Seal(priv.KEM().ID(), priv.PublicKey().Bytes(), "n1", tt.files)
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Seal: err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSealErrors(t *testing.T) {
	p256 := newKey(t, hpke.DHKEM(ecdh.P256()))
	tests := []struct {
		name   string
		kem    uint16
		pub    []byte
		nodeID string
		files  []File
		want   error
	}{
		{"unknown KEM", 0x0021, p256.PublicKey().Bytes(), "n1", nil, ErrKey},
		{"key of another KEM", 0x647a, p256.PublicKey().Bytes(), "n1", nil, ErrKey},
		{"malformed key", 0x0010, []byte("not a key"), "n1", nil, ErrKey},
		{"no node ID", 0x0010, p256.PublicKey().Bytes(), "", nil, nil},
		{"too large", 0x0010, p256.PublicKey().Bytes(), "n1", []File{{Path: "big", Content: make([]byte, MaxPayload)}}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := Seal(tt.kem, tt.pub, tt.nodeID, tt.files)
			if err == nil || sealed != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Seal = %d bytes, %v; want error %v", len(sealed), err, tt.want)
			}
		})
	}
	// Just under the limit is fine, and opens.
	near := []File{{Path: "big", Content: bytes.Repeat([]byte("0123456789abcdef"), (MaxPayload-countSize-fileFixed-3)/16)}}
	got, err := Open(p256, "n1", seal(t, p256, "n1", near))
	if err != nil {
		t.Fatalf("Open near the limit: %v", err)
	}
	diffFiles(t, near, got)
}

func TestPayloadIsCanonical(t *testing.T) {
	a, err := encode(sampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	b, err := encode(sortedSample())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("the same files in another order encode differently")
	}
	// The caller's slice is not reordered.
	files := sampleFiles()
	if _, err := encode(files); err != nil {
		t.Fatal(err)
	}
	diffFiles(t, sampleFiles(), files)
}

// rawFile encodes one file of a payload without any checks.
func rawFile(path string, mode uint16, owner, group string, content []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(path)))
	b = append(b, path...)
	b = binary.BigEndian.AppendUint16(b, mode)
	b = append(b, byte(len(owner)))
	b = append(b, owner...)
	b = append(b, byte(len(group)))
	b = append(b, group...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}

func payload(count uint32, files ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, count)
	for _, f := range files {
		b = append(b, f...)
	}
	return b
}

func mustDeflate(t testing.TB, b []byte) []byte {
	t.Helper()
	out, err := deflate(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOpenHostilePayload seals payloads Seal would never write, as a
// compromised or buggy sealer could, and checks that Open refuses them.
func TestOpenHostilePayload(t *testing.T) {
	priv := newKey(t, hpke.DHKEM(ecdh.P256()))
	good := rawFile("etc/a", 0o644, "", "", []byte("x"))
	bomb := make([]byte, MaxPayload+1024)
	copy(bomb, payload(1, rawFile("big", 0o644, "", "", nil)))
	tests := []struct {
		name       string
		compressed []byte
		want       error
	}{
		{"good", mustDeflate(t, payload(1, good)), nil},
		{"not DEFLATE", []byte("definitely not deflate"), ErrFormat},
		{"empty plaintext", nil, ErrFormat},
		{"data after the DEFLATE stream", append(mustDeflate(t, payload(1, good)), 0), ErrFormat},
		{"decompression bomb", mustDeflate(t, bomb), ErrTooLarge},
		{"empty payload", mustDeflate(t, nil), ErrFormat},
		{"count larger than the files", mustDeflate(t, payload(2, good)), ErrFormat},
		{"huge count", mustDeflate(t, payload(1<<32-1, good)), ErrTooLarge},
		{"count over the limit", mustDeflate(t, payload(MaxFiles+1, good)), ErrTooLarge},
		{"bytes after the last file", mustDeflate(t, append(payload(1, good), 0)), ErrFormat},
		{"content longer than the payload", mustDeflate(t, payload(1, rawFile("a", 0o644, "", "", nil)[:7], binary.BigEndian.AppendUint32(nil, 1<<32-1))), ErrFormat},
		{"unsorted", mustDeflate(t, payload(2, rawFile("b", 0o644, "", "", nil), rawFile("a", 0o644, "", "", nil))), ErrFormat},
		{"duplicate", mustDeflate(t, payload(2, good, good)), ErrFormat},
		{"escaping path", mustDeflate(t, payload(1, rawFile("../etc/shadow", 0o644, "", "", nil))), ErrInvalidFile},
		{"absolute path", mustDeflate(t, payload(1, rawFile("/etc/shadow", 0o644, "", "", nil))), ErrInvalidFile},
		{"NUL in path", mustDeflate(t, payload(1, rawFile("etc/a\x00b", 0o644, "", "", nil))), ErrInvalidFile},
		{"file type bits in mode", mustDeflate(t, payload(1, rawFile("etc/a", 0o120777, "", "", nil))), ErrInvalidFile},
		{"bad owner", mustDeflate(t, payload(1, rawFile("etc/a", 0o644, "root;rm", "", nil))), ErrInvalidFile},
		{"file and directory", mustDeflate(t, payload(2, rawFile("etc", 0o644, "", "", nil), rawFile("etc/a", 0o644, "", "", nil))), ErrInvalidFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, err := Open(priv, "n1", sealPlaintext(t, priv, "n1", tt.compressed))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				diffFiles(t, []File{{Path: "etc/a", Mode: 0o644, Content: []byte("x")}}, files)
				return
			}
			if !errors.Is(err, tt.want) || files != nil {
				t.Fatalf("Open = %v, %v; want %v", files, err, tt.want)
			}
		})
	}
}

func TestModeBits(t *testing.T) {
	for u := range uint16(0o10000) {
		m, ok := fileMode(u)
		if !ok || m&^allowedModes != 0 || unixMode(m) != u {
			t.Fatalf("mode %#o: fileMode = %v, %v; back = %#o", u, m, ok, unixMode(m))
		}
	}
	if _, ok := fileMode(0o10000); ok {
		t.Error("fileMode accepted a bit above 0o7777")
	}
}
