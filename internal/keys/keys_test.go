package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/tpm/tpmtest"
)

var kems = []struct {
	name string
	kem  hpke.KEM
	id   uint16
}{
	{"mlkem768x25519", hpke.MLKEM768X25519(), 0x647a},
	{"dhkem-p256", hpke.DHKEM(ecdh.P256()), 0x0010},
}

func seedOf(b byte) []byte { return bytes.Repeat([]byte{b}, MinSeedSize) }

func spkiHash(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func mustSeed(t *testing.T, seed []byte, kem hpke.KEM) Source {
	t.Helper()
	s, err := NewSeed(seed, kem)
	if err != nil {
		t.Fatalf("NewSeed: %v", err)
	}
	return s
}

func TestSeedDeterministic(t *testing.T) {
	for _, k := range kems {
		t.Run(k.name, func(t *testing.T) {
			a := mustSeed(t, seedOf(7), k.kem)
			b := mustSeed(t, seedOf(7), k.kem)
			if !a.Identity().(*ecdsa.PrivateKey).Equal(b.Identity()) {
				t.Error("same seed gave different identity keys")
			}
			_, pa := BundlePublic(a.BundleKey())
			id, pb := BundlePublic(b.BundleKey())
			if !bytes.Equal(pa, pb) {
				t.Error("same seed gave different bundle keys")
			}
			if id != k.id {
				t.Errorf("KEM ID = 0x%04x, want 0x%04x", id, k.id)
			}
			if c := a.Identity().Public().(*ecdsa.PublicKey).Curve; c != elliptic.P256() {
				t.Errorf("identity curve = %v, want P-256", c.Params().Name)
			}
		})
	}
}

// TestSeedVector pins the derivation: if it fails, every seed-based node in
// every fleet would come back with new keys after an upgrade.
func TestSeedVector(t *testing.T) {
	s := mustSeed(t, []byte("berth test vector seed, 32 bytes!"), DefaultKEM())
	if got, want := spkiHash(t, s.Identity().Public()), identityVector; got != want {
		t.Errorf("identity SPKI sha256 = %s, want %s", got, want)
	}
	_, pub := BundlePublic(s.BundleKey())
	sum := sha256.Sum256(pub)
	if got, want := hex.EncodeToString(sum[:]), bundleVector; got != want {
		t.Errorf("bundle public key sha256 = %s, want %s", got, want)
	}
}

func TestSeedsDiffer(t *testing.T) {
	tests := []struct {
		name string
		a, b []byte
		ka   hpke.KEM
		kb   hpke.KEM
	}{
		{"different seeds", seedOf(1), seedOf(2), DefaultKEM(), DefaultKEM()},
		{"one bit", append(seedOf(1), 0), append(seedOf(1), 1), DefaultKEM(), DefaultKEM()},
		{"different KEMs", seedOf(1), seedOf(1), kems[0].kem, kems[1].kem},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustSeed(t, tt.a, tt.ka)
			b := mustSeed(t, tt.b, tt.kb)
			_, pa := BundlePublic(a.BundleKey())
			_, pb := BundlePublic(b.BundleKey())
			if bytes.Equal(pa, pb) {
				t.Error("bundle keys are equal")
			}
			sameID := a.Identity().(*ecdsa.PrivateKey).Equal(b.Identity())
			if wantSame := bytes.Equal(tt.a, tt.b); sameID != wantSame {
				t.Errorf("identity keys equal = %v, want %v", sameID, wantSame)
			}
		})
	}
}

func TestIdentityAndBundleKeysIndependent(t *testing.T) {
	// The two keys come from distinct HKDF labels: the DHKEM(P-256) bundle
	// scalar must not be the identity scalar.
	s := mustSeed(t, seedOf(3), hpke.DHKEM(ecdh.P256()))
	raw, err := s.BundleKey().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	idRaw, err := s.Identity().(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(raw, idRaw) {
		t.Error("bundle key equals identity key")
	}
}

func TestSeedTooShort(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"empty", 0, true},
		{"31 bytes", 31, true},
		{"32 bytes", 32, false},
		{"4 KiB", 4096, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSeed(make([]byte, tt.size), nil); (err != nil) != tt.wantErr {
				t.Errorf("NewSeed err = %v, wantErr %v", err, tt.wantErr)
			}
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(path, bytes.Repeat([]byte{9}, tt.size), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(t.Context(), Config{Kind: KindSeed, SeedFile: path})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Open err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "need at least 32") {
				t.Errorf("error %q does not say how long a seed must be", err)
			}
		})
	}
}

func TestHPKERoundTrip(t *testing.T) {
	for _, k := range kems {
		t.Run(k.name, func(t *testing.T) {
			priv := mustSeed(t, seedOf(5), k.kem).BundleKey()
			id, raw := BundlePublic(priv)
			// The server side only has the KEM ID and the public bytes.
			kem, err := hpke.NewKEM(id)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := kem.NewPublicKey(raw)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("bundle: /etc/hostname 0644 node-1")
			info := []byte("berth bundle v1")
			ct, err := hpke.Seal(pub, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info, msg)
			if err != nil {
				t.Fatal(err)
			}
			// Reopen from a fresh derivation, as after a reboot.
			again := mustSeed(t, seedOf(5), k.kem).BundleKey()
			got, err := hpke.Open(again, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info, ct)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, msg) {
				t.Errorf("Open = %q, want %q", got, msg)
			}
			other := mustSeed(t, seedOf(6), k.kem).BundleKey()
			if _, err := hpke.Open(other, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info, ct); err == nil {
				t.Error("another node's key opened the bundle")
			}
		})
	}
}

func TestSiteSeed(t *testing.T) {
	secret := seedOf(0x42)
	base, err := SiteSeed(secret, "4c4c4544-0043-3310-8052-b4c04f4e4b32")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		secret   []byte
		uuid     string
		wantSame bool
		wantErr  string
	}{
		{"same", secret, "4c4c4544-0043-3310-8052-b4c04f4e4b32", true, ""},
		{"case and space", secret, " 4C4C4544-0043-3310-8052-B4C04F4E4B32\n", true, ""},
		{"other machine", secret, "4c4c4544-0043-3310-8052-b4c04f4e4b33", false, ""},
		{"other site", seedOf(0x43), "4c4c4544-0043-3310-8052-b4c04f4e4b32", false, ""},
		{"short secret", secret[:16], "4c4c4544-0043-3310-8052-b4c04f4e4b32", false, "need at least 32"},
		{"empty uuid", secret, "", false, "empty"},
		{"zero uuid", secret, "00000000-0000-0000-0000-000000000000", false, "placeholder"},
		{"ff uuid", secret, "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", false, "placeholder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SiteSeed(tt.secret, tt.uuid)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if same := bytes.Equal(got, base); same != tt.wantSame {
				t.Errorf("same seed = %v, want %v", same, tt.wantSame)
			}
		})
	}
}

func TestOpenSiteSecret(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "site.secret")
	uuidFile := filepath.Join(dir, "product_uuid")
	if err := os.WriteFile(secret, seedOf(0x11), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(uuidFile, []byte("12345678-1234-1234-1234-123456789ABC\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	fromFile, err := Open(t.Context(), Config{Kind: KindSeed, SiteSecretFile: secret, HardwareUUIDFile: uuidFile})
	if err != nil {
		t.Fatal(err)
	}
	fromFlag, err := Open(t.Context(), Config{Kind: KindSeed, SiteSecretFile: secret, HardwareUUID: "12345678-1234-1234-1234-123456789abc"})
	if err != nil {
		t.Fatal(err)
	}
	if !fromFile.Identity().(*ecdsa.PrivateKey).Equal(fromFlag.Identity()) {
		t.Error("UUID from file and from flag gave different keys")
	}
	if _, err := Open(t.Context(), Config{Kind: KindSeed, SiteSecretFile: secret, SeedFile: secret}); err == nil {
		t.Error("Open accepted both a seed file and a site secret")
	}
	if _, err := Open(t.Context(), Config{Kind: KindSeed}); err == nil || !strings.Contains(err.Error(), "--seed-file") {
		t.Errorf("Open with no seed: err = %v, want one naming --seed-file", err)
	}
}

func TestFileSource(t *testing.T) {
	for _, k := range kems {
		t.Run(k.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			first, err := Open(t.Context(), Config{Kind: KindFile, KeyDir: dir, KEM: k.kem})
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{IdentityKeyFile, BundleKeyFile} {
				st, err := os.Stat(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if perm := st.Mode().Perm(); perm != 0o600 {
					t.Errorf("%s mode = %04o, want 0600", name, perm)
				}
			}
			again, err := NewFile(dir, k.kem)
			if err != nil {
				t.Fatal(err)
			}
			if !first.Identity().(*ecdsa.PrivateKey).Equal(again.Identity()) {
				t.Error("identity key changed between opens")
			}
			_, p1 := BundlePublic(first.BundleKey())
			_, p2 := BundlePublic(again.BundleKey())
			if !bytes.Equal(p1, p2) {
				t.Error("bundle key changed between opens")
			}
			other := kems[0].kem
			if k.kem.ID() == other.ID() {
				other = kems[1].kem
			}
			if _, err := NewFile(dir, other); err == nil || !strings.Contains(err.Error(), "--bundle-kem") {
				t.Errorf("other KEM: err = %v, want a KEM mismatch", err)
			}
		})
	}
}

func TestFileSourceRefusesOpenPerms(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewFile(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, IdentityKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFile(dir, nil); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("err = %v, want a permissions error", err)
	}
}

// TestOpenTPM: --identity tpm opens the TPM it names, and the same TPM gives
// the same keys every time; a TPM that is not there fails with its address.
func TestOpenTPM(t *testing.T) {
	sim := tpmtest.Start(t)
	first, err := Open(t.Context(), Config{Kind: KindTPM, TPMDevice: sim.Device()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	idA, bundleA := spkiHash(t, first.Identity().Public()), first.BundleKey().PublicKey().Bytes()
	if _, err := IdentityPEM(first.Identity()); !errors.Is(err, ErrNotExportable) {
		t.Errorf("a TPM identity key exported: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(t.Context(), Config{Kind: KindTPM, TPMDevice: sim.Device()})
	if err != nil {
		t.Fatalf("Open again: %v", err)
	}
	defer again.Close()
	if spkiHash(t, again.Identity().Public()) != idA || !bytes.Equal(again.BundleKey().PublicKey().Bytes(), bundleA) {
		t.Error("the same TPM gave other keys")
	}

	_, err = Open(t.Context(), Config{Kind: KindTPM, TPMDevice: "mssim://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Open(unreachable TPM) = %v, want an error naming it", err)
	}
}

func TestParse(t *testing.T) {
	kindTests := []struct {
		in      string
		want    Kind
		wantErr bool
	}{
		{"seed", KindSeed, false},
		{" TPM ", KindTPM, false},
		{"file", KindFile, false},
		{"disk", "", true},
	}
	for _, tt := range kindTests {
		got, err := ParseKind(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseKind(%q) = %q, %v", tt.in, got, err)
		}
	}
	kemTests := []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"", 0x647a, false},
		{"mlkem768x25519", 0x647a, false},
		{"X-Wing", 0x647a, false},
		{"dhkem-p256", 0x0010, false},
		{"p256", 0x0010, false},
		{"rsa", 0, true},
	}
	for _, tt := range kemTests {
		got, err := ParseKEM(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got.ID() != tt.want) {
			t.Errorf("ParseKEM(%q) = %v, %v; want 0x%04x", tt.in, got, err, tt.want)
		}
	}
}

func TestIdentityPEM(t *testing.T) {
	s := mustSeed(t, seedOf(8), nil)
	b, err := IdentityPEM(s.Identity())
	if err != nil {
		t.Fatal(err)
	}
	k, err := parseIdentityPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(s.Identity()) {
		t.Error("PEM round trip changed the key")
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := IdentityPEM(hardwareSigner{edKey}); !errors.Is(err, ErrNotExportable) {
		t.Errorf("err = %v, want ErrNotExportable", err)
	}
}

// hardwareSigner stands in for a key that cannot be exported.
type hardwareSigner struct{ crypto.Signer }

// Known-answer values of TestSeedVector.
const (
	identityVector = "95d413f96e858860cce313856d526b38e3533645cdc46750ba9e2d1afc376936"
	bundleVector   = "4cd6403807289c99f200574836d001c1a312fa6dd8611414a71f7a3d955e6fe3"
)
