package tpmtest

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// recorder is a testing.TB that records failures and skips instead of
// ending the test.
type recorder struct {
	testing.TB
	fatals, skips []string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}
func (r *recorder) Skip(args ...any) { r.skips = append(r.skips, fmt.Sprint(args...)) }
func (r *recorder) Skipf(format string, args ...any) {
	r.skips = append(r.skips, fmt.Sprintf(format, args...))
}

// TestMissingSwtpmFails: without swtpm the TPM tests fail; they never skip.
func TestMissingSwtpmFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	r := &recorder{TB: t}
	Require(r, "swtpm", "swtpm_setup")
	if len(r.fatals) != 2 || len(r.skips) != 0 {
		t.Fatalf("fatals %q, skips %q; want two failures and no skip", r.fatals, r.skips)
	}
}

// TestRestartKeepsAddress: a reboot keeps the TPM where the agent looks
// for it. (That the TPM keeps its keys is internal/tpm's
// TestKeysSurviveReboots.)
func TestRestartKeepsAddress(t *testing.T) {
	s := Start(t)
	dev := s.Device()
	s.Restart(t)
	if s.Device() != dev {
		t.Fatalf("device moved from %s to %s across a restart", dev, s.Device())
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(dev, "mssim://"))
	if err != nil {
		t.Fatalf("swtpm not listening after restart: %v", err)
	}
	c.Close()
}
