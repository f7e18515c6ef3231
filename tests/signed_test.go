package tests

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/store/bundlestore"
)

// TestForgedBundlesRefused is an attacker who can write the bundle store's
// database, and nothing else: rows written straight into it, bypassing the
// bundles service and its checks. The node refuses every one of them on
// its next boot, says why, and keeps the files it had; then the engine's
// next genuine bundle applies again.
func TestForgedBundlesRefused(t *testing.T) {
	d := startDev(t)
	a := newMachine(t, "hv-31", "4c4c4544-0042-3510-8051-b2c04f4e4d31")
	b := newMachine(t, "hv-32", "4c4c4544-0042-3510-8051-b2c04f4e4d32")
	token := createToken(t, d, "--auto-approve", "--uses", "2")
	first, _, err := a.boot(t, d, token)
	if err != nil {
		t.Fatal(err)
	}
	firstB, _, err := b.boot(t, d, token)
	if err != nil {
		t.Fatal(err)
	}
	nodeA, nodeB := first.NodeID, firstB.NodeID

	// The engine's genuine bundles, one for each node.
	src := t.TempDir()
	conf := filepath.Join(src, "node.conf")
	if err := os.WriteFile(conf, []byte("role=compute\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	putFile := func(node string) int64 {
		var info struct {
			Version  int64  `json:"version"`
			SignedBy string `json:"signed_by"`
		}
		mustJSON(t, mustRun(t, d.env, "berthctl", "bundles", "put", node, "--file", conf+"=etc/berth/node.conf", "-o", "json"), &info)
		if !strings.HasSuffix(info.SignedBy, "/admin/admin") || !strings.HasPrefix(info.SignedBy, "spiffe://") {
			t.Fatalf("bundles put signed_by = %q", info.SignedBy)
		}
		return info.Version
	}
	putFile(nodeA)
	putFile(nodeB)

	// The node's state: the genuine bundle applied under its root.
	root := t.TempDir()
	if _, stderr, err := bootInto(t, d, a, root); err != nil {
		t.Fatalf("boot with the genuine bundle: %v: %s", err, stderr)
	}
	before := readTree(t, root)
	if string(before["etc/berth/node.conf"]) != "role=compute\n" {
		t.Fatalf("root after the genuine bundle = %v", before)
	}

	ctx := context.Background()
	store, err := bundlestore.Open(ctx, db.SQLite, filepath.Join(d.dataDir, "bundles.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	current := func(node string) bundlestore.Bundle {
		cur, err := store.Get(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	genuineA, genuineB := current(nodeA), current(nodeB)
	// What the attacker can make: the node's bundle public key and trust
	// domain are no secret, so it seals real ciphertext to the node and
	// signs it with keys of its own.
	var nodeKey struct {
		BundleKey struct {
			KEMID     uint32 `json:"kem_id"`
			PublicKey string `json:"public_key"`
		} `json:"bundle_key"`
	}
	mustJSON(t, mustRun(t, d.env, "berthctl", "nodes", "get", nodeA, "-o", "json"), &nodeKey)
	pub, err := base64.StdEncoding.DecodeString(nodeKey.BundleKey.PublicKey)
	if err != nil || len(pub) == 0 {
		t.Fatalf("nodes get shows no bundle key: %+v", nodeKey)
	}
	// writeRow is the attacker's write: the next version, marked approved
	// and authored by the admin, whatever it holds.
	writeRow := func(sealed []byte) int64 {
		t.Helper()
		stored, err := store.Put(ctx, nodeA, current(nodeA).Version, bundlestore.Bundle{
			Meta:   bundlestore.Meta{Digest: bundle.Digest(sealed), KEMID: uint16(nodeKey.BundleKey.KEMID), Author: "admin:admin", CreatedAt: time.Now()},
			Sealed: sealed,
		}, bundlestore.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return stored.Version
	}

	td := trustDomainOf(t, first.certDir)
	evil := bundle.Contents{Files: []bundle.File{{Path: "root/.ssh/authorized_keys", Mode: 0o600, Content: []byte("ssh-ed25519 AAAA attacker\n")}}}
	sealAs := func(s *bundle.Signer, node string, v int64) []byte {
		sealed, err := bundle.Seal(bundle.Target{NodeID: node, KEM: uint16(nodeKey.BundleKey.KEMID), Public: pub, Version: v}, evil, s)
		if err != nil {
			t.Fatal(err)
		}
		return sealed
	}
	next := func() int64 { return current(nodeA).Version + 1 }

	tests := []struct {
		name   string
		sealed func() []byte
		want   string
	}{
		{"signed by an admin of the attacker's own CA", func() []byte { return sealAs(forgedAdmin(t, td), nodeA, next()) },
			"does not chain to the pinned root"},
		{"self-signed with a key that is not the node's", func() []byte {
			s, err := bundle.NewNodeSigner(td, newP256(t))
			if err != nil {
				t.Fatal(err)
			}
			return sealAs(s, nodeA, next())
		}, "a node self-signature that this node's identity key did not make"},
		{"unsigned, format version 1", func() []byte {
			p, err := bundle.Parse(sealAs(forgedAdmin(t, td), nodeA, next()))
			if err != nil {
				t.Fatal(err)
			}
			v1 := append([]byte(bundle.Magic), bundle.VersionUnsigned)
			v1 = append(v1, p.Sealed[9:15]...)
			return append(v1, p.Sealed[bundle.HeaderSize:]...)
		}, "bundle is unsigned (format version 1); re-put it"},
		{"the engine's genuine bundle for another node", func() []byte { return genuineB.Sealed },
			"bundle is signed for another node: signed for node " + nodeB + ", not " + nodeA},
		{"the engine's genuine bundle for this node, replayed as a newer version", func() []byte { return genuineA.Sealed },
			"bundle is signed for another version: signed for version 1, served as version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := writeRow(tt.sealed())
			// The row is written behind berthd's back, so Resume's bundle
			// cache learns of it only at its watch's next poll of the log
			// (eventlog.DefaultPollPeriod); until then a boot gets the
			// version it had before: the genuine one, or the previous case's
			// forgery, refused again.
			refusal := "bundle version " + itoa(v) + " refused"
			var stderr string
			for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr, refusal); {
				if time.Now().After(deadline) {
					t.Fatalf("no boot was served version %d within 30s; last: %s", v, stderr)
				}
				out, serr, err := bootInto(t, d, a, root)
				if err == nil && (out.BundleVersion == nil || *out.BundleVersion >= v) {
					t.Fatalf("the node applied the forged bundle: %+v", out)
				}
				stderr = serr
			}
			if !strings.Contains(stderr, "bundle version "+itoa(v)+" refused, nothing applied (the node's files are as they were)") ||
				!strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want the refusal of version %d and %q", stderr, v, tt.want)
			}
			if after := readTree(t, root); !equalTrees(before, after) {
				t.Errorf("the node's files changed: %v, want %v", after, before)
			}
		})
	}
	// The engine still sees who signed what is current: the replay.
	var got struct {
		Current struct {
			SignedBy string `json:"signed_by"`
		} `json:"current"`
	}
	mustJSON(t, mustRun(t, d.env, "berthctl", "bundles", "get", nodeA, "-o", "json"), &got)
	if !strings.HasSuffix(got.Current.SignedBy, "/admin/admin") {
		t.Errorf("bundles get signed_by = %q", got.Current.SignedBy)
	}
	// The engine's next genuine bundle applies again.
	v := putFile(nodeA)
	r, stderr, err := bootInto(t, d, a, root)
	if err != nil || r.BundleVersion == nil || *r.BundleVersion != v {
		t.Fatalf("boot after the engine's new bundle = %+v, %v: %s", r, err, stderr)
	}
}

// bootInto boots m with root as its --root, which keeps what earlier boots
// wrote, and returns the JSON result and stderr.
func bootInto(t *testing.T, d deployment, m machine, root string) (agentResult, string, error) {
	t.Helper()
	certDir := filepath.Join(t.TempDir(), "run-berth")
	args := []string{"--identity", "seed", "--seed-file", m.seedFile, "--hardware-uuid", m.uuid,
		"--hostname", m.hostname, "--cert-dir", certDir, "--root", root,
		"--cmdline", os.DevNull, "--wait", "60s", "--once", "--output", "json", "--log-level", "error"}
	out, err := run(t, d.env, "berth-agent", args...)
	var r agentResult
	if err == nil {
		mustJSON(t, out, &r)
	}
	// On failure run's error holds stderr.
	if err != nil {
		return r, err.Error(), err
	}
	return r, out, nil
}

func itoa(v int64) string { return big.NewInt(v).String() }

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalTrees(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// trustDomainOf reads the trust domain from the node certificate a boot
// wrote.
func trustDomainOf(t *testing.T, certDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(certDir, "node.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(blk.Bytes)
		if err == nil && len(c.URIs) == 1 {
			return c.URIs[0].Host
		}
	}
	t.Fatal("no node certificate with a SPIFFE ID")
	return ""
}

func newP256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// forgedAdmin is an admin signer of a CA the attacker made, with the
// deployment's trust domain in its certificate.
func forgedAdmin(t *testing.T, td string) *bundle.Signer {
	t.Helper()
	rootKey, key := newP256(t), newP256(t)
	now := time.Now()
	mk := func(tmpl *x509.Certificate, parent *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	root := mk(&x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, rootKey.Public())
	leaf := mk(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "admin"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		URIs: []*url.URL{mtls.AdminURI(td, "admin")}}, root, key.Public())
	s, err := bundle.NewAdminSigner([]*x509.Certificate{leaf, root}, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
