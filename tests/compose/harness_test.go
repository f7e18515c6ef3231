//go:build compose

package compose

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil/freeport"
)

// commandTimeout bounds one docker or compose command.
const commandTimeout = 3 * time.Minute

// project is one compose project under test: its own name, volumes,
// network and host port.
type project struct {
	t        *testing.T
	name     string
	compose  []string // e.g. docker compose -f deploy/compose.yaml -p NAME
	env      []string // environment of every compose command
	port     int      // host port of registration
	apiPort  int      // host port of the front door
	bin      string   // host-built berthctl and berth-agent
	creds    string   // admin credentials copied out of the PKI volume
	caHash   string
	rootDir  string
	hostNode int // host-run nodes registered so far
	// hostCertDir is the --cert-dir of the last host-run node.
	hostCertDir string
}

// requireDocker fails the test when no Docker engine answers or no compose
// command is installed: on the machines berth is tested on they are part
// of the kit (tools/provision.sh installs docker-compose), so their absence
// is a broken machine, not a reason to skip.
func requireDocker(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("the docker command is not installed (the Compose test needs a Docker engine)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Fatalf("no Docker engine answers (docker info: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	if v := os.Getenv("BERTH_COMPOSE"); v != "" {
		return strings.Fields(v)
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	t.Fatal("neither the compose plugin (docker compose) nor docker-compose is installed (make deps installs docker-compose)")
	return nil
}

// requireImage fails when an image the deployment needs is not built.
func requireImage(t *testing.T, image string) int64 {
	t.Helper()
	out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Size}}", image).CombinedOutput()
	if err != nil {
		t.Fatalf("image %s is missing (run make images, or make compose-test): %s", image, strings.TrimSpace(string(out)))
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return n
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// repoRoot is the module root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "compose.yaml")); err != nil {
		t.Fatalf("deploy/compose.yaml not found from %s: %v", root, err)
	}
	return root
}

// buildHostTools builds berthctl and berth-agent for the host, as an
// operator's machine and an outside node would run them.
func buildHostTools(t *testing.T, root string) string {
	t.Helper()
	if dir := os.Getenv("BERTH_HOST_BIN"); dir != "" {
		return dir
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+string(filepath.Separator), "./cmd/berthctl", "./cmd/berth-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build berthctl and berth-agent: %v\n%s", err, out)
	}
	return dir
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newProject(t *testing.T, composeCmd []string, root, bin, berthImage, pgImage string) *project {
	name := "berthct" + randomHex(5)
	p := &project{
		t:       t,
		name:    name,
		compose: append(append([]string{}, composeCmd...), "-f", filepath.Join(root, "deploy", "compose.yaml"), "-p", name),
		port:    freeport.Port(t),
		apiPort: freeport.Port(t),
		bin:     bin,
		creds:   t.TempDir(),
		rootDir: root,
	}
	p.env = append(os.Environ(),
		"BERTH_IMAGE="+berthImage,
		"BERTH_POSTGRES_IMAGE="+pgImage,
		"BERTH_REGISTRATION_BIND=127.0.0.1",
		"BERTH_REGISTRATION_PORT="+strconv.Itoa(p.port),
		// Free ports for the admin APIs too, so that projects (of other
		// runs on this engine) do not collide.
		"BERTH_BUNDLES_PORT="+strconv.Itoa(freeport.Port(t)),
		"BERTH_HEARTBEAT_PORT="+strconv.Itoa(freeport.Port(t)),
		"BERTH_API_PORT="+strconv.Itoa(p.apiPort),
		"COMPOSE_PROJECT_NAME=",
		"COMPOSE_PROFILES=",
	)
	t.Cleanup(p.teardown)
	return p
}

// run runs a command with the project's environment and returns its
// combined output.
func (p *project) run(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append([]string{}, p.env...), env...)
	cmd.Dir = p.rootDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// composeEnv runs a compose command with extra environment.
func (p *project) composeEnv(env []string, args ...string) string {
	p.t.Helper()
	all := append(append([]string{}, p.compose[1:]...), args...)
	out, err := p.run(env, p.compose[0], all...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *project) composeCmd(args ...string) string {
	p.t.Helper()
	return p.composeEnv(nil, args...)
}

func (p *project) docker(args ...string) string {
	p.t.Helper()
	out, err := p.run(nil, "docker", args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *project) teardown() {
	t := p.t
	if t.Failed() {
		out, _ := p.run(nil, p.compose[0], append(append([]string{}, p.compose[1:]...),
			"--profile", "demo", "logs", "--no-color", "--tail", "60")...)
		t.Logf("compose logs of %s (last lines per service):\n%s", p.name, out)
	}
	if os.Getenv("BERTH_COMPOSE_KEEP") == "1" {
		t.Logf("BERTH_COMPOSE_KEEP=1: project %s left up; remove it with: %s --profile demo down -v",
			p.name, strings.Join(p.compose, " "))
		return
	}
	if out, err := p.run(nil, p.compose[0], append(append([]string{}, p.compose[1:]...),
		"--profile", "demo", "down", "-v", "--remove-orphans", "--timeout", "5")...); err != nil {
		t.Errorf("down -v: %v\n%s", err, out)
	}
	left, _ := p.run(nil, "docker", "volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+p.name)
	if strings.TrimSpace(left) != "" {
		t.Errorf("volumes left behind by down -v: %s", left)
	}
}

// container is the ID of a service's container (running or not), or "".
func (p *project) container(service string) string {
	p.t.Helper()
	out := p.docker("ps", "-a", "-q",
		"--filter", "label=com.docker.compose.project="+p.name,
		"--filter", "label=com.docker.compose.service="+service,
		"--filter", "label=com.docker.compose.oneoff=False")
	ids := strings.Fields(out)
	switch len(ids) {
	case 0:
		return ""
	case 1:
		return ids[0]
	}
	p.t.Fatalf("service %s has %d containers: %v", service, len(ids), ids)
	return ""
}

type state struct {
	Status    string // running, exited, ...
	Health    string // healthy, starting, unhealthy or "" without a healthcheck
	ExitCode  int
	StartedAt time.Time
	Restarts  int
}

func (p *project) state(service string) state {
	p.t.Helper()
	id := p.container(service)
	if id == "" {
		return state{Status: "missing"}
	}
	out, err := p.run(nil, "docker", "inspect", "-f",
		"{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}|{{.State.StartedAt}}|{{.RestartCount}}", id)
	if err != nil {
		return state{Status: "missing"}
	}
	f := strings.Split(strings.TrimSpace(out), "|")
	if len(f) != 5 {
		p.t.Fatalf("docker inspect said %q", out)
	}
	s := state{Status: f[0], Health: f[1]}
	s.ExitCode, _ = strconv.Atoi(f[2])
	s.StartedAt, _ = time.Parse(time.RFC3339Nano, f[3])
	s.Restarts, _ = strconv.Atoi(f[4])
	return s
}

// servers are the long-running services of the deployment; init is the
// one-shot PKI container.
var servers = []string{"postgres", "ca", "bundles", "heartbeat", "registration", "api"}

// waitHealthy waits until init has completed and every server is healthy,
// and returns how long that took.
func (p *project) waitHealthy(timeout time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		var bad []string
		if s := p.state("init"); s.Status != "exited" || s.ExitCode != 0 {
			bad = append(bad, fmt.Sprintf("init %s (exit %d)", s.Status, s.ExitCode))
		}
		for _, svc := range servers {
			if s := p.state(svc); s.Status != "running" || s.Health != "healthy" {
				bad = append(bad, fmt.Sprintf("%s %s/%s", svc, s.Status, s.Health))
			}
		}
		if len(bad) == 0 {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("not healthy after %v: %s", timeout, strings.Join(bad, ", "))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitUntil polls cond until it holds, failing after timeout: how the
// test waits for something to happen, never a fixed sleep.
func (p *project) waitUntil(what string, timeout time.Duration, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitService waits until one service is running and healthy.
func (p *project) waitService(service string, timeout time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	for {
		s := p.state(service)
		if s.Status == "running" && (s.Health == "healthy" || s.Health == "") {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			p.t.Fatalf("%s not healthy after %v: %s/%s", service, timeout, s.Status, s.Health)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logs returns a service's container log with Docker's timestamps.
func (p *project) logs(service string) string {
	p.t.Helper()
	id := p.container(service)
	if id == "" {
		p.t.Fatalf("service %s has no container", service)
	}
	return p.docker("logs", "-t", id)
}

// copyAdminCredentials copies ca.crt, admin.crt and admin.key out of the
// admin's volume (through the init container, the only one that mounts
// it), as the documentation tells an operator to.
func (p *project) copyAdminCredentials() {
	p.t.Helper()
	id := p.container("init")
	for _, f := range []string{"ca.crt", "admin.crt", "admin.key"} {
		p.docker("cp", id+":/var/lib/berth/pki/admin/"+f, filepath.Join(p.creds, f))
	}
	b, err := os.ReadFile(filepath.Join(p.creds, "ca.crt"))
	if err != nil {
		p.t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		p.t.Fatal("ca.crt holds no PEM block")
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		p.t.Fatal(err)
	}
	sum := sha256.Sum256(root.RawSubjectPublicKeyInfo)
	p.caHash = "sha256:" + hex.EncodeToString(sum[:])
}

// adminEnv is berthctl's environment on the host: the front door's
// address alone, as an operator's.
func (p *project) adminEnv() []string {
	return []string{
		"BERTH_SERVER=127.0.0.1:" + strconv.Itoa(p.apiPort),
		"BERTH_CA=" + filepath.Join(p.creds, "ca.crt"),
		"BERTH_CERT=" + filepath.Join(p.creds, "admin.crt"),
		"BERTH_KEY=" + filepath.Join(p.creds, "admin.key"),
	}
}

// berthctl runs the host's berthctl against the published front door.
func (p *project) berthctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "berthctl"), args...)
	cmd.Env = append(os.Environ(), p.adminEnv()...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("berthctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// berthctlEventually retries berthctl until it succeeds (a service that
// was just restarted may need a moment) and reports the failed attempts.
func (p *project) berthctlEventually(timeout time.Duration, args ...string) string {
	p.t.Helper()
	start := time.Now()
	var failures []string
	for {
		out, err := p.berthctl(args...)
		if err == nil {
			if len(failures) > 0 {
				p.t.Logf("berthctl %s succeeded after %v and %d failed attempts; first: %s",
					strings.Join(args, " "), time.Since(start).Round(time.Millisecond), len(failures), failures[0])
			}
			return out
		}
		failures = append(failures, err.Error())
		if time.Since(start) > timeout {
			p.t.Fatalf("berthctl %s failed for %v: %v", strings.Join(args, " "), timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// createToken makes an auto-approve bootstrap token.
func (p *project) createToken(uses int) string {
	p.t.Helper()
	out := p.berthctlEventually(30*time.Second, "tokens", "create", "--auto-approve", "--uses", strconv.Itoa(uses), "-o", "json")
	var tok struct {
		Token       string `json:"token"`
		AutoApprove bool   `json:"auto_approve"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" || !tok.AutoApprove {
		p.t.Fatalf("tokens create -o json said %q (%v)", out, err)
	}
	return tok.Token
}

type node struct {
	ID                 string `json:"id"`
	Status             string `json:"status"`
	Hostname           string `json:"hostname"`
	CertSerial         string `json:"cert_serial"`
	CertificatesIssued int64  `json:"certificates_issued"`
}

func (p *project) getNode(id string) node {
	p.t.Helper()
	out := p.berthctlEventually(30*time.Second, "nodes", "get", id, "-o", "json")
	var n node
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		p.t.Fatalf("nodes get -o json said %q: %v", out, err)
	}
	return n
}

func (p *project) listNodes() []node {
	p.t.Helper()
	out := p.berthctlEventually(30*time.Second, "nodes", "list", "-o", "json")
	var ns []node
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		p.t.Fatalf("nodes list -o json said %q: %v", out, err)
	}
	return ns
}

// bootResult is one JSON line the agent printed, with Docker's timestamp.
type bootResult struct {
	At           time.Time
	NodeID       string `json:"node_id"`
	Status       string `json:"status"`
	Action       string `json:"action"`
	CertSerial   string `json:"cert_serial"`
	CertNotAfter string `json:"cert_not_after"`
	Renewed      bool   `json:"renewed"`
}

// logTimes returns the Docker timestamps of a service's log lines that
// contain substr and were written after since.
func (p *project) logTimes(service, substr string, since time.Time) []time.Time {
	p.t.Helper()
	var ts []time.Time
	for _, line := range strings.Split(p.logs(service), "\n") {
		stamp, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.Contains(rest, substr) {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil && !at.Before(since) {
			ts = append(ts, at)
		}
	}
	return ts
}

var logLine = regexp.MustCompile(`^(\S+) (\{.*\})\s*$`)

// agentResults parses every boot result in the agent container's log.
func (p *project) agentResults() []bootResult {
	p.t.Helper()
	var rs []bootResult
	sc := bufio.NewScanner(strings.NewReader(p.logs("agent")))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := logLine.FindStringSubmatch(sc.Text())
		if m == nil || !strings.Contains(m[2], `"node_id"`) {
			continue
		}
		var r bootResult
		if err := json.Unmarshal([]byte(m[2]), &r); err != nil {
			p.t.Fatalf("agent printed %q: %v", m[2], err)
		}
		r.At, _ = time.Parse(time.RFC3339Nano, m[1])
		rs = append(rs, r)
	}
	return rs
}

// waitBoot waits until the agent container has printed more than `seen`
// results and returns the newest.
func (p *project) waitBoot(seen int, timeout time.Duration) bootResult {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if id := p.container("agent"); id != "" {
			if rs := p.agentResults(); len(rs) > seen {
				return rs[len(rs)-1]
			}
		}
		if time.Now().After(deadline) {
			s := p.state("agent")
			p.t.Fatalf("the agent printed no new result within %v (container %s, exit %d)", timeout, s.Status, s.ExitCode)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// bootHostNode registers a new node from the host through the published
// port: registration signs its certificate through the CA, so this
// exercises registration, ca and postgres and the links between them.
func (p *project) bootHostNode(token string) bootResult {
	p.t.Helper()
	p.hostNode++
	dir := p.t.TempDir()
	seed := filepath.Join(dir, "seed")
	if err := os.WriteFile(seed, []byte(randomHex(32)), 0o600); err != nil {
		p.t.Fatal(err)
	}
	uuid := randomHex(16)
	uuid = uuid[0:8] + "-" + uuid[8:12] + "-" + uuid[12:16] + "-" + uuid[16:20] + "-" + uuid[20:32]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "berth-agent"),
		"--server", "127.0.0.1:"+strconv.Itoa(p.port), "--ca-hash", p.caHash, "--token", token,
		"--identity", "seed", "--seed-file", seed, "--hardware-uuid", uuid,
		"--hostname", fmt.Sprintf("host-node-%02d", p.hostNode), "--cmdline", filepath.Join(dir, "no-cmdline"),
		"--cert-dir", filepath.Join(dir, "run"), "--root", filepath.Join(dir, "root"),
		// This node sits on the host, outside the compose network, where the
		// heartbeat address nodes are given (heartbeat:8443) does not
		// resolve; the demo agent inside the network heartbeats.
		"--once", "--no-heartbeat", "--output", "json", "--wait", "60s")
	cmd.Env = os.Environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		p.t.Fatalf("host node: berth-agent: %v\n%s", err, stderr.String())
	}
	var r bootResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		p.t.Fatalf("host node printed %q: %v", stdout.String(), err)
	}
	if r.Action != "registered" || r.Status != "approved" || r.CertSerial == "" {
		p.t.Fatalf("host node: %+v, want a registered, approved node with a certificate", r)
	}
	p.hostCertDir = filepath.Join(dir, "run")
	return r
}
