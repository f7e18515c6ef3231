package cli_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/cli"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// writeFile writes content to name in a new directory and returns its path.
func writeFile(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyFile writes a node's bundle public key as --key-file takes it.
func keyFile(t *testing.T, n *berthv1.Node) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"kem_id": n.GetBundleKey().GetKemId(), "public_key": base64.StdEncoding.EncodeToString(n.GetBundleKey().GetPublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "key.json", b)
}

func TestBundlesSeal(t *testing.T) {
	pki := newTestPKI(t)
	key := nodeKey(t)
	node := keyedNode(key)
	src := writeTree(t, sampleFiles())
	hooks := writeFile(t, "hooks.json", []byte(`[{"command": ["/usr/bin/systemctl", "reload-or-restart", "vdsmd"], "paths": ["etc/hostname"], "timeout": "30s"}]`))
	files := []string{"--file", filepath.Join(src, "etc/hostname") + "=etc/hostname"}
	for _, tc := range []struct {
		name      string
		args      []string
		version   int64
		wantCalls []proto.Message // to the bundles service
		wantNode  bool            // the key was asked of the registration service
	}{
		{"offline: key file and version", append([]string{"--key-file", keyFile(t, node), "--version", "9"}, files...), 9, nil, false},
		{"next version from the server", append([]string{"--key-file", keyFile(t, node)}, files...), 4,
			[]proto.Message{&berthv1.ListBundleHistoryRequest{NodeId: bundleNodeID}}, false},
		{"key from the server", append([]string{"--version", "2"}, files...), 2, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin, bundles := bundleFakes(node, currentV3())
			r := startAll(t, pki, admin, bundles).run(append([]string{"bundles", "seal", "--node", bundleNodeID, "--hooks", hooks}, tc.args...)...)
			checkOK(t, r)
			opened := nodeOpens(t, pki, key, tc.version, []byte(r.stdout))
			if d := cmp.Diff(sampleFiles()[1:2], opened.Files); d != "" {
				t.Errorf("files (-want +got):\n%s", d)
			}
			wantHooks := []bundle.Hook{{Command: []string{"/usr/bin/systemctl", "reload-or-restart", "vdsmd"}, Paths: []string{"etc/hostname"}, Timeout: 30 * time.Second}}
			if d := cmp.Diff(wantHooks, opened.Hooks); d != "" {
				t.Errorf("hooks (-want +got):\n%s", d)
			}
			checkRequests(t, bundles, tc.wantCalls...)
			if tc.wantNode {
				checkRequests(t, admin, &berthv1.GetNodeRequest{Id: bundleNodeID})
			} else {
				checkRequests(t, admin)
			}
		})
	}
}

// TestBundlesPutSealed seals with bundles seal, then uploads the file as it
// is with bundles put --sealed.
func TestBundlesPutSealed(t *testing.T) {
	pki := newTestPKI(t)
	key := nodeKey(t)
	node := keyedNode(key)
	src := writeTree(t, sampleFiles())
	admin, bundles := bundleFakes(node, currentV3())
	h := startAll(t, pki, admin, bundles)
	r := h.run("bundles", "seal", "--node", bundleNodeID, "--dir", src)
	checkOK(t, r)
	sealed := writeFile(t, "bundle.bin", []byte(r.stdout))
	bundles.reset()
	r = h.run("bundles", "put", bundleNodeID, "--sealed", sealed, "-o", "json")
	checkOK(t, r)
	checkRequests(t, bundles, &berthv1.ListBundleHistoryRequest{NodeId: bundleNodeID},
		&berthv1.BundleAdminServicePutBundleRequest{NodeId: bundleNodeID, ExpectedVersion: 3, Sealed: []byte(r0(t, sealed))})
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out["version"] != float64(4) || out["signed_by"] != "spiffe://"+trustDomain+"/admin/admin" {
		t.Errorf("output = %v", out)
	}
	if _, ok := out["files"]; ok {
		t.Error("put --sealed claims to know how many files it uploaded")
	}
	// --expected-version still applies.
	bundles.reset()
	checkOK(t, h.run("bundles", "put", bundleNodeID, "--sealed", sealed, "--expected-version", "3"))
	checkRequests(t, bundles, &berthv1.BundleAdminServicePutBundleRequest{NodeId: bundleNodeID, ExpectedVersion: 3, Sealed: []byte(r0(t, sealed))})
}

func r0(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBundlesSealUsageErrors(t *testing.T) {
	pki := newTestPKI(t)
	key := nodeKey(t)
	node := keyedNode(key)
	src := writeTree(t, sampleFiles())
	file := filepath.Join(src, "etc/hostname") + "=etc/hostname"
	admin, bundles := bundleFakes(node, currentV3())
	h := startAll(t, pki, admin, bundles)
	good := h.run("bundles", "seal", "--node", bundleNodeID, "--file", file)
	checkOK(t, good)
	p, err := bundle.Parse([]byte(good.stdout))
	if err != nil {
		t.Fatal(err)
	}
	forOther := writeFile(t, "other.bin", func() []byte {
		s := *p.Signature
		s.NodeID = "n-other"
		return append(bytes.Clone(p.Sealed), s.Encode()...)
	}())
	v1 := func() string {
		b := append(append([]byte(bundle.Magic), bundle.VersionUnsigned), p.Sealed[9:15]...)
		return writeFile(t, "v1.bin", append(b, p.Sealed[bundle.HeaderSize:]...))
	}()
	garbage := writeFile(t, "garbage.bin", []byte("#cloud-config\n"))
	sealedGood := writeFile(t, "good.bin", []byte(good.stdout))
	badKey := writeFile(t, "key.json", []byte(`{"kem_id": 25722, "public_key": "not base64!"}`))
	badHooks := writeFile(t, "hooks.json", []byte(`[{"command": ["systemctl", "reload", "x"], "paths": ["etc/hostname"], "timeout": "30s"}]`))
	hookForMissing := writeFile(t, "hooks2.json", []byte(`[{"command": ["/bin/true"], "paths": ["etc/other"], "timeout": "1s"}]`))
	hookBadTimeout := writeFile(t, "hooks3.json", []byte(`[{"command": ["/bin/true"], "paths": ["etc/hostname"], "timeout": "soon"}]`))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"seal without --node", []string{"bundles", "seal", "--file", file}, "bundles seal: missing --node NODE_ID"},
		{"seal with a bad node ID", []string{"bundles", "seal", "--node", "N_1", "--file", file}, `bundles seal: invalid --node "N_1"`},
		{"seal with an argument", []string{"bundles", "seal", "--node", bundleNodeID, "--file", file, "extra"}, `bundles seal: unexpected argument "extra"`},
		{"seal without files", []string{"bundles", "seal", "--node", bundleNodeID}, "bundles seal: missing files"},
		{"seal with version 0", []string{"bundles", "seal", "--node", bundleNodeID, "--file", file, "--version", "0"}, "want a positive version number"},
		{"seal with a bad key file", []string{"bundles", "seal", "--node", bundleNodeID, "--file", file, "--key-file", badKey}, "public_key is not base64"},
		{"seal with a relative hook program", []string{"bundles", "seal", "--node", bundleNodeID, "--file", file, "--hooks", badHooks}, "is not an absolute, clean path"},
		{"seal with a hook for a file not in the bundle", []string{"bundles", "seal", "--node", bundleNodeID, "--file", file, "--hooks", hookForMissing}, `covers "etc/other", which is not a file of the bundle`},
		{"seal with a hook timeout that is no duration", []string{"bundles", "seal", "--node", bundleNodeID, "--file", file, "--hooks", hookBadTimeout}, `timeout "soon" is not a Go duration`},
		{"put --sealed and --file", []string{"bundles", "put", bundleNodeID, "--sealed", sealedGood, "--file", file}, "give --sealed or files"},
		{"put --sealed for another node", []string{"bundles", "put", bundleNodeID, "--sealed", forOther}, "is for node n-other, not " + bundleNodeID},
		{"put --sealed unsigned", []string{"bundles", "put", bundleNodeID, "--sealed", v1}, "bundle is unsigned (format version 1)"},
		{"put --sealed garbage", []string{"bundles", "put", bundleNodeID, "--sealed", garbage}, "not a berth bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundles.reset()
			admin.reset()
			r := h.run(tc.args...)
			if r.code != cli.ExitUsage || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and %q", r.code, r.stdout, r.stderr, tc.want)
			}
			if got := append(bundles.received(), admin.received()...); len(got) != 0 {
				t.Errorf("calls were made: %v", got)
			}
		})
	}
}

// TestBundlesSealNeedsAnAdmin: only an admin credential signs bundles.
func TestBundlesSealNeedsAnAdmin(t *testing.T) {
	pki := newTestPKI(t)
	key := nodeKey(t)
	admin, bundles := bundleFakes(keyedNode(key), currentV3())
	h := startAll(t, pki, admin, bundles)
	h.env["BERTH_CERT"], h.env["BERTH_KEY"] = pki.nodeCert, pki.nodeKey
	src := writeTree(t, sampleFiles())
	r := h.run("bundles", "seal", "--node", bundleNodeID, "--dir", src, "--version", "1", "--key-file", keyFile(t, keyedNode(key)))
	if r.code != cli.ExitError || !strings.Contains(r.stderr, "cannot sign bundles with the certificate from BERTH_CERT") ||
		!strings.Contains(r.stderr, "is not an admin identity") || r.stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
