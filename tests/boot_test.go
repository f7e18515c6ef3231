package tests

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/freeport"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

// deployment is a running berth reachable the way users reach it: through
// the environment berthctl and the agent read.
type deployment struct {
	env []string // BERTH_SERVER, BERTH_CA, BERTH_CERT, BERTH_KEY, BERTH_CA_HASH
	// dataDir holds berthd dev's SQLite files; dsn is serve's PostgreSQL.
	dataDir, dsn string
	// pkiDir and caAddr are serve's credentials and CA address, for
	// processes a test adds (a front door).
	pkiDir, caAddr string
	// dev is berthd dev's process, with its log.
	dev *proc
}

// startDev runs berthd dev and reads the DIR/env file it writes.
func startDev(t testing.TB, extra ...string) deployment {
	dir := t.TempDir()
	args := append([]string{"dev", "--data-dir", dir, "--listen", freeport.Addr(t), "--metrics-listen", freeport.Addr(t)}, extra...)
	p := start(t, nil, "berthd", args...)
	envFile := filepath.Join(dir, "env")
	waitFor(t, "berthd dev to write "+envFile, 30*time.Second, func() bool {
		_, err := os.Stat(envFile)
		return err == nil
	})
	return deployment{env: readEnvFile(t, envFile), dataDir: dir, dev: p}
}

// hbFlags make heartbeats fast enough for a test to see a node go silent.
var hbFlags = []string{"--heartbeat-interval", "1s", "--heartbeat-grace", "4s"}

// startServe runs berthd init, then the CA, the bundle store, the heartbeat
// service and the registration service as separate processes sharing one
// PostgreSQL database.
func startServe(t testing.TB, extra ...string) deployment {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	mustRun(t, nil, "berthd", "init", "--dir", pkiDir)
	dsn := pgtest.NewDatabase(t)
	caAddr, regAddr, bundlesAddr, hbAddr := freeport.Addr(t), freeport.Addr(t), freeport.Addr(t), freeport.Addr(t)
	// Each service is given its own role's directory only, as a container
	// mounts only its own credentials.
	start(t, nil, "berthd", append([]string{"serve", "--role", "ca", "--listen", caAddr,
		"--metrics-listen", "", "--pki-dir", filepath.Join(pkiDir, "ca"), "--db", dsn}, extra...)...)
	// The other services take their settings from the environment, as they
	// do in containers.
	env := []string{"BERTH_DB=" + dsn, "BERTH_CA_ADDR=" + caAddr, "BERTH_METRICS_LISTEN=off"}
	roleEnv := func(role string, more ...string) []string {
		return append(append(slices.Clone(env), "BERTH_PKI_DIR="+filepath.Join(pkiDir, role)), more...)
	}
	start(t, roleEnv("bundles"), "berthd", "serve", "--role", "bundles", "--listen", bundlesAddr)
	start(t, roleEnv("heartbeat", "BERTH_BUNDLES_ADDR="+bundlesAddr), "berthd", append([]string{"serve", "--role", "heartbeat", "--listen", hbAddr}, hbFlags...)...)
	start(t, roleEnv("registration", "BERTH_BUNDLES_ADDR="+bundlesAddr, "BERTH_ADVERTISE_HEARTBEAT="+hbAddr),
		"berthd", "serve", "--role", "registration", "--listen", regAddr)
	for name, addr := range map[string]string{"CA": caAddr, "bundle store": bundlesAddr, "heartbeat": hbAddr, "registration": regAddr} {
		waitFor(t, name+" healthy", 30*time.Second, healthy(t, addr, pkiDir))
	}
	return deployment{dsn: dsn, pkiDir: pkiDir, caAddr: caAddr, env: []string{
		"BERTH_SERVER=" + regAddr,
		"BERTH_BUNDLES_SERVER=" + bundlesAddr,
		"BERTH_HEARTBEAT_SERVER=" + hbAddr,
		"BERTH_CA=" + filepath.Join(pkiDir, "admin", "ca.crt"),
		"BERTH_CERT=" + filepath.Join(pkiDir, "admin", "admin.crt"),
		"BERTH_KEY=" + filepath.Join(pkiDir, "admin", "admin.key"),
		"BERTH_CA_HASH=" + caHashOf(t, pkiDir),
	}}
}

func caHashOf(t testing.TB, pkiDir string) string {
	t.Helper()
	layout, err := pki.Load(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	return layout.CAHash()
}

// agentResult is berth-agent --once --output json, the contract.
type agentResult struct {
	NodeID        string `json:"node_id"`
	Status        string `json:"status"`
	Action        string `json:"action"`
	CertSerial    string `json:"cert_serial"`
	CertNotAfter  string `json:"cert_not_after"`
	BundleVersion *int64 `json:"bundle_version"`
	FilesApplied  *int64 `json:"files_applied"`
	// certDir and rootDir are where this boot wrote; not part of the JSON.
	certDir, rootDir string
}

// nodeJSON is berthctl nodes get -o json, the contract.
type nodeJSON struct {
	ID                 string `json:"id"`
	Status             string `json:"status"`
	Hostname           string `json:"hostname"`
	HardwareUUID       string `json:"hardware_uuid"`
	CertSerial         string `json:"cert_serial"`
	CertNotAfter       string `json:"cert_not_after"`
	CertificatesIssued *int64 `json:"certificates_issued"`
	Health             string `json:"health"`
}

// machine is a simulated stateless node: a seed (as on a USB stick or in
// per-node PXE config) and fixed hardware facts. Nothing else survives a
// reboot: every boot gets a fresh, empty --cert-dir.
type machine struct {
	seedFile, uuid, hostname string
}

func newMachine(t testing.TB, hostname, uuid string) machine {
	seed := make([]byte, 32)
	rand.Read(seed)
	f := filepath.Join(t.TempDir(), "seed")
	if err := os.WriteFile(f, []byte(hex.EncodeToString(seed)), 0o600); err != nil {
		t.Fatal(err)
	}
	return machine{seedFile: f, uuid: uuid, hostname: hostname}
}

// boot runs the agent once on an empty state directory and an empty root
// and returns its JSON result, with the directories it wrote to.
func (m machine) boot(t testing.TB, d deployment, token string) (agentResult, string, error) {
	t.Helper()
	certDir, rootDir := filepath.Join(t.TempDir(), "run-berth"), t.TempDir()
	args := []string{"--identity", "seed", "--seed-file", m.seedFile, "--hardware-uuid", m.uuid,
		"--hostname", m.hostname, "--cert-dir", certDir, "--root", rootDir,
		"--cmdline", os.DevNull, "--wait", "60s", "--once", "--output", "json"}
	if token != "" {
		args = append(args, "--token", token)
	}
	out, err := run(t, d.env, "berth-agent", args...)
	if err != nil {
		return agentResult{}, certDir, err
	}
	r := agentResult{certDir: certDir, rootDir: rootDir}
	mustJSON(t, out, &r)
	return r, certDir, nil
}

func getNode(t *testing.T, d deployment, id string) nodeJSON {
	t.Helper()
	var n nodeJSON
	mustJSON(t, mustRun(t, d.env, "berthctl", "nodes", "get", id, "-o", "json"), &n)
	return n
}

// leafSerial reads node.crt as a local consumer would and returns the
// leaf's serial in hex; it also checks the key file's mode.
func leafSerial(t *testing.T, certDir string) string {
	t.Helper()
	for _, f := range []string{"node.crt", "node.key", "ca.crt"} {
		if _, err := os.Stat(filepath.Join(certDir, f)); err != nil {
			t.Fatalf("agent did not write %s: %v", f, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(certDir, "node.key")); st.Mode().Perm() != 0o600 {
		t.Fatalf("node.key mode %v, want 0600", st.Mode().Perm())
	}
	raw, err := os.ReadFile(filepath.Join(certDir, "node.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(raw)
	if block == nil {
		t.Fatal("node.crt holds no PEM")
	}
	if inter, _ := pem.Decode(rest); inter == nil {
		t.Fatal("node.crt holds no intermediate after the leaf")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Text(16)
}

// registerWithApproval boots a machine for the first time with a token that
// needs approval, approves it with berthctl while the agent waits, and
// returns the agent's result.
func registerWithApproval(t *testing.T, d deployment, m machine) agentResult {
	t.Helper()
	var tok struct {
		ID          string `json:"id"`
		Token       string `json:"token"`
		UsesLeft    *int   `json:"uses_left"`
		AutoApprove *bool  `json:"auto_approve"`
		ExpiresAt   string `json:"expires_at"`
	}
	mustJSON(t, mustRun(t, d.env, "berthctl", "tokens", "create", "--uses", "1", "-o", "json"), &tok)
	if tok.Token == "" || tok.UsesLeft == nil || *tok.UsesLeft != 1 || tok.AutoApprove == nil || *tok.AutoApprove || tok.ExpiresAt == "" {
		t.Fatalf("tokens create -o json = %+v", tok)
	}
	type booted struct {
		r   agentResult
		dir string
		err error
	}
	done := make(chan booted, 1)
	go func() {
		r, dir, err := m.boot(t, d, tok.Token)
		done <- booted{r, dir, err}
	}()
	var pending []nodeJSON
	waitFor(t, "the node to show up as pending", 30*time.Second, func() bool {
		out, err := run(t, d.env, "berthctl", "nodes", "list", "--status", "pending", "-o", "json")
		return err == nil && json.Unmarshal([]byte(out), &pending) == nil && len(pending) == 1
	})
	if pending[0].Hostname != m.hostname || pending[0].HardwareUUID != m.uuid || pending[0].CertSerial != "" {
		t.Fatalf("pending node = %+v", pending[0])
	}
	mustRun(t, d.env, "berthctl", "nodes", "approve", pending[0].ID)
	b := <-done
	if b.err != nil {
		t.Fatal(b.err)
	}
	if b.r.Action != "registered" || b.r.Status != "approved" || b.r.NodeID != pending[0].ID {
		t.Fatalf("first boot = %+v, want registered approved %s", b.r, pending[0].ID)
	}
	if got := leafSerial(t, b.dir); got != b.r.CertSerial {
		t.Fatalf("node.crt serial %s, agent reported %s", got, b.r.CertSerial)
	}
	return b.r
}

// TestRegisterOnceResumeEveryBoot is berth's reason to exist: register once with manual
// approval, then reboot twenty times with nothing kept but the seed. Same
// node, same certificate, one certificate ever issued.
func TestRegisterOnceResumeEveryBoot(t *testing.T) {
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
			m := newMachine(t, "hv-07.rack2.example", "4c4c4544-0042-3510-8051-b2c04f4e4d32")
			first := registerWithApproval(t, d, m)
			for i := range 20 {
				r, dir, err := m.boot(t, d, "")
				if err != nil {
					t.Fatalf("reboot %d: %v", i, err)
				}
				if r.Action != "resumed" || r.NodeID != first.NodeID || r.CertSerial != first.CertSerial || r.CertNotAfter != first.CertNotAfter {
					t.Fatalf("reboot %d = %+v, want resumed %s serial %s", i, r, first.NodeID, first.CertSerial)
				}
				if got := leafSerial(t, dir); got != first.CertSerial {
					t.Fatalf("reboot %d wrote certificate %s, want %s", i, got, first.CertSerial)
				}
			}
			n := getNode(t, d, first.NodeID)
			if n.CertificatesIssued == nil || *n.CertificatesIssued != 1 || n.Status != "approved" || n.CertSerial != first.CertSerial {
				t.Fatalf("after 20 reboots node = %+v, want one certificate issued", n)
			}
		})
	}
}

// TestExpiredWhileOff: a node powered off past its certificate's expiry
// comes back as the same node with a renewed certificate. Certificates live
// one minute here (the CA's minimum), so this test waits for real expiry.
func TestExpiredWhileOff(t *testing.T) {
	t.Parallel()
	d := startDev(t, "--cert-lifetime", "1m")
	m := newMachine(t, "edge-12", "00000000-0000-4000-8000-000000000012")
	tok := createToken(t, d, "--auto-approve")
	first, _, err := m.boot(t, d, tok)
	if err != nil {
		t.Fatal(err)
	}
	notAfter, err := time.Parse(time.RFC3339, first.CertNotAfter)
	if err != nil {
		t.Fatalf("cert_not_after %q: %v", first.CertNotAfter, err)
	}
	waitFor(t, "the certificate to expire", 2*time.Minute, func() bool { return time.Now().After(notAfter.Add(time.Second)) })
	again, _, err := m.boot(t, d, "")
	if err != nil {
		t.Fatal(err)
	}
	renewedUntil, _ := time.Parse(time.RFC3339, again.CertNotAfter)
	if again.NodeID != first.NodeID || again.Action != "resumed" || again.CertSerial == first.CertSerial || !renewedUntil.After(time.Now()) {
		t.Fatalf("after expiry: %+v (first %+v)", again, first)
	}
	if n := getNode(t, d, first.NodeID); n.CertificatesIssued == nil || *n.CertificatesIssued != 2 {
		t.Fatalf("node after renewal = %+v, want 2 certificates issued", n)
	}
}

func createToken(t testing.TB, d deployment, flags ...string) string {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	mustJSON(t, mustRun(t, d.env, "berthctl", append(append([]string{"tokens", "create"}, flags...), "-o", "json")...), &tok)
	return tok.Token
}
