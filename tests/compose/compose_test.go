//go:build compose

package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var caHashLine = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// TestComposeDeployment runs deploy/compose.yaml from nothing to down -v on
// the local Docker engine. The steps depend on each other, so the first
// failure stops the run.
func TestComposeDeployment(t *testing.T) {
	composeCmd := requireDocker(t)
	berthImage := getenv("BERTH_IMAGE", "berth:dev")
	pgImage := getenv("BERTH_POSTGRES_IMAGE", "berth-postgres:15")
	berthSize := requireImage(t, berthImage)
	pgSize := requireImage(t, pgImage)
	t.Logf("MEASURE image %s: %.1f MB; %s: %.1f MB", berthImage, float64(berthSize)/1e6, pgImage, float64(pgSize)/1e6)
	root := repoRoot(t)
	bin := buildHostTools(t, root)
	p := newProject(t, composeCmd, root, bin, berthImage, pgImage)
	t.Logf("compose: %s (project %s, registration on 127.0.0.1:%d)", strings.Join(composeCmd, " "), p.name, p.port)

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		ok := t.Run(name, func(t *testing.T) {
			p.t = t
			f(t)
		})
		p.t = t
		if !ok {
			t.FailNow()
		}
	}

	var (
		nodeID, serial string
		token          string
	)

	step("up from nothing, every service healthy", func(t *testing.T) {
		start := time.Now()
		p.composeCmd("up", "-d")
		p.waitHealthy(3 * time.Minute)
		t.Logf("MEASURE up from nothing to all healthy: %v", time.Since(start).Round(10*time.Millisecond))
		if !strings.Contains(p.logs("init"), "Created the PKI") {
			t.Errorf("init did not create the PKI:\n%s", p.logs("init"))
		}
	})

	step("admin credentials copied out; berthctl from the host", func(t *testing.T) {
		p.copyAdminCredentials()
		if got := caHashLine.FindString(p.logs("init")); got != p.caHash {
			t.Fatalf("init printed CA hash %q; ca.crt copied out has %q", got, p.caHash)
		}
		if ns := p.listNodes(); len(ns) != 0 {
			t.Fatalf("a new deployment has nodes: %+v", ns)
		}
		token = p.createToken(1)
		// The same from inside the compose network, credential from the volume.
		out := p.composeCmd("run", "--rm", "-T", "berthctl", "tokens", "list", "-o", "json")
		if !strings.Contains(out, strings.SplitN(token, ".", 2)[0]) {
			t.Fatalf("berthctl in compose (tokens list) does not show token %s:\n%s", strings.SplitN(token, ".", 2)[0], out)
		}
	})

	step("second up is idempotent", func(t *testing.T) {
		before := map[string]string{}
		for _, s := range servers {
			before[s] = p.container(s)
		}
		p.composeCmd("up", "-d")
		p.waitHealthy(2 * time.Minute)
		for _, s := range servers {
			if id := p.container(s); id != before[s] {
				t.Errorf("second up replaced the %s container", s)
			}
		}
		p.copyAdminCredentials()
		if got := caHashLine.FindString(p.logs("init")); got != p.caHash {
			t.Errorf("the CA changed on a second up: %s, was %s", got, p.caHash)
		}
	})

	step("each service holds only its own credentials, and no root key", func(t *testing.T) {
		for _, svc := range []string{"ca", "registration", "bundles", "heartbeat", "api"} {
			t.Logf("%s can read: %s", svc, p.checkOwnCredentials(svc))
		}
		t.Logf("the berthctl tool can read: %s", p.checkAdminTool())
	})

	rootKey := filepath.Join(p.creds, "root.key")
	step("root key taken offline: the deployment runs and restarts without it", func(t *testing.T) {
		initID := p.container("init")
		p.docker("cp", initID+":/var/lib/berth/pki/root/root.key", rootKey)
		p.checkRootKey(rootKey)
		p.docker("rm", "-f", initID)
		p.docker("volume", "rm", p.name+"_pki-root")
		p.composeCmd("up", "-d")
		p.waitHealthy(2 * time.Minute)
		if logs := p.logs("init"); !strings.Contains(logs, "already present") || !strings.Contains(logs, "(kept offline)") {
			t.Fatalf("init without the root key:\n%s", logs)
		}
		if got := caHashLine.FindString(p.logs("init")); got != p.caHash {
			t.Fatalf("the CA changed without the root key: %s, was %s", got, p.caHash)
		}
	})

	step("demo agent registers", func(t *testing.T) {
		p.composeEnv([]string{"BERTH_AGENT_TOKEN=" + token}, "--profile", "demo", "up", "-d", "agent")
		r := p.waitBoot(0, 2*time.Minute)
		if r.Action != "registered" || r.Status != "approved" || r.NodeID == "" || r.CertSerial == "" {
			t.Fatalf("first boot: %+v, want registered and approved with a certificate", r)
		}
		nodeID, serial = r.NodeID, r.CertSerial
		n := p.getNode(nodeID)
		if n.CertSerial != serial || n.CertificatesIssued != 1 || n.Status != "approved" || n.Hostname != "demo-node-01" {
			t.Fatalf("nodes get: %+v, want serial %s, 1 certificate, approved, demo-node-01", n, serial)
		}
		tmpfs := p.docker("inspect", "-f", "{{json .HostConfig.Tmpfs}}", p.container("agent"))
		for _, dir := range []string{"/run/berth", "/var/lib/berth/root"} {
			if !strings.Contains(tmpfs, `"`+dir+`"`) {
				t.Errorf("%s is not a tmpfs in the agent container: %s", dir, tmpfs)
			}
		}
	})

	step("the front door: every service's admin API through BERTH_SERVER alone", func(t *testing.T) {
		// registration (nodes), heartbeat (health in nodes get), bundles,
		// the CA, and the watch of all three services merged.
		if n := p.getNode(nodeID); n.Status != "approved" {
			t.Fatalf("nodes get through the front door: %+v", n)
		}
		for _, args := range [][]string{
			{"bundles", "history", nodeID, "-o", "json"},
			{"ca", "crl", "-o", "json"},
			{"certs", "list", "--node", nodeID, "-o", "json"},
		} {
			if _, err := p.berthctl(args...); err != nil {
				t.Errorf("through the front door: %v", err)
			}
		}
		out := p.berthctlEventually(time.Minute, "watch", "--node", nodeID, "--type", "registered", "--count", "1", "-o", "json")
		if !strings.Contains(out, `"service":"registration"`) || !strings.Contains(out, nodeID) {
			t.Errorf("watch through the front door: %s", out)
		}
		// The front door's own health check is the one its container runs.
		if s := p.state("api"); s.Health != "healthy" {
			t.Errorf("the api service is %+v, want healthy", s)
		}
	})

	resumes := 0
	checkResume := func(t *testing.T, r bootResult, what string) {
		t.Helper()
		if r.Action != "resumed" || r.NodeID != nodeID || r.CertSerial != serial || r.Renewed {
			t.Fatalf("%s: %+v, want node %s resumed with certificate %s, not renewed", what, r, nodeID, serial)
		}
		resumes++
	}

	step("restart agent three times: same node, same certificate", func(t *testing.T) {
		var inside, total []time.Duration
		for i := 1; i <= 3; i++ {
			seen := len(p.agentResults())
			start := time.Now()
			p.composeCmd("--profile", "demo", "restart", "agent")
			r := p.waitBoot(seen, time.Minute)
			total = append(total, time.Since(start))
			inside = append(inside, r.At.Sub(p.state("agent").StartedAt))
			checkResume(t, r, fmt.Sprintf("reboot %d", i))
		}
		if n := p.getNode(nodeID); n.CertificatesIssued != 1 || n.CertSerial != serial {
			t.Fatalf("after three reboots: %+v, want 1 certificate, serial %s", n, serial)
		}
		t.Logf("MEASURE agent resume inside compose (container start to result): %v", inside)
		t.Logf("MEASURE agent reboot (compose restart agent to result): %v", total)
	})

	step("registration down while the agent boots: retries, then completes", func(t *testing.T) {
		p.docker("kill", p.container("registration"))
		seen := len(p.agentResults())
		p.composeCmd("--profile", "demo", "restart", "agent")
		booted := p.state("agent").StartedAt
		// The agent keeps retrying with backoff until the log it writes
		// covers a window of 6 s past its first retry (by the log's own
		// timestamps): the backoff is capped at 10 s, so that comes.
		const window = 6 * time.Second
		var retries []time.Time
		p.waitUntil("the agent to retry for 6s while registration is down", 2*time.Minute, func() bool {
			retries = p.logTimes("agent", "not reachable; retrying", booted)
			return len(retries) >= 3 && !retries[len(retries)-1].Before(retries[0].Add(window))
		})
		if n := len(p.agentResults()); n != seen {
			t.Fatalf("the agent completed a boot while registration was down")
		}
		// Backoff from 250ms doubling to 10s with full jitter: a handful of
		// attempts in 6s, not a tight loop. A slow machine can only make
		// fewer.
		var inWindow int
		var gaps []time.Duration
		for i, at := range retries {
			if at.Before(retries[0].Add(window)) {
				inWindow++
			}
			if i > 0 {
				gaps = append(gaps, at.Sub(retries[i-1]).Round(time.Millisecond))
			}
		}
		if inWindow > 30 {
			t.Fatalf("the agent logged %d retries within 6s of its first, want at most 30 (backoff)", inWindow)
		}
		t.Logf("registration down: %d attempts in the first 6s, gaps %v", inWindow, gaps)
		back := time.Now()
		p.composeCmd("start", "registration")
		r := p.waitBoot(seen, time.Minute)
		checkResume(t, r, "boot during the outage")
		p.waitService("registration", time.Minute)
		t.Logf("MEASURE outage: agent completed %v after registration was started again (backoff capped at 10s)",
			r.At.Sub(back).Round(time.Millisecond))
	})

	step("intermediate rotated with the root key brought back: old certificates stay valid", func(t *testing.T) {
		// The key comes back for the rotation only, readable by the image's
		// user (a test's shortcut; an operator would chown it).
		keyDir := t.TempDir()
		hostKey := filepath.Join(keyDir, "root.key")
		b, err := os.ReadFile(rootKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(hostKey, b, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(keyDir, 0o755)
		out := p.composeCmd("run", "--rm", "-T", "-v", hostKey+":/tmp/root.key:ro", "init",
			"berthd", "ca", "rotate-intermediate", "--pki-dir", "/var/lib/berth/pki", "--root-key", "/tmp/root.key")
		if !strings.Contains(out, "Issued a new intermediate CA") {
			t.Fatalf("rotate-intermediate said:\n%s", out)
		}
		p.composeCmd("restart", "ca")
		p.waitService("ca", time.Minute)
		p.waitHealthy(2 * time.Minute)
		// The demo node's certificate, of the old intermediate, still works.
		seen := len(p.agentResults())
		p.composeCmd("--profile", "demo", "restart", "agent")
		checkResume(t, p.waitBoot(seen, time.Minute), "boot after the rotation")
		// A new node gets a certificate of the new intermediate.
		p.bootHostNode(p.createToken(1))
		inter := filepath.Join(t.TempDir(), "intermediate.crt")
		p.docker("cp", p.container("ca")+":/var/lib/berth/pki/intermediate.crt", inter)
		newInter := p.readCert(inter)
		if got := p.chainIntermediate(filepath.Join(p.hostCertDir, "node.crt")); !got.Equal(newInter) {
			t.Errorf("a node registered after the rotation has intermediate %x, want the new %x", got.SerialNumber, newInter.SerialNumber)
		}
		if n := p.getNode(nodeID); n.CertificatesIssued != 1 || n.CertSerial != serial {
			t.Fatalf("after the rotation: %+v, want 1 certificate, serial %s", n, serial)
		}
	})

	step("down keeping volumes, then up: data kept, agent resumes", func(t *testing.T) {
		p.composeCmd("--profile", "demo", "down", "--timeout", "5")
		if id := p.container("registration"); id != "" {
			t.Fatalf("down left the registration container")
		}
		start := time.Now()
		p.composeCmd("up", "-d")
		p.waitHealthy(3 * time.Minute)
		t.Logf("MEASURE up with existing volumes to all healthy: %v", time.Since(start).Round(10*time.Millisecond))
		if !strings.Contains(p.logs("init"), "already present") {
			t.Errorf("init did not keep the PKI:\n%s", p.logs("init"))
		}
		if n := p.getNode(nodeID); n.CertificatesIssued != 1 || n.CertSerial != serial {
			t.Fatalf("after down and up: %+v, want 1 certificate, serial %s", n, serial)
		}
		// A fresh agent container, no token this time: only the seed
		// survived, as on a stateless node.
		p.composeCmd("--profile", "demo", "up", "-d", "agent")
		r := p.waitBoot(0, 2*time.Minute)
		checkResume(t, r, "boot after down and up")
		t.Logf("MEASURE agent resume in a new container (start to result): %v",
			r.At.Sub(p.state("agent").StartedAt).Round(time.Millisecond))
	})

	step("each service restarted alone comes back; the others reconnect", func(t *testing.T) {
		hostToken := p.createToken(len(servers) + 1)
		for _, svc := range append([]string{"init"}, servers...) {
			before := p.state(svc)
			start := time.Now()
			p.composeCmd("restart", svc)
			if svc == "init" {
				p.waitHealthy(time.Minute)
				if s := p.state("init"); !s.StartedAt.After(before.StartedAt) {
					t.Fatalf("init did not run again")
				}
				if got := caHashLine.FindAllString(p.logs("init"), -1); got[len(got)-1] != p.caHash {
					t.Fatalf("init changed the CA: %s", got[len(got)-1])
				}
				continue
			}
			p.waitService(svc, 2*time.Minute)
			p.waitHealthy(2 * time.Minute)
			t.Logf("MEASURE %s restarted alone: healthy again after %v", svc, time.Since(start).Round(10*time.Millisecond))
			// registration <-> postgres, registration -> ca -> postgres:
			// a new node is signed; the demo node resumes.
			ns := p.listNodes()
			if !slices.ContainsFunc(ns, func(n node) bool { return n.ID == nodeID }) {
				t.Fatalf("after restarting %s the node list lacks %s: %+v", svc, nodeID, ns)
			}
			p.bootHostNode(hostToken)
			seen := len(p.agentResults())
			p.composeCmd("--profile", "demo", "restart", "agent")
			checkResume(t, p.waitBoot(seen, time.Minute), "boot after restarting "+svc)
		}
		if n := p.getNode(nodeID); n.CertificatesIssued != 1 || n.CertSerial != serial {
			t.Fatalf("at the end: %+v, want 1 certificate, serial %s", n, serial)
		}
		t.Logf("the demo node resumed %d times with certificate %s; certificates issued: 1", resumes, serial)
	})
}
