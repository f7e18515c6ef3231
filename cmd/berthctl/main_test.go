package main

import (
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
	t.Setenv("BERTH_OUTPUT", "yaml")
	var stdout, stderr strings.Builder
	code := run(t.Context(), []string{"nodes", "list"}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), `invalid output format "yaml" from BERTH_OUTPUT`) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
