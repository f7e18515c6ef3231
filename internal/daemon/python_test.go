package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPythonExample runs the engine client in examples/python, Python's
// standard library only, against the REST front door: it lists the
// pending node, approves it, follows the events that recorded, and
// reports a bad node ID as the server's message with exit status 1.
// python3 is a requirement of the tests (tools/provision.sh): without it
// the test fails.
func TestPythonExample(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed for the Python example (make deps installs it): %v", err)
	}
	script, err := filepath.Abs("../../examples/python/berth_admin.py")
	if err != nil {
		t.Fatal(err)
	}
	l := newPKI(t, "")
	addr := serve(t, Config{Role: RoleAll, PKIDir: l.Dir})
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	id := registerPending(t, l, addr, newRESTClient(t, l, addr, adminCert))

	adminDir := l.RoleDir("admin")
	env := append(os.Environ(),
		"BERTH_SERVER="+addr,
		"BERTH_CA="+filepath.Join(adminDir, "ca.crt"),
		"BERTH_CERT="+filepath.Join(adminDir, "admin.crt"),
		"BERTH_KEY="+filepath.Join(adminDir, "admin.key"),
	)
	run := func(args ...string) (string, string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, append([]string{script}, args...)...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	lines := func(out string) []map[string]any {
		t.Helper()
		var objs []map[string]any
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("output line %q is not JSON: %v", sc.Text(), err)
			}
			objs = append(objs, m)
		}
		return objs
	}

	out, stderr, err := run("pending")
	if got := lines(out); err != nil || len(got) != 1 || got[0]["id"] != id || got[0]["hostname"] != "rest-node" {
		t.Fatalf("pending: %v, %q, stderr %q; want node %s", err, out, stderr, id)
	}
	out, stderr, err = run("approve", id)
	if got := lines(out); err != nil || len(got) != 1 || got[0]["status"] != "NODE_STATUS_APPROVED" {
		t.Fatalf("approve: %v, %q, stderr %q", err, out, stderr)
	}
	out, stderr, err = run("events", "--after", "0", "--count", "3")
	got := lines(out)
	if err != nil || len(got) != 3 || got[0]["type"] != "token_created" || got[0]["actor"] != "admin:admin" ||
		got[1]["type"] != "registered" || got[2]["type"] != "approved" || got[2]["node_id"] != id || got[2]["actor"] != "admin:admin" {
		t.Fatalf("events: %v, %q, stderr %q; want the token created, the node registered, then approved, by admin:admin", err, out, stderr)
	}
	// Following from the last cursor: the next event arrives live.
	after := int(got[2]["cursor"].(float64))
	type result struct {
		out, stderr string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		o, e, err := run("events", "--after", strconv.Itoa(after), "--count", "1")
		done <- result{o, e, err}
	}()
	code, body := newRESTClient(t, l, addr, adminCert).do(t, "POST", "/v1/nodes/"+id+":revoke", `{"reason": "python test"}`)
	if code != 200 {
		t.Fatalf("revoke: %d %v", code, body)
	}
	r := <-done
	if got := lines(r.out); r.err != nil || len(got) != 1 || got[0]["type"] != "revoked" {
		t.Fatalf("following events: %v, %q, stderr %q; want the revocation", r.err, r.out, r.stderr)
	}

	out, stderr, err = run("approve", "Not_A_Node")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || out != "" || !strings.Contains(stderr, "id must match") || !strings.Contains(stderr, "HTTP 400") {
		t.Errorf("approve of a bad ID: %v, stdout %q, stderr %q; want exit 1 with the server's message", err, out, stderr)
	}
}
