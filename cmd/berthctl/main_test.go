package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestRunHelp(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run(t.Context(), []string{"-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "Usage:\n  berthctl <command>") {
		t.Errorf("help is %q", stdout.String())
	}
}

// TestRunReadsEnvironment checks that main wires the process environment.
func TestRunReadsEnvironment(t *testing.T) {
	t.Setenv("BERTH_OUTPUT", "xml")
	var stdout, stderr strings.Builder
	code := run(t.Context(), []string{"nodes", "list"}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), `invalid output format "xml" from BERTH_OUTPUT`) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestCompletionBash: the script berthctl prints is sourced by bash (which
// must be installed) and registers completion for berthctl; asking it, as
// the script does, completes berthctl's commands.
func TestCompletionBash(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run(t.Context(), []string{"completion", "bash"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	script := filepath.Join(t.TempDir(), "berthctl.bash")
	if err := os.WriteFile(script, []byte(stdout.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", "-c", `set -e; source <(cat "$1"); complete -p berthctl`, "bash", script).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "berthctl") {
		t.Fatalf("bash could not source the completion script: %v: %s", err, out)
	}
	var comp strings.Builder
	if code := run(t.Context(), []string{"__complete", "no"}, &comp, &stderr); code != 0 {
		t.Fatalf("__complete: exit %d, stderr %q", code, stderr.String())
	}
	if !strings.HasPrefix(comp.String(), "nodes\t") {
		t.Errorf("completions of \"no\": %q, want nodes first", comp.String())
	}
}

func TestVersionFlag(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run(t.Context(), []string{"--version"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "berthctl ") || !strings.Contains(stdout.String(), runtime.Version()) {
		t.Errorf("--version printed %q", stdout.String())
	}
}
