package agent

import (
	"maps"
	"strings"
	"testing"
)

// FuzzParseCmdline checks the kernel command line reader against a second
// reading: whatever it makes of a line, writing its parameters back as
// quoted "key=value" words and reading them again gives the same map. Keys
// never hold "=" or quotes, and a line without quotes gives no whitespace
// in keys or values.
func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{
		"BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet",
		`berth.server=a:443 berth.label="rack=r1 row=2" -- berth.server=init`,
		`a="b c"d e= =f "" -- `,
		"a=1 a=2\tb\n",
		`"unterminated quote a=b`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		params := ParseCmdline(line)
		var words []string
		for k, v := range params {
			if strings.ContainsAny(k, `="`) || strings.Contains(v, `"`) {
				t.Fatalf("ParseCmdline(%q) gave key %q value %q", line, k, v)
			}
			if !strings.Contains(line, `"`) && (strings.ContainsAny(k, " \t\r\n") || strings.ContainsAny(v, " \t\r\n")) {
				t.Fatalf("ParseCmdline(%q) kept whitespace in %q=%q", line, k, v)
			}
			words = append(words, `"`+k+"="+v+`"`)
		}
		if again := ParseCmdline(strings.Join(words, " ")); !maps.Equal(again, params) {
			t.Fatalf("ParseCmdline(%q) = %q, but its own words read as %q", line, params, again)
		}
	})
}
