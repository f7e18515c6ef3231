package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil/freeport"
)

// readmeSections are the README sections a newcomer pastes in order into
// a terminal against `make run`; TestREADME runs every sh block in them.
var readmeSections = []string{"Five minutes with berth", "Configuration bundles", "Health and events", "REST/JSON API", "Web console", "Flags and environment"}

// readmeBlocks returns the fenced sh blocks of the named level-2 sections
// of the README, in document order.
func readmeBlocks(t *testing.T, path string, sections []string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, s := range sections {
		want[s] = true
	}
	var (
		blocks  []string
		in      bool // inside a wanted section
		fence   bool // inside an sh block there
		block   strings.Builder
		matched = map[string]bool{}
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case fence && line == "```":
			blocks = append(blocks, block.String())
			block.Reset()
			fence = false
		case fence:
			block.WriteString(line + "\n")
		case strings.HasPrefix(line, "## "):
			title := strings.TrimPrefix(line, "## ")
			in = want[title]
			matched[title] = in
		case in && line == "```sh":
			fence = true
		}
	}
	for _, s := range sections {
		if !matched[s] {
			t.Fatalf("README.md has no section %q (update readmeSections in this test)", s)
		}
	}
	return blocks
}

// cleanEnv is this process's environment without what would leak into
// the programs under test: berth's own settings (a developer may have
// sourced .berth-dev/env), tracing, and the make test run's own make.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BERTH_") || strings.HasPrefix(k, "OTEL_") ||
			k == "MAKEFLAGS" || k == "MFLAGS" || k == "MAKELEVEL" || k == "MAKEOVERRIDES" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// outputFile collects a process's output in a file, as a terminal would
// show it. A file rather than a pipe: a background job that outlives the
// shell must not keep Wait from seeing that the shell is gone.
type outputFile struct{ f *os.File }

func newOutputFile(t *testing.T) *outputFile {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &outputFile{f: f}
}

func (o *outputFile) String() string {
	b, _ := os.ReadFile(o.f.Name())
	return string(b)
}

// startGroup starts a command in its own process group and stops the whole
// group (make and the berthd it started; bash and its background jobs)
// when the test ends.
func startGroup(t *testing.T, cmd *exec.Cmd) <-chan struct{} {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return done
}

// TestREADME pastes the README's quickstart as written: `make run` (the
// first block) in one terminal, every later block of readmeSections in
// order into one bash session in a second, against the real berthd dev, in
// a fresh directory that stands for the checkout. Between blocks it waits
// for what the README tells the reader to wait for. If the README and the
// binaries drift apart, this fails.
func TestREADME(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(root, "README.md"), readmeSections)
	if len(blocks) < 2 || strings.TrimSpace(blocks[0]) != "make run" {
		t.Fatalf("the quickstart no longer starts with a block that is just `make run`; update this test:\n%q", blocks)
	}

	// Terminal one: make run, with bin/ and .berth-dev/ in the test's
	// directory instead of the checkout, and its own ports instead of
	// 8443 and 9090 (a developer's make run may hold them).
	dir := t.TempDir()
	serverOut := newOutputFile(t)
	makeRun := exec.Command("make", "--no-print-directory", "-C", root, "run",
		"BIN="+filepath.Join(dir, "bin"), "DATA_DIR="+filepath.Join(dir, ".berth-dev"))
	makeRun.Env = append(cleanEnv(), "BERTH_LISTEN="+freeport.Addr(t), "BERTH_METRICS_LISTEN="+freeport.Addr(t))
	makeRun.Stdout, makeRun.Stderr = serverOut.f, serverOut.f
	serverDone := startGroup(t, makeRun)
	defer func() {
		if t.Failed() {
			t.Logf("make run output:\n%s", serverOut.String())
		}
	}()
	envFile := filepath.Join(dir, ".berth-dev", "env")
	waitFor(t, "make run to build and serve (it writes .berth-dev/env)", 5*time.Minute, func() bool {
		select {
		case <-serverDone:
			t.Fatalf("make run exited:\n%s", serverOut.String())
		default:
		}
		_, err := os.Stat(envFile)
		return err == nil
	})
	admin := readEnvFile(t, envFile)
	berthctl := func(args ...string) string {
		t.Helper()
		return mustRun(t, admin, "berthctl", args...)
	}

	// Terminal two: one bash session, so variables ($TOKEN, $NODE_ID) and
	// background jobs carry from block to block as in a terminal; but any
	// failing command ends it.
	out := newOutputFile(t)
	sh := exec.Command("bash", "--noprofile", "--norc")
	sh.Dir = dir
	sh.Env = cleanEnv()
	sh.Stdout, sh.Stderr = out.f, out.f
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	shDone := startGroup(t, sh)
	defer func() {
		if t.Failed() {
			t.Logf("terminal output:\n%s", out.String())
		}
	}()
	paste := func(text string) {
		t.Helper()
		if _, err := io.WriteString(stdin, text); err != nil {
			t.Fatalf("the shell is gone: %v", err)
		}
	}
	paste("set -e -o pipefail\n")

	for i, block := range blocks[1:] {
		n := i + 2
		switch {
		case strings.Contains(block, "nodes approve"):
			// "The agent waits while the node is pending. Approve it."
			waitFor(t, "a node pending approval", 2*time.Minute, func() bool {
				var nodes []nodeJSON
				return json.Unmarshal([]byte(berthctl("nodes", "list", "--status", "pending", "-o", "json")), &nodes) == nil && len(nodes) > 0
			})
		case strings.Contains(block, "rm -rf"):
			// "The agent prints "action":"registered" ... Now reboot it."
			waitFor(t, `the agent in the background to print "action":"registered"`, 2*time.Minute, func() bool {
				return len(agentResults(t, out.String(), "registered")) > 0
			})
		}
		marker := fmt.Sprintf("@@ README block %d done @@", n)
		paste(block + "echo '" + marker + "'\n")
		waitFor(t, fmt.Sprintf("README block %d to finish:\n%s", n, block), 3*time.Minute, func() bool {
			select {
			case <-shDone:
				t.Fatalf("README block %d failed (the shell exited: %v):\n%s", n, sh.ProcessState, block)
			default:
			}
			return strings.Contains(out.String(), marker)
		})
	}
	stdin.Close()
	select {
	case <-shDone:
		if !sh.ProcessState.Success() {
			t.Fatalf("the shell exited with %v", sh.ProcessState)
		}
	case <-time.After(time.Minute):
		t.Fatal("the shell did not exit within a minute of its input's end")
	}

	// What the README promises the reader sees.
	registered := agentResults(t, out.String(), "registered")
	resumed := agentResults(t, out.String(), "resumed")
	if len(registered) != 1 || len(resumed) < 2 {
		t.Fatalf("agent results: %d registered, %d resumed; want 1 and at least 2", len(registered), len(resumed))
	}
	reg := registered[0]
	for _, r := range resumed {
		if r.NodeID != reg.NodeID || r.CertSerial != reg.CertSerial {
			t.Fatalf("resumed as node %s with certificate %s; registered as %s with %s", r.NodeID, r.CertSerial, reg.NodeID, reg.CertSerial)
		}
	}
	if last := resumed[len(resumed)-1]; last.FilesApplied != 2 {
		t.Fatalf("the boot after bundles put applied %d files, want 2", last.FilesApplied)
	}
	if b, err := os.ReadFile(filepath.Join(dir, ".berth-dev", "hv-01", "root", "etc", "hostname")); err != nil || string(b) != "hv-01\n" {
		t.Fatalf("etc/hostname under the node's root: %q, %v; want hv-01", b, err)
	}
	var n nodeJSON
	mustJSON(t, berthctl("nodes", "get", reg.NodeID, "-o", "json"), &n)
	if n.Status != "revoked" || n.CertificatesIssued == nil || *n.CertificatesIssued != 1 || n.CertSerial != reg.CertSerial {
		t.Fatalf("node at the end: %+v; want revoked, one certificate, serial %s", n, reg.CertSerial)
	}
}

// readmeAgentResult is the part of berth-agent --output json the README
// talks about.
type readmeAgentResult struct {
	NodeID       string `json:"node_id"`
	Action       string `json:"action"`
	CertSerial   string `json:"cert_serial"`
	FilesApplied int    `json:"files_applied"`
}

// agentResults returns the agent result lines with action in a terminal's
// output.
func agentResults(t *testing.T, output, action string) []readmeAgentResult {
	var rs []readmeAgentResult
	for _, line := range strings.Split(output, "\n") {
		if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"action"`) {
			continue
		}
		var r readmeAgentResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("agent printed %q: %v", line, err)
		}
		if r.Action == action {
			rs = append(rs, r)
		}
	}
	return rs
}
