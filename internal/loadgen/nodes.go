package loadgen

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
)

// The HKDF labels of the simulated nodes. Changing any of them gives every
// run seed a new fleet, so they carry a version.
const (
	nodeSalt   = "berth-loadgen v1"
	infoSeed   = "berth-loadgen/v1 node seed "
	infoUUID   = "berth-loadgen/v1 hardware uuid "
	infoMAC    = "berth-loadgen/v1 mac "
	labelKey   = "berth-loadgen"
	hostFormat = "load-%06d"
)

// fleet is the N simulated nodes of a run seed: node i is the same machine,
// with the same keys, on every run with that seed.
type fleet struct {
	prk []byte
	// tag identifies the seed without revealing it: the value of the
	// berth-loadgen label on the nodes, and part of their boot IDs.
	tag string
}

func newFleet(seed string) (*fleet, error) {
	if seed == "" {
		return nil, fmt.Errorf("--seed must not be empty")
	}
	prk, err := hkdf.Extract(sha256.New, []byte(seed), []byte(nodeSalt))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte("berth-loadgen tag " + seed))
	return &fleet{prk: prk, tag: hex.EncodeToString(sum[:6])}, nil
}

func (f *fleet) expand(info string, i, n int) []byte {
	b, err := hkdf.Expand(sha256.New, f.prk, info+strconv.Itoa(i), n)
	if err != nil {
		panic(err) // only for lengths HKDF-SHA256 cannot produce
	}
	return b
}

// node is one simulated machine.
type node struct {
	index    int
	hostname string
	uuid     string
	mac      string
	seed     []byte
	// keyHash is the hex SHA-256 of the identity key's SPKI, as the
	// registration service lists it; set by fingerprint.
	keyHash string
	// id is the server's node ID, once known.
	id string
	// dir holds the node's cert dir and root, under the run's directory.
	dir string
}

func (f *fleet) node(i int, runDir string) *node {
	u := f.expand(infoUUID, i, 16)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u)
	mac := f.expand(infoMAC, i, 6)
	mac[0] = mac[0]&0xfc | 0x02 // locally administered, unicast
	return &node{
		index:    i,
		hostname: fmt.Sprintf(hostFormat, i),
		uuid:     h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32],
		mac:      net.HardwareAddr(mac).String(),
		seed:     f.expand(infoSeed, i, keys.MinSeedSize),
		dir:      filepath.Join(runDir, fmt.Sprintf("node%06d", i)),
	}
}

// nodes returns nodes 0..n-1.
func (f *fleet) nodes(n int, runDir string) []*node {
	out := make([]*node, n)
	for i := range out {
		out[i] = f.node(i, runDir)
	}
	return out
}

// keys derives the node's identity and bundle keys, as berth-agent
// --identity seed does from a seed file.
func (n *node) keys() (keys.Source, error) {
	return keys.NewSeed(n.seed, nil)
}

// fingerprint sets keyHash.
func (n *node) fingerprint() error {
	src, err := n.keys()
	if err != nil {
		return err
	}
	defer src.Close()
	sum, err := mtls.KeyHash(src.Identity().Public())
	if err != nil {
		return err
	}
	n.keyHash = hex.EncodeToString(sum[:])
	return nil
}

func (n *node) certDir() string { return filepath.Join(n.dir, "run") }
func (n *node) root() string    { return filepath.Join(n.dir, "root") }

// prepareDirs makes the node's root, which the agent wants to exist, and
// clears what an earlier boot of this run left.
func (n *node) prepareDirs() error {
	if err := os.RemoveAll(n.dir); err != nil {
		return err
	}
	return os.MkdirAll(n.root(), 0o755)
}

// facts are the node's machine facts, so that the agent reads nothing
// from the machine the load generator runs on.
func (n *node) facts() agent.FactOverrides {
	return agent.FactOverrides{
		HardwareUUID: n.uuid,
		Hostname:     n.hostname,
		Serial:       fmt.Sprintf("LOAD%06d", n.index),
		MACs:         []string{n.mac},
	}
}

// bundleFiles is the small bundle the storm puts for each node.
func (n *node) bundleFiles() []bundle.File {
	return []bundle.File{
		{Path: "etc/hostname", Mode: 0o644, Content: []byte(n.hostname + "\n")},
		{Path: "etc/berth-loadgen/node.conf", Mode: 0o600,
			Content: fmt.Appendf(nil, "# written by berth-loadgen\nindex=%d\nhostname=%s\nhardware_uuid=%s\n", n.index, n.hostname, n.uuid)},
	}
}

// sealBundle seals the node's bundle to its own bundle key and signs it
// for version v, as the engine would.
func (n *node) sealBundle(v int64, s *bundle.Signer) ([]byte, error) {
	src, err := n.keys()
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return n.sealWith(src, v, s)
}

// sealWith is sealBundle with the node's keys already derived.
func (n *node) sealWith(src keys.Source, v int64, s *bundle.Signer) ([]byte, error) {
	kemID, pub := keys.BundlePublic(src.BundleKey())
	return bundle.Seal(bundle.Target{NodeID: n.id, KEM: kemID, Public: pub, Version: v}, bundle.Contents{Files: n.bundleFiles()}, s)
}
