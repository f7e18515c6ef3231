package bundle

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

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

// fixture is everything a test needs to seal and open bundles for one
// node: its bundle key, its identity key, and the deployment's PKI with an
// admin signer.
type fixture struct {
	priv    hpke.PrivateKey
	nodeKey *ecdsa.PrivateKey
	pki     *testPKI
	admin   *Signer
}

func newFixture(t testing.TB, kem hpke.KEM) *fixture {
	t.Helper()
	p := newTestPKI(t)
	return &fixture{priv: newKey(t, kem), nodeKey: newKeyP256(t), pki: p, admin: p.admin(t, "ops")}
}

// verifier is what node nodeID, served version v, checks bundles against.
func (f *fixture) verifier(nodeID string, v int64) Verifier {
	return Verifier{TrustDomain: testTD, NodeID: nodeID, Version: v, Roots: f.pki.pool, NodeKey: f.nodeKey.Public()}
}

func (f *fixture) target(nodeID string, v int64) Target {
	return Target{NodeID: nodeID, KEM: f.priv.KEM().ID(), Public: f.priv.PublicKey().Bytes(), Version: v}
}

func (f *fixture) seal(t testing.TB, nodeID string, v int64, c Contents, s *Signer) []byte {
	t.Helper()
	sealed, err := Seal(f.target(nodeID, v), c, s)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return sealed
}

func (f *fixture) open(nodeID string, v int64, sealed []byte) (*Opened, error) {
	return Open(f.priv, sealed, f.verifier(nodeID, v))
}

func filesOnly(files []File) Contents { return Contents{Files: files} }

// sealPlaintext seals arbitrary bytes as a bundle's compressed payload and
// signs it, for tests of what Open does with a payload Seal would never
// write.
func (f *fixture) sealPlaintext(t testing.TB, nodeID string, plaintext []byte) []byte {
	t.Helper()
	h := Header{Version: Version, KEM: f.priv.KEM().ID(), KDF: kdfHKDFSHA256, AEAD: aeadAES256GCM,
		BodyLen: uint32(encSizes[f.priv.KEM().ID()] + len(plaintext) + aeadTagSize)}
	ct, err := hpke.Seal(f.priv.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), info(h, nodeID), plaintext)
	if err != nil {
		t.Fatal(err)
	}
	sealed := append(h.bytes(), ct...)
	block, err := f.admin.sign(nodeID, 1, sealed)
	if err != nil {
		t.Fatal(err)
	}
	return append(sealed, block...)
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

func sampleHooks() []Hook {
	return []Hook{
		{Command: []string{"/usr/bin/systemctl", "reload-or-restart", "vdsmd"}, Paths: []string{"etc/berth/secret.conf", "etc/hostname"}, Timeout: 30 * time.Second},
		{Command: []string{"/usr/local/bin/hook"}, Paths: []string{"usr/local/bin/hook"}, Timeout: time.Millisecond},
	}
}

func sampleContents() Contents { return Contents{Files: sampleFiles(), Hooks: sampleHooks()} }

func TestRoundTrip(t *testing.T) {
	for _, k := range kems {
		t.Run(k.name, func(t *testing.T) {
			f := newFixture(t, k.kem)
			for _, signer := range []struct {
				name string
				s    *Signer
				want string
			}{
				{"admin", f.admin, "spiffe://" + testTD + "/admin/ops"},
				{"node", nodeSigner(t, f.nodeKey), "node"},
			} {
				t.Run(signer.name, func(t *testing.T) {
					sealed := f.seal(t, "node-a", 7, sampleContents(), signer.s)
					p, err := Parse(sealed)
					if err != nil {
						t.Fatalf("Parse: %v", err)
					}
					wantH := Header{Version: 2, KEM: k.kem.ID(), KDF: 1, AEAD: 2, BodyLen: uint32(len(p.Sealed) - HeaderSize)}
					if p.Header != wantH {
						t.Errorf("header = %+v, want %+v", p.Header, wantH)
					}
					if got := p.SignedBy(); got != signer.want {
						t.Errorf("SignedBy() = %q, want %q", got, signer.want)
					}
					got, err := f.open("node-a", 7, sealed)
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					diffFiles(t, sortedSample(), got.Files)
					if d := cmp.Diff(sampleHooks(), got.Hooks); d != "" {
						t.Errorf("hooks (-want +got):\n%s", d)
					}
					if got.SignedBy.String() != signer.want || got.Version != 7 {
						t.Errorf("signed by %v for version %d, want %s for 7", got.SignedBy, got.Version, signer.want)
					}
					for _, file := range sampleFiles() {
						if len(file.Content) > 4 && bytes.Contains(sealed, file.Content) {
							t.Errorf("sealed bundle contains the content of %s in clear", file.Path)
						}
					}
					again := f.seal(t, "node-a", 7, sampleContents(), signer.s)
					if bytes.Equal(sealed, again) || Digest(sealed) == Digest(again) {
						t.Error("sealing twice gave the same bytes; HPKE sealing must be randomised")
					}
				})
			}
		})
	}
}

func TestRoundTripEmpty(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	got, err := f.open("n1", 1, f.seal(t, "n1", 1, Contents{}, f.admin))
	if err != nil || len(got.Files) != 0 || len(got.Hooks) != 0 {
		t.Fatalf("Open = %v, %v; want no files", got, err)
	}
}

func TestDigest(t *testing.T) {
	// SHA-256 of "abc".
	if got, want := Digest([]byte("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("Digest = %s, want %s", got, want)
	}
}

// TestEncSizes checks the table Parse relies on against crypto/hpke.
func TestEncSizes(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
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
		g := *f
		g.priv = priv
		if _, err := g.open("n1", 1, g.seal(t, "n1", 1, sampleContents(), f.admin)); err != nil {
			t.Errorf("KEM 0x%04x: %v", id, err)
		}
	}
}

func TestOpenWrongKeyOrNode(t *testing.T) {
	for _, k := range kems {
		t.Run(k.name, func(t *testing.T) {
			f := newFixture(t, k.kem)
			b, other := newKey(t, k.kem), newKey(t, kems[0].kem)
			if k.kem.ID() == other.KEM().ID() {
				other = newKey(t, kems[1].kem)
			}
			sealed := f.seal(t, "node-a", 1, filesOnly(sampleFiles()), f.admin)
			for _, tt := range []struct {
				name string
				key  hpke.PrivateKey
			}{
				{"another node's key", b},
				{"a key of another KEM", other},
			} {
				t.Run(tt.name, func(t *testing.T) {
					got, err := Open(tt.key, sealed, f.verifier("node-a", 1))
					if !errors.Is(err, ErrDecrypt) || got != nil {
						t.Errorf("Open = %v, %v; want ErrDecrypt", got, err)
					}
				})
			}
			// Opened as another node, the signature says so before
			// decryption is even tried.
			for _, node := range []string{"node-b", "node-a2", "node-"} {
				got, err := f.open(node, 1, sealed)
				if !errors.Is(err, ErrWrongTarget) || got != nil {
					t.Errorf("opened as %s: Open = %v, %v; want ErrWrongTarget", node, got, err)
				}
			}
		})
	}
}

// TestOpenRefusesUnsigned checks that a format version 1 bundle, which
// stores hold from before signing, is recognised and refused as unsigned.
func TestOpenRefusesUnsigned(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	v1 := sealV1(t, f.priv, "n1", sampleFiles())
	p, err := Parse(v1)
	if err != nil {
		t.Fatalf("Parse v1: %v", err)
	}
	if p.Header.Version != VersionUnsigned || p.Signature != nil || p.SignedBy() != "unsigned" {
		t.Errorf("v1 parsed as %+v, signed by %q", p.Header, p.SignedBy())
	}
	got, err := f.open("n1", 1, v1)
	if !errors.Is(err, ErrUnsigned) || got != nil {
		t.Fatalf("Open v1 = %v, %v; want ErrUnsigned", got, err)
	}
	if !strings.Contains(err.Error(), "re-put") {
		t.Errorf("error %q does not tell the operator what to do", err)
	}
}

// sealV1 writes a bundle of format version 1 as berth wrote them before
// bundles were signed: header, then HPKE with the header and node ID as
// info, and a payload without a hook section.
func sealV1(t testing.TB, priv hpke.PrivateKey, nodeID string, files []File) []byte {
	t.Helper()
	h := Header{Version: VersionUnsigned, KEM: priv.KEM().ID(), KDF: kdfHKDFSHA256, AEAD: aeadAES256GCM}
	p, err := encode(filesOnly(files))
	if err != nil {
		t.Fatal(err)
	}
	p = p[:len(p)-hookCountSize]
	ct, err := hpke.Seal(priv.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), append(h.bytes(), nodeID...), mustDeflate(t, p))
	if err != nil {
		t.Fatal(err)
	}
	return append(h.bytes(), ct...)
}

// TestTamper flips bits all over a sealed bundle, and truncates it at every
// length: every variant must be refused.
func TestTamper(t *testing.T) {
	for _, k := range kems {
		t.Run(k.name, func(t *testing.T) {
			f := newFixture(t, k.kem)
			for _, s := range []*Signer{f.admin, nodeSigner(t, f.nodeKey)} {
				sealed := f.seal(t, "node-a", 3, Contents{Files: sampleFiles()[:2]}, s)
				for i := range sealed {
					for _, bit := range []byte{0x01, 0x80} {
						bad := bytes.Clone(sealed)
						bad[i] ^= bit
						if got, err := f.open("node-a", 3, bad); err == nil || got != nil {
							t.Fatalf("byte %d ^ %#x: Open = %v, %v; want an error", i, bit, got, err)
						}
					}
				}
				for n := range len(sealed) {
					if got, err := f.open("node-a", 3, sealed[:n]); err == nil || got != nil {
						t.Fatalf("truncated to %d bytes: Open succeeded", n)
					}
				}
				if _, err := f.open("node-a", 3, append(bytes.Clone(sealed), 0)); !errors.Is(err, ErrFormat) {
					t.Errorf("one byte appended: err = %v, want ErrFormat", err)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	good := f.seal(t, "n1", 1, sampleContents(), f.admin)
	p, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	end := len(p.Sealed)
	edit := func(e func(b []byte) []byte) []byte { return e(bytes.Clone(good)) }
	tests := []struct {
		name   string
		sealed []byte
	}{
		{"empty", nil},
		{"garbage", []byte("this is not a bundle at all, just some text")},
		{"plain gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"magic only", []byte(Magic)},
		{"wrong magic", edit(func(b []byte) []byte { b[0] = 'b'; return b })},
		{"version 0", edit(func(b []byte) []byte { b[8] = 0; return b })},
		{"version 3", edit(func(b []byte) []byte { b[8] = 3; return b })},
		{"unknown KEM", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[9:], 0x0021); return b })},
		{"other KDF", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[11:], 0x0002); return b })},
		{"other AEAD", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[13:], 0x0003); return b })},
		{"v1 header only", good[:headerV1Size]},
		{"header cut in the length", good[:HeaderSize-1]},
		{"header only", good[:HeaderSize]},
		{"body shorter than enc and tag", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[15:], 65+aeadTagSize-1); return b })},
		{"body longer than the bundle", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[15:], uint32(len(b))); return b })},
		{"body length 2^32-1", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[15:], 1<<32-1); return b })},
		{"no signature block", good[:end]},
		{"signature block cut", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := Parse(tt.sealed); !errors.Is(err, ErrFormat) || p != nil {
				t.Errorf("Parse = %v, %v; want ErrFormat", p, err)
			}
			if _, err := f.open("n1", 1, tt.sealed); !errors.Is(err, ErrFormat) {
				t.Errorf("Open: err = %v, want ErrFormat", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
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
			_, err = Seal(f.target("n1", 1), filesOnly(tt.files), f.admin)
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Seal: err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSealErrors(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	p256 := f.priv.PublicKey().Bytes()
	tests := []struct {
		name   string
		target Target
		files  []File
		signer *Signer
		want   error
	}{
		{"unknown KEM", Target{"n1", 0x0021, p256, 1}, nil, f.admin, ErrKey},
		{"key of another KEM", Target{"n1", 0x647a, p256, 1}, nil, f.admin, ErrKey},
		{"malformed key", Target{"n1", 0x0010, []byte("not a key"), 1}, nil, f.admin, ErrKey},
		{"no node ID", Target{"", 0x0010, p256, 1}, nil, f.admin, nil},
		{"node ID too long", Target{strings.Repeat("n", 254), 0x0010, p256, 1}, nil, f.admin, nil},
		{"version 0", Target{"n1", 0x0010, p256, 0}, nil, f.admin, ErrWrongVersion},
		{"negative version", Target{"n1", 0x0010, p256, -1}, nil, f.admin, ErrWrongVersion},
		{"no signer", Target{"n1", 0x0010, p256, 1}, nil, nil, ErrSigner},
		{"too large", Target{"n1", 0x0010, p256, 1}, []File{{Path: "big", Content: make([]byte, MaxPayload)}}, f.admin, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := Seal(tt.target, filesOnly(tt.files), tt.signer)
			if err == nil || sealed != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Seal = %d bytes, %v; want error %v", len(sealed), err, tt.want)
			}
		})
	}
	// Just under the limit is fine, and opens.
	near := []File{{Path: "big", Content: bytes.Repeat([]byte("0123456789abcdef"), (MaxPayload-countSize-hookCountSize-fileFixed-3)/16)}}
	got, err := f.open("n1", 1, f.seal(t, "n1", 1, filesOnly(near), f.admin))
	if err != nil {
		t.Fatalf("Open near the limit: %v", err)
	}
	diffFiles(t, near, got.Files)
}

func TestPayloadIsCanonical(t *testing.T) {
	shuffled := sampleHooks()
	slices.Reverse(shuffled[0].Paths)
	a, err := encode(Contents{Files: sampleFiles(), Hooks: shuffled})
	if err != nil {
		t.Fatal(err)
	}
	b, err := encode(Contents{Files: sortedSample(), Hooks: sampleHooks()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("the same files in another order encode differently")
	}
	// The caller's slices are not reordered.
	c := Contents{Files: sampleFiles(), Hooks: shuffled}
	if _, err := encode(c); err != nil {
		t.Fatal(err)
	}
	diffFiles(t, sampleFiles(), c.Files)
	if c.Hooks[0].Paths[0] != "etc/hostname" {
		t.Error("encode sorted the caller's hook paths")
	}
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

// payload encodes a payload of files without hooks.
func payload(count uint32, files ...[]byte) []byte {
	return append(filesPart(count, files...), 0, 0)
}

func filesPart(count uint32, files ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, count)
	for _, f := range files {
		b = append(b, f...)
	}
	return b
}

// rawHook encodes one hook of a payload without any checks.
func rawHook(argv []string, paths []string, timeoutMS uint32) []byte {
	b := []byte{byte(len(argv))}
	for _, a := range argv {
		b = binary.BigEndian.AppendUint16(b, uint16(len(a)))
		b = append(b, a...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(paths)))
	for _, p := range paths {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return binary.BigEndian.AppendUint32(b, timeoutMS)
}

// withHooks encodes a payload of one file, etc/a, and hooks.
func withHooks(count uint16, hooks ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(filesPart(1, rawFile("etc/a", 0o644, "", "", []byte("x"))), count)
	for _, h := range hooks {
		b = append(b, h...)
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
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	good := rawFile("etc/a", 0o644, "", "", []byte("x"))
	hook := func(argv ...string) []byte { return rawHook(argv, []string{"etc/a"}, 1000) }
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
		{"bytes after the last hook", mustDeflate(t, append(payload(1, good), 0)), ErrFormat},
		{"no hook section (format version 1)", mustDeflate(t, filesPart(1, good)), ErrFormat},
		{"hook section cut", mustDeflate(t, append(filesPart(1, good), 0)), ErrFormat},
		{"good hook", mustDeflate(t, withHooks(1, hook("/bin/true"))), nil},
		{"hook count larger than the hooks", mustDeflate(t, withHooks(2, hook("/bin/true"))), ErrFormat},
		{"hook count over the limit", mustDeflate(t, withHooks(MaxHooks+1, hook("/bin/true"))), ErrTooLarge},
		{"hook without arguments", mustDeflate(t, withHooks(1, rawHook(nil, []string{"etc/a"}, 1000))), ErrInvalidHook},
		{"hook with a relative program", mustDeflate(t, withHooks(1, hook("true"))), ErrInvalidHook},
		{"hook with an unclean program", mustDeflate(t, withHooks(1, hook("/bin/../bin/true"))), ErrInvalidHook},
		{"hook with a NUL argument", mustDeflate(t, withHooks(1, hook("/bin/echo", "a\x00b"))), ErrInvalidHook},
		{"hook with bad UTF-8", mustDeflate(t, withHooks(1, hook("/bin/echo", "\xff"))), ErrInvalidHook},
		{"hook covering no file", mustDeflate(t, withHooks(1, rawHook([]string{"/bin/true"}, nil, 1000))), ErrInvalidHook},
		{"hook covering a path not in the bundle", mustDeflate(t, withHooks(1, rawHook([]string{"/bin/true"}, []string{"etc/b"}, 1000))), ErrInvalidHook},
		{"hook paths unsorted", mustDeflate(t, append(filesPart(2, rawFile("a", 0o644, "", "", nil), rawFile("b", 0o644, "", "", nil)), append([]byte{0, 1}, rawHook([]string{"/bin/true"}, []string{"b", "a"}, 1000)...)...)), ErrFormat},
		{"hook paths repeated", mustDeflate(t, withHooks(1, rawHook([]string{"/bin/true"}, []string{"etc/a", "etc/a"}, 1000))), ErrFormat},
		{"hook path count larger than the payload", mustDeflate(t, withHooks(1, rawHook([]string{"/bin/true"}, nil, 1000)[:12], []byte{0xff, 0xff})), ErrFormat},
		{"hook timeout 0", mustDeflate(t, withHooks(1, rawHook([]string{"/bin/true"}, []string{"etc/a"}, 0))), ErrInvalidHook},
		{"hook timeout over an hour", mustDeflate(t, withHooks(1, rawHook([]string{"/bin/true"}, []string{"etc/a"}, 3_600_001))), ErrInvalidHook},
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
			got, err := f.open("n1", 1, f.sealPlaintext(t, "n1", tt.compressed))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				diffFiles(t, []File{{Path: "etc/a", Mode: 0o644, Content: []byte("x")}}, got.Files)
				return
			}
			if !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("Open = %v, %v; want %v", got, err, tt.want)
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
