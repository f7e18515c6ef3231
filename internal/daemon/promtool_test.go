package daemon

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkWithPromtool runs Prometheus's own linter, promtool check metrics
// (pinned in tools/go.mod, run with go tool), on a scrape. Its warnings
// (names, units, help, counters' _total) fail the test like its errors.
func checkWithPromtool(t *testing.T, scrape []byte) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "tool", "-modfile="+filepath.Join(root, "tools", "go.mod"), "promtool", "check", "metrics")
	cmd.Dir = root
	cmd.Stdin = bytes.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
