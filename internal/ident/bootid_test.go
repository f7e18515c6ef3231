package ident_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/ident"
)

// TestBootID: the loop accepts exactly what the rule's regular
// expression does, for every single byte, the length limits and strings
// mixing allowed and refused characters.
func TestBootID(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
	inputs := []string{"", strings.Repeat("a", 64), strings.Repeat("a", 65), "0b6c1a6e-2d4e-4d1b-9a8e-3f1f6b2c9d11",
		"boot.1_x:y-Z", "a b", "a\n", "é", "a\x00", "-", "x/y", "😀", strings.Repeat("9", 63) + "é"}
	for c := range 256 {
		inputs = append(inputs, string([]byte{byte(c)}), "ok"+string([]byte{byte(c)}))
	}
	for _, in := range inputs {
		if got, want := ident.BootID(in), re.MatchString(in); got != want {
			t.Errorf("BootID(%q) = %v, the rule says %v", in, got, want)
		}
	}
}
