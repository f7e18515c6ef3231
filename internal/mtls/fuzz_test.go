package mtls

import (
	"encoding/hex"
	"strings"
	"testing"
)

// FuzzParseCAHash checks the --ca-hash reader against what CAHash writes:
// an accepted pin is exactly "sha256:" and the 64 hex digits of what it
// returns (in either case), and reads back to the same bytes.
func FuzzParseCAHash(f *testing.F) {
	for _, s := range []string{
		"sha256:" + strings.Repeat("ab", 32),
		" sha256:" + strings.Repeat("AB", 32) + "\n",
		"sha256:" + strings.Repeat("a", 63),
		"sha256:" + strings.Repeat("zz", 32),
		"SHA256:" + strings.Repeat("00", 32),
		"sha1:00", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sum, err := ParseCAHash(s)
		if err != nil {
			if err != ErrBadCAHash {
				t.Fatalf("ParseCAHash(%q) = %v, want ErrBadCAHash", s, err)
			}
			return
		}
		canonical := "sha256:" + hex.EncodeToString(sum[:])
		if !strings.EqualFold(strings.TrimSpace(s), canonical) || !strings.HasPrefix(strings.TrimSpace(s), "sha256:") {
			t.Fatalf("ParseCAHash(%q) accepted it as %s", s, canonical)
		}
		back, err := ParseCAHash(canonical)
		if err != nil || back != sum {
			t.Fatalf("canonical form %s did not read back: %x, %v", canonical, back, err)
		}
	})
}
