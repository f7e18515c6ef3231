package bundle

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The test vectors of docs/bundle-format.md, for implementations in other
// languages: given a recipient's private key, the deployment's root, the
// node's identity key, its node ID and the version it was served, each
// sealed bundle either opens to the files, hooks and signer given, or is
// refused for the reason given. go test -run TestVectors -update-vectors
// writes them anew (deterministically, on one Go version); without it the
// test checks this package against the committed file.
var updateVectors = flag.Bool("update-vectors", false, "rewrite testdata/bundle/vectors.json")

const vectorsPath = "../../testdata/bundle/vectors.json"

type vectorFile struct {
	Description string `json:"description"`
	TrustDomain string `json:"trust_domain"`
	// RootCert is the pinned root, DER in base64.
	RootCert string `json:"root_cert"`
	// NodeIdentityKey is the node's identity public key (SPKI DER, base64),
	// which its self-signatures verify with.
	NodeIdentityKey string                     `json:"node_identity_public_key"`
	Recipients      map[string]vectorRecipient `json:"recipients"`
	Vectors         []vector                   `json:"vectors"`
}

type vectorRecipient struct {
	KEMID uint16 `json:"kem_id"`
	// IKM derives the key pair with RFC 9180 DeriveKeyPair.
	IKM        string `json:"ikm_hex"`
	PrivateKey string `json:"private_key_hex"`
	PublicKey  string `json:"public_key_hex"`
}

type vector struct {
	Name          string       `json:"name"`
	Recipient     string       `json:"recipient"`
	NodeID        string       `json:"node_id"`
	ServedVersion int64        `json:"served_version"`
	Sealed        string       `json:"sealed_base64"`
	Expect        vectorExpect `json:"expect"`
}

type vectorExpect struct {
	// Error is empty for a bundle that opens, else one of unsigned,
	// wrong_target, wrong_version, signer, signature, decrypt, format.
	Error    string        `json:"error,omitempty"`
	SignedBy string        `json:"signed_by,omitempty"`
	Files    []vectorEntry `json:"files,omitempty"`
	Hooks    []vectorHook  `json:"hooks,omitempty"`
	// Intermediate values, to check an implementation step by step.
	HPKEInfo         string `json:"hpke_info_hex,omitempty"`
	SealedPartSHA256 string `json:"sealed_part_sha256_hex,omitempty"`
	SignedMessage    string `json:"signed_message_hex,omitempty"`
	Payload          string `json:"payload_hex,omitempty"`
}

type vectorEntry struct {
	Path    string `json:"path"`
	Mode    string `json:"mode"` // octal, Unix bits
	Owner   string `json:"owner"`
	Group   string `json:"group"`
	Content string `json:"content_base64"`
}

type vectorHook struct {
	Command   []string `json:"command"`
	Paths     []string `json:"paths"`
	TimeoutMS int64    `json:"timeout_ms"`
}

var vectorErrors = map[string]error{
	"unsigned": ErrUnsigned, "wrong_target": ErrWrongTarget, "wrong_version": ErrWrongVersion,
	"signer": ErrSigner, "signature": ErrSignature, "decrypt": ErrDecrypt, "format": ErrFormat,
}

func TestVectors(t *testing.T) {
	if *updateVectors {
		writeVectors(t)
	}
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("read the test vectors: %v", err)
	}
	var vf vectorFile
	if err := json.Unmarshal(b, &vf); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	root, err := x509.ParseCertificate(unb64(t, vf.RootCert))
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(root)
	nodeKey, err := x509.ParsePKIXPublicKey(unb64(t, vf.NodeIdentityKey))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]hpke.PrivateKey{}
	for name, r := range vf.Recipients {
		kem, err := hpke.NewKEM(r.KEMID)
		if err != nil {
			t.Fatal(err)
		}
		k, err := kem.NewPrivateKey(unhex(t, r.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		derived, err := kem.DeriveKeyPair(unhex(t, r.IKM))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(k.PublicKey().Bytes()) != r.PublicKey || !bytes.Equal(derived.PublicKey().Bytes(), k.PublicKey().Bytes()) {
			t.Fatalf("recipient %s: keys do not match", name)
		}
		keys[name] = k
	}
	if len(vf.Vectors) < 10 {
		t.Fatalf("%d vectors, want the whole set", len(vf.Vectors))
	}
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			sealed := unb64(t, v.Sealed)
			got, err := Open(keys[v.Recipient], sealed, Verifier{
				TrustDomain: vf.TrustDomain, NodeID: v.NodeID, Version: v.ServedVersion, Roots: roots, NodeKey: nodeKey,
			})
			if v.Expect.Error != "" {
				if want := vectorErrors[v.Expect.Error]; want == nil || !errors.Is(err, want) || got != nil {
					t.Fatalf("Open = %v, %v; want %s", got, err, v.Expect.Error)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if d := cmp.Diff(v.Expect, expectOf(t, got, sealed, v.NodeID, vf.TrustDomain)); d != "" {
				t.Errorf("opened (-vector +got):\n%s", d)
			}
		})
	}
}

// expectOf describes an opened bundle as a vector expects it.
func expectOf(t *testing.T, o *Opened, sealed []byte, nodeID, td string) vectorExpect {
	t.Helper()
	p, err := Parse(sealed)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := encode(o.Contents)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(p.Sealed)
	e := vectorExpect{
		SignedBy:         o.SignedBy.String(),
		HPKEInfo:         hex.EncodeToString(info(p.Header, nodeID)),
		SealedPartSHA256: hex.EncodeToString(sum[:]),
		SignedMessage:    hex.EncodeToString(message(td, nodeID, o.Version, p.Sealed)),
		Payload:          hex.EncodeToString(payload),
	}
	for _, f := range o.Files {
		e.Files = append(e.Files, vectorEntry{Path: f.Path, Mode: fmt.Sprintf("%04o", unixMode(f.Mode)), Owner: f.Owner, Group: f.Group,
			Content: base64.StdEncoding.EncodeToString(f.Content)})
	}
	for _, h := range o.Hooks {
		e.Hooks = append(e.Hooks, vectorHook{Command: h.Command, Paths: h.Paths, TimeoutMS: h.Timeout.Milliseconds()})
	}
	return e
}

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeVectors makes the vectors from fixed key material and a fixed
// randomness source.
func writeVectors(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 20261205)
	const td = "berth.example"
	pki := newTestPKI(t)
	admin := signerFor(t, pki, "spiffe://"+td+"/admin/ops")
	nodeKey := newKeyP256(t)
	nodeSigner, err := NewNodeSigner(td, nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	foreign := signerFor(t, newTestPKI(t), "spiffe://"+td+"/admin/ops")
	recips := map[string]hpke.PrivateKey{}
	vf := vectorFile{
		Description: "Test vectors of berth's sealed bundle format, version 2 (docs/bundle-format.md). Each vector: open sealed_base64 " +
			"with the recipient's private key, as node node_id of trust_domain, served as served_version, trusting root_cert for admin " +
			"signers and node_identity_public_key for self-signatures; expect the files, hooks and signer given, or the error.",
		TrustDomain: td,
		RootCert:    base64.StdEncoding.EncodeToString(pki.root.Raw),
		Recipients:  map[string]vectorRecipient{},
	}
	spki, err := x509.MarshalPKIXPublicKey(nodeKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	vf.NodeIdentityKey = base64.StdEncoding.EncodeToString(spki)
	for name, kem := range map[string]hpke.KEM{"dhkem-p256": hpke.DHKEM(ecdh.P256()), "mlkem768-x25519": hpke.MLKEM768X25519()} {
		ikm := []byte("berth bundle test vector recipient " + name)
		k, err := kem.DeriveKeyPair(ikm)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		recips[name] = k
		vf.Recipients[name] = vectorRecipient{KEMID: kem.ID(), IKM: hex.EncodeToString(ikm),
			PrivateKey: hex.EncodeToString(priv), PublicKey: hex.EncodeToString(k.PublicKey().Bytes())}
	}
	const node = "n-7f3a9c"
	files := []File{
		{Path: "etc/hostname", Mode: 0o644, Content: []byte("hv01.example\n")},
		{Path: "etc/vdsm/vdsm.conf", Mode: 0o640, Owner: "vdsm", Group: "kvm", Content: []byte("[vars]\nssl = true\n")},
		{Path: "usr/local/bin/firstboot", Mode: 0o755 | fs.ModeSetgid, Owner: "0", Group: "0", Content: []byte("#!/bin/sh\nexit 0\n")},
	}
	hooks := []Hook{
		{Command: []string{"/usr/bin/systemctl", "reload-or-restart", "vdsmd"}, Paths: []string{"etc/vdsm/vdsm.conf"}, Timeout: 30 * time.Second},
		{Command: []string{"/usr/bin/hostnamectl", "set-hostname", "hv01.example"}, Paths: []string{"etc/hostname"}, Timeout: 5 * time.Second},
	}
	full := Contents{Files: files, Hooks: hooks}
	seal := func(recip, nodeID string, v int64, c Contents, s *Signer) []byte {
		k := recips[recip]
		b, err := Seal(Target{NodeID: nodeID, KEM: k.KEM().ID(), Public: k.PublicKey().Bytes(), Version: v}, c, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	add := func(name, recip string, served int64, sealed []byte, errName string) {
		vf.Vectors = append(vf.Vectors, vector{Name: name, Recipient: recip, NodeID: node, ServedVersion: served,
			Sealed: base64.StdEncoding.EncodeToString(sealed), Expect: vectorExpect{Error: errName}})
	}
	add("admin-signed, DHKEM(P-256)", "dhkem-p256", 3, seal("dhkem-p256", node, 3, full, admin), "")
	add("admin-signed, ML-KEM-768 + X25519", "mlkem768-x25519", 3, seal("mlkem768-x25519", node, 3, full, admin), "")
	add("self-signed by the node", "dhkem-p256", 1, seal("dhkem-p256", node, 1, Contents{Files: files[:1]}, nodeSigner), "")
	add("empty", "mlkem768-x25519", 7, seal("mlkem768-x25519", node, 7, Contents{}, admin), "")
	add("refused: unsigned, format version 1", "dhkem-p256", 3, sealV1(t, recips["dhkem-p256"], node, files), "unsigned")
	add("refused: signed for another node", "dhkem-p256", 3, seal("dhkem-p256", "n-other", 3, full, admin), "wrong_target")
	add("refused: an older version replayed", "dhkem-p256", 3, seal("dhkem-p256", node, 2, full, admin), "wrong_version")
	add("refused: admin of another root", "dhkem-p256", 3, seal("dhkem-p256", node, 3, full, foreign), "signer")
	nodeCert := pki.leaf(t, "spiffe://"+td+"/node/"+node, nodeKey)
	swapped := func() []byte {
		p, _ := Parse(seal("dhkem-p256", node, 3, full, admin))
		p.Signature.Chain = [][]byte{nodeCert.Raw, pki.inter.Raw}
		return append(bytes.Clone(p.Sealed), encodeSignature(p.Signature)...)
	}()
	add("refused: a node certificate as the signer", "dhkem-p256", 3, swapped, "signer")
	other, err := NewNodeSigner(td, newKeyP256(t))
	if err != nil {
		t.Fatal(err)
	}
	add("refused: self-signed by another key", "dhkem-p256", 1, seal("dhkem-p256", node, 1, full, other), "signature")
	tampered := seal("dhkem-p256", node, 3, full, admin)
	tampered[HeaderSize+70] ^= 0x01
	add("refused: one ciphertext bit flipped", "dhkem-p256", 3, tampered, "signature")
	add("refused: sealed to another key", "mlkem768-x25519", 3, seal("dhkem-p256", node, 3, full, admin), "decrypt")
	truncated := seal("dhkem-p256", node, 3, full, admin)
	add("refused: truncated", "dhkem-p256", 3, truncated[:len(truncated)-1], "format")

	// Fill in what the good ones open to, with the intermediate values.
	roots := x509.NewCertPool()
	roots.AddCert(pki.root)
	for i, v := range vf.Vectors {
		if v.Expect.Error != "" {
			continue
		}
		sealed := unb64(t, v.Sealed)
		o, err := Open(recips[v.Recipient], sealed, Verifier{TrustDomain: td, NodeID: node, Version: v.ServedVersion, Roots: roots, NodeKey: nodeKey.Public()})
		if err != nil {
			t.Fatal(err)
		}
		vf.Vectors[i].Expect = expectOf(t, o, sealed, node, td)
	}
	out, err := json.MarshalIndent(vf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(vectorsPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsPath, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// signerFor issues an admin certificate with URI uri under p and returns
// its signer.
func signerFor(t *testing.T, p *testPKI, uri string) *Signer {
	t.Helper()
	key := newKeyP256(t)
	s, err := NewAdminSigner([]*x509.Certificate{p.leaf(t, uri, key), p.inter}, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
