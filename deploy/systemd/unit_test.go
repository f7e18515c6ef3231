package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitName = "berth-agent.service"

// verify runs systemd-analyze verify on unit installed, with a freshly
// built berth-agent at the path its ExecStart names, in a root of its own
// that borrows the system's units (sysinit.target and the like). It
// returns what systemd-analyze said: it exits 0 on mere warnings, so any
// output is a finding.
func verify(t *testing.T, agent string, unit []byte) string {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed to check the unit (Debian: apt-get install systemd; tools/provision.sh does): %v", err)
	}
	root := t.TempDir()
	for _, d := range []string{"usr/local/bin", "etc/systemd/system", "usr/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	system := "/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(system, "sysinit.target")); err != nil {
		system = "/usr/lib/systemd/system"
	}
	if err := os.Symlink(system, filepath.Join(root, "usr/lib/systemd/system")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(agent, filepath.Join(root, "usr/local/bin/berth-agent")); err != nil {
		b, rerr := os.ReadFile(agent)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if err := os.WriteFile(filepath.Join(root, "usr/local/bin/berth-agent"), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(root, "etc/systemd/system", unitName)
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", "--root="+root, path).CombinedOutput()
	if err != nil && len(out) == 0 {
		t.Fatalf("systemd-analyze verify: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "berth-agent")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/berth-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build berth-agent: %v\n%s", err, out)
	}
	return bin
}

// TestUnitVerifies: the shipped unit passes systemd-analyze verify without
// a word, and is the long-running, notifying, restarting service the
// README describes.
func TestUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile(unitName)
	if err != nil {
		t.Fatal(err)
	}
	agent := buildAgent(t)
	if out := verify(t, agent, unit); out != "" {
		t.Errorf("systemd-analyze verify %s:\n%s", unitName, out)
	}
	settings := map[string]string{}
	for line := range strings.SplitSeq(string(unit), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
	}
	for k, want := range map[string]string{"Type": "notify", "Restart": "on-failure", "NotifyAccess": "main"} {
		if settings[k] != want {
			t.Errorf("%s=%q, want %q", k, settings[k], want)
		}
	}
	if settings["WatchdogSec"] == "" {
		t.Error("no WatchdogSec: the agent's watchdog pings would go unheeded")
	}
	if strings.Contains(settings["ExecStart"], "--once") {
		t.Errorf("ExecStart=%s runs the agent once; the unit is for the long-running agent", settings["ExecStart"])
	}

	// The check can fail: a misspelt setting is reported.
	bad := strings.Replace(string(unit), "\nType=notify\n", "\nType=notfy\n", 1)
	if out := verify(t, agent, []byte(bad)); !strings.Contains(out, "notfy") {
		t.Errorf("a misspelt Type= went unreported: %q", out)
	}
}
