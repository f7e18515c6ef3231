package agent

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/bundle"
)

// BenchmarkBootFiles is what a boot writes once it has its answer: the
// credentials into the cert directory and a bundle of the storm's shape
// (two files in two directories) under the root, both into fresh
// directories as on a stateless node. On tmpfs (/dev/shm, as berth-loadgen
// uses) it measures the system calls, not a disk.
func BenchmarkBootFiles(b *testing.B) {
	base := os.Getenv("BERTH_BENCH_DIR")
	if base == "" {
		base = b.TempDir()
	}
	p := newPKI(b)
	key := newKey(b)
	var chain []*x509.Certificate
	for _, der := range p.issue(b, key.Public(), nodeID, time.Now(), time.Hour) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			b.Fatal(err)
		}
		chain = append(chain, c)
	}
	creds := &Credentials{NodeID: nodeID, Chain: chain, Trust: []*x509.Certificate{p.root}}
	files := []bundle.File{
		{Path: "etc/hostname", Mode: 0o644, Content: []byte("node-1\n")},
		{Path: "etc/berth-loadgen/node.conf", Mode: 0o600, Content: []byte("index=1\nhostname=node-1\n")},
	}
	work, err := os.MkdirTemp(base, "boot-files-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(work) })
	i := 0
	for b.Loop() {
		i++
		dir := filepath.Join(work, "n"+strconv.Itoa(i))
		root := filepath.Join(dir, "root")
		if err := os.MkdirAll(root, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := WriteCredentials(filepath.Join(dir, "run"), creds, key); err != nil {
			b.Fatal(err)
		}
		if err := newApplier(root, nil).apply(files); err != nil {
			b.Fatal(err)
		}
	}
}
