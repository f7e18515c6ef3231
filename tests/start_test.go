package tests

import (
	"strings"
	"testing"
	"time"
)

// TestDevStartLogsNoError: berthd dev starting up and serving a first boot
// logs no ERROR, so that an operator who reads one knows something is
// wrong. Its services come up together, and a call that meets another
// before that one has loaded what it needs (the boot handoff's first call
// before the heartbeat service had the revocation list) must not be logged
// as a failure. The node's health turning healthy from its first boot
// (berth-agent --once opens no stream; the boot handoff records it) shows
// the handoffs made since start were answered, so the start is all in the
// log by then.
func TestDevStartLogsNoError(t *testing.T) {
	d := startDev(t)
	m := newMachine(t, "hv-01.rack1.example", "4c4c4544-0042-3510-8051-b2c04f4e4d01")
	r, _, err := m.boot(t, d, createToken(t, d, "--auto-approve"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first boot to make its node healthy", 30*time.Second, func() bool {
		return getNode(t, d, r.NodeID).Health == "healthy"
	})
	for line := range strings.Lines(d.dev.output()) {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("berthd dev logged an error at start: %s", strings.TrimSpace(line))
		}
	}
}
