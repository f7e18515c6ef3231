package tests

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil/freeport"
)

// runningAgent is berth-agent without --once: the node's daemon.
type runningAgent struct {
	p                        *proc
	certDir, rootDir, socket string
}

// startAgent boots machine m as a long-running agent, on fresh
// directories, and waits until its local API says it is connected.
func startAgent(t testing.TB, d deployment, m machine, extra ...string) runningAgent {
	t.Helper()
	dir := t.TempDir()
	a := runningAgent{certDir: filepath.Join(dir, "run"), rootDir: filepath.Join(dir, "root"), socket: filepath.Join(dir, "agent.sock")}
	args := append([]string{"--identity", "seed", "--seed-file", m.seedFile, "--hardware-uuid", m.uuid,
		"--hostname", m.hostname, "--cert-dir", a.certDir, "--root", a.rootDir, "--socket", a.socket,
		"--kmsg", "off", "--cmdline", os.DevNull, "--wait", "60s", "--output", "json"}, extra...)
	a.p = start(t, d.env, "berth-agent", args...)
	waitFor(t, "the running agent to connect", 60*time.Second, func() bool {
		return a.status(t).Connection == "connected"
	})
	return a
}

// agentStatus is berth-agent status -o json, the contract.
type agentStatus struct {
	NodeID          string            `json:"node_id"`
	IdentitySource  string            `json:"identity_source"`
	CertSerial      string            `json:"cert_serial"`
	BundleVersion   int64             `json:"bundle_version"`
	BundleAppliedAt string            `json:"bundle_applied_at"`
	Connection      string            `json:"connection"`
	LastHeartbeat   string            `json:"last_heartbeat"`
	Reported        map[string]string `json:"reported"`
	EventsQueued    int               `json:"events_queued"`
}

// status asks the running agent; the zero status while it cannot answer.
func (a runningAgent) status(t testing.TB) agentStatus {
	t.Helper()
	out, err := run(t, nil, "berth-agent", "status", "-o", "json", "--socket", a.socket)
	var s agentStatus
	if err == nil {
		mustJSON(t, out, &s)
	}
	return s
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// TestLiveBundle: a running agent gets each new bundle through its
// heartbeat stream: files written with their modes, a file dropped from
// the bundle removed, a hook run once when a file it covers changed and
// not when none did, a failing hook reported as a node event.
func TestLiveBundle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB, ...string) deployment
	}{
		{"dev_sqlite", startDev},
		{"serve_postgres", startServe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := tc.start(t)
			w := startWatch(t, d)
			m := newMachine(t, "hv-31", "4c4c4544-0042-3510-8051-b2c04f4e4d31")
			first, _, err := m.boot(t, d, createToken(t, d, "--auto-approve"))
			if err != nil {
				t.Fatal(err)
			}
			a := startAgent(t, d, m)
			if st := a.status(t); st.NodeID != first.NodeID || st.IdentitySource != "seed-file" || st.CertSerial == "" {
				t.Fatalf("status = %+v", st)
			}

			src := t.TempDir()
			hookLog := filepath.Join(t.TempDir(), "hook.log")
			write := func(name, content string, mode os.FileMode) string {
				p := filepath.Join(src, name)
				if err := os.WriteFile(p, []byte(content), mode); err != nil {
					t.Fatal(err)
				}
				os.Chmod(p, mode)
				return p
			}
			hooks := func(name string, hs ...map[string]any) string {
				b, _ := json.Marshal(hs)
				return write(name, string(b), 0o644)
			}
			reload := map[string]any{"command": []string{"/bin/sh", "-c", "echo reload $BERTH_BUNDLE_VERSION >> " + hookLog},
				"paths": []string{"etc/vdsm/vdsm.conf"}, "timeout": "30s"}
			put := func(args ...string) {
				mustRun(t, d.env, "berthctl", append([]string{"bundles", "put", first.NodeID, "-o", "json"}, args...)...)
			}

			// Version 1: two files; the hook covers the first.
			put("--file", write("vdsm1", "[vars]\nssl = true\n", 0o640)+"=etc/vdsm/vdsm.conf",
				"--file", write("old", "old\n", 0o644)+"=etc/old.conf",
				"--hooks", hooks("hooks1", reload))
			conf := filepath.Join(a.rootDir, "etc/vdsm/vdsm.conf")
			waitFor(t, "version 1 applied by the running agent", 60*time.Second, func() bool {
				return a.status(t).BundleVersion == 1
			})
			if got := readFile(conf); got != "[vars]\nssl = true\n" {
				t.Fatalf("vdsm.conf = %q", got)
			}
			if st, _ := os.Stat(conf); st == nil || st.Mode().Perm() != 0o640 {
				t.Errorf("vdsm.conf mode %v, want 0640", st)
			}
			if got := readFile(hookLog); got != "reload 1\n" {
				t.Fatalf("hook log after version 1 = %q, want one run", got)
			}

			// Version 2: vdsm.conf unchanged, old.conf gone, a new file
			// whose hook fails.
			failing := map[string]any{"command": []string{"/bin/false"}, "paths": []string{"etc/new.conf"}, "timeout": "30s"}
			put("--file", write("vdsm2", "[vars]\nssl = true\n", 0o640)+"=etc/vdsm/vdsm.conf",
				"--file", write("new", "new\n", 0o600)+"=etc/new.conf",
				"--hooks", hooks("hooks2", reload, failing))
			waitFor(t, "version 2 applied by the running agent", 60*time.Second, func() bool {
				return a.status(t).BundleVersion == 2
			})
			if _, err := os.Stat(filepath.Join(a.rootDir, "etc/old.conf")); !os.IsNotExist(err) {
				t.Errorf("etc/old.conf, dropped from the bundle, is still there: %v", err)
			}
			if got := readFile(filepath.Join(a.rootDir, "etc/new.conf")); got != "new\n" {
				t.Errorf("etc/new.conf = %q", got)
			}
			if got := readFile(hookLog); got != "reload 1\n" {
				t.Errorf("hook log after version 2 = %q: the hook ran again though its file did not change", got)
			}
			waitFor(t, "the failed hook as a node event", 60*time.Second, func() bool {
				return w.nodeEvent(t, first.NodeID, "bundle.hook_failed") != nil
			})
			e := w.nodeEvent(t, first.NodeID, "bundle.hook_failed")
			if e.Severity != "warning" || !strings.Contains(e.Message, "/bin/false") || !strings.Contains(e.Message, "exit status 1") {
				t.Errorf("hook failure event = %+v", e)
			}
		})
	}
}

// nodeEvent returns the first node_event of type typ about node, or nil.
func (w *watcher) nodeEvent(t *testing.T, node, typ string) *watchEvent {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, e := range w.events {
		if e.Type == "node_event" && e.NodeID == node && e.EventType == typ {
			return &w.events[i]
		}
	}
	return nil
}

// TestReportAndEvents: what a host daemon reports through the running
// agent shows in berthctl nodes get; an event reported while the server is
// down is delivered once it is back, once, with its type, severity and
// message.
func TestReportAndEvents(t *testing.T) {
	dir, listen := t.TempDir(), freeport.Addr(t)
	devArgs := []string{"dev", "--data-dir", dir, "--listen", listen, "--metrics-listen", ""}
	server := start(t, nil, "berthd", devArgs...)
	envFile := filepath.Join(dir, "env")
	waitFor(t, "berthd dev to write "+envFile, 60*time.Second, func() bool {
		_, err := os.Stat(envFile)
		return err == nil
	})
	d := deployment{env: readEnvFile(t, envFile), dataDir: dir}
	m := newMachine(t, "hv-32", "4c4c4544-0042-3510-8051-b2c04f4e4d32")
	first, _, err := m.boot(t, d, createToken(t, d, "--auto-approve"))
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, d, m)
	sock := []string{"--socket", a.socket}

	mustRun(t, nil, "berth-agent", append([]string{"report", "set", "maintenance=true", "vms_running=12"}, sock...)...)
	var n struct {
		Reported   map[string]string `json:"reported"`
		ReportedAt string            `json:"reported_at"`
	}
	waitFor(t, "the report in berthctl nodes get", 60*time.Second, func() bool {
		out, err := run(t, d.env, "berthctl", "nodes", "get", first.NodeID, "-o", "json")
		if err != nil {
			return false
		}
		mustJSON(t, out, &n)
		return n.Reported["maintenance"] == "true" && n.Reported["vms_running"] == "12"
	})
	if _, err := time.Parse(time.RFC3339, n.ReportedAt); err != nil {
		t.Errorf("reported_at %q: %v", n.ReportedAt, err)
	}
	mustRun(t, nil, "berth-agent", append([]string{"report", "unset", "maintenance"}, sock...)...)
	waitFor(t, "the unset key gone from berthctl nodes get", 60*time.Second, func() bool {
		out, err := run(t, d.env, "berthctl", "nodes", "get", first.NodeID, "-o", "json")
		n.Reported = nil
		if err == nil {
			mustJSON(t, out, &n)
		}
		_, still := n.Reported["maintenance"]
		return err == nil && !still && n.Reported["vms_running"] == "12"
	})
	// Bad input is refused by the agent, with the reason, and changes
	// nothing.
	if _, err := run(t, nil, "berth-agent", append([]string{"report", "set", "Bad Key=1"}, sock...)...); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Errorf("report set with a bad key: %v", err)
	}

	// The server goes away; the event waits in the agent.
	server.cmd.Process.Signal(os.Interrupt)
	<-server.done
	waitFor(t, "the agent to notice the server is gone", 60*time.Second, func() bool {
		return a.status(t).Connection != "connected"
	})
	mustRun(t, nil, "berth-agent", append([]string{"report", "event", "--type", "disk.failed", "--severity", "critical", "sdb: medium error"}, sock...)...)
	if st := a.status(t); st.EventsQueued != 1 {
		t.Errorf("while the server is down: %+v, want the event queued", st)
	}
	start(t, nil, "berthd", devArgs...)
	waitFor(t, "the queued event delivered", 120*time.Second, func() bool {
		st := a.status(t)
		return st.Connection == "connected" && st.EventsQueued == 0
	})
	w := startWatch(t, d)
	waitFor(t, "the node event in berthctl watch", 60*time.Second, func() bool {
		return w.nodeEvent(t, first.NodeID, "disk.failed") != nil
	})
	// Beats go on; nothing sends the event twice.
	before := a.status(t).LastHeartbeat
	waitFor(t, "two more heartbeats", 60*time.Second, func() bool {
		return a.status(t).LastHeartbeat != before
	})
	w.mu.Lock()
	count := 0
	for _, e := range w.events {
		if e.Type == "node_event" && e.EventType == "disk.failed" {
			count++
			if e.Severity != "critical" || e.Message != "sdb: medium error" || e.NodeID != first.NodeID {
				t.Errorf("node event = %+v", e)
			}
		}
	}
	w.mu.Unlock()
	if count != 1 {
		t.Errorf("the event was delivered %d times, want once", count)
	}
}

// TestReconfigure: berth.reconfigure=1 on the kernel command line makes a
// node that has a bundle run --configure anyway and upload the result as
// its next version.
func TestReconfigure(t *testing.T) {
	d := startDev(t)
	m := newMachine(t, "hv-33", "4c4c4544-0042-3510-8051-b2c04f4e4d33")
	token := createToken(t, d, "--auto-approve")
	boot := func(cmdline, configure string) agentResult {
		t.Helper()
		cmdlineFile := filepath.Join(t.TempDir(), "cmdline")
		if err := os.WriteFile(cmdlineFile, []byte(cmdline), 0o644); err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		out := mustRun(t, d.env, "berth-agent", "--identity", "seed", "--seed-file", m.seedFile, "--hardware-uuid", m.uuid,
			"--hostname", m.hostname, "--cert-dir", filepath.Join(t.TempDir(), "run"), "--root", root, "--token", token,
			"--cmdline", cmdlineFile, "--wait", "60s", "--once", "--output", "json", "--configure", configure)
		r := agentResult{rootDir: root}
		mustJSON(t, out, &r)
		return r
	}
	first := boot("quiet", `mkdir -p "$1/etc" && echo first > "$1/etc/role"`)
	if first.BundleVersion == nil || *first.BundleVersion != 1 || readFile(filepath.Join(first.rootDir, "etc/role")) != "first\n" {
		t.Fatalf("first boot: %+v", first)
	}
	// Without the flag a bundle is applied as it is: the command does not run.
	again := boot("quiet", `mkdir -p "$1/etc" && echo second > "$1/etc/role"`)
	if *again.BundleVersion != 1 || readFile(filepath.Join(again.rootDir, "etc/role")) != "first\n" {
		t.Fatalf("a plain reboot reconfigured: %+v", again)
	}
	re := boot("quiet berth.reconfigure=1", `mkdir -p "$1/etc" && echo second > "$1/etc/role"`)
	if re.BundleVersion == nil || *re.BundleVersion != 2 || readFile(filepath.Join(re.rootDir, "etc/role")) != "second\n" {
		t.Fatalf("reconfigured boot: %+v, etc/role %q", re, readFile(filepath.Join(re.rootDir, "etc/role")))
	}
	var history []struct {
		Version int64 `json:"version"`
	}
	mustJSON(t, mustRun(t, d.env, "berthctl", "bundles", "history", first.NodeID, "-o", "json"), &history)
	if len(history) != 2 {
		t.Errorf("bundle history %+v, want versions 1 and 2", history)
	}
}

// TestRunningAgentRenews: a running agent renews its certificate at two
// thirds of its lifetime, rewrites --cert-dir and then runs --on-renew,
// which sees the new files.
func TestRunningAgentRenews(t *testing.T) {
	d := startDev(t, "--cert-lifetime", "90s")
	m := newMachine(t, "hv-34", "4c4c4544-0042-3510-8051-b2c04f4e4d34")
	if _, _, err := m.boot(t, d, createToken(t, d, "--auto-approve")); err != nil {
		t.Fatal(err)
	}
	hookDir := t.TempDir()
	a := startAgent(t, d, m, "--on-renew", `cp "$BERTH_CERT_DIR/node.crt" "`+hookDir+`/$(date +%s%N).crt"`)
	before := a.status(t).CertSerial
	var seen []string
	waitFor(t, "a renewal and its hook", 3*time.Minute, func() bool {
		entries, _ := os.ReadDir(hookDir)
		seen = seen[:0]
		for _, e := range entries {
			seen = append(seen, readFile(filepath.Join(hookDir, e.Name())))
		}
		return len(seen) > 0
	})
	now := a.status(t).CertSerial
	if now == before || now == "" {
		t.Fatalf("serial %s before, %s after the hook ran", before, now)
	}
	// What the hook found in --cert-dir is the renewed certificate.
	blk, _ := pem.Decode([]byte(seen[0]))
	if blk == nil {
		t.Fatalf("the hook found no certificate: %q", seen[0])
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.SerialNumber.Text(16); got == before {
		t.Errorf("the hook ran before node.crt was rewritten (it saw serial %s)", got)
	}
}
