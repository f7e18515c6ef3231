package tests

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestRevokeEndsEverything: revoking a node denies it on every service
// within seconds. Its running agent loses its heartbeat stream and exits
// with the "denied" status; its next boot is refused by registration.
func TestRevokeEndsEverything(t *testing.T) {
	t.Parallel()
	d := startServe(t)
	m := newMachine(t, "hv-41", "4c4c4544-0042-3510-8051-b2c04f4e4d41")
	tok := createToken(t, d, "--auto-approve")
	running := start(t, d.env, "berth-agent", "--identity", "seed", "--seed-file", m.seedFile,
		"--hardware-uuid", m.uuid, "--hostname", m.hostname, "--cert-dir", filepath.Join(t.TempDir(), "run"),
		"--root", t.TempDir(), "--cmdline", os.DevNull, "--wait", "60s", "--token", tok)
	var id string
	waitFor(t, "the node to be healthy", 30*time.Second, func() bool {
		out, err := run(t, d.env, "berthctl", "nodes", "list", "-o", "json")
		var nodes []nodeJSON
		if err != nil || mustUnmarshal(out, &nodes) != nil || len(nodes) != 1 {
			return false
		}
		id = nodes[0].ID
		return nodes[0].Health == "healthy"
	})

	revoked := time.Now()
	mustRun(t, d.env, "berthctl", "nodes", "revoke", id, "--reason", "stolen")
	// The revocation cache polls every 2 s and the heartbeat service sweeps
	// connected nodes every 5 s, so this takes seconds; how many is a speed
	// figure (the MEASURE line), the deadline only stops a hung test.
	select {
	case <-running.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the running agent did not stop within 2 minutes of the revocation")
	}
	t.Logf("MEASURE revoked node's agent stopped %v after berthctl nodes revoke", time.Since(revoked).Round(10*time.Millisecond))
	// proc waits for the process itself; its state is set once done closes.
	if code := running.cmd.ProcessState.ExitCode(); code != 4 {
		t.Fatalf("running agent exit status %d, want 4 (denied)\n%s", code, running.output())
	}

	_, _, err := m.boot(t, d, "")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 4 {
		t.Fatalf("boot of a revoked node: %v, want exit status 4", err)
	}
	if n := getNode(t, d, id); n.Status != "revoked" {
		t.Fatalf("node status %q, want revoked", n.Status)
	}
}

func mustUnmarshal(out string, v any) error { return json.Unmarshal([]byte(out), v) }
