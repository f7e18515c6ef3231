package loadgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileSelfFails: a --profile-dir the load generator cannot write
// into (here a file) costs the run its profile, said in a note, and
// nothing else; the stop function it gets back is safe to call.
func TestProfileSelfFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: Config{Scenario: ScenarioStorm, ProfileDir: file}, res: &Result{}}
	stop := r.profileSelf()
	stop()
	if len(r.res.Notes) != 1 || !strings.Contains(r.res.Notes[0], "no load generator profile") {
		t.Errorf("notes = %q, want one saying the profile was not written", r.res.Notes)
	}
}
