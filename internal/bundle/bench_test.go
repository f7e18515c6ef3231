package bundle

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"fmt"
	"testing"
)

// BenchmarkSignVerify is what signing adds to a bundle: one ECDSA P-256
// signature to seal (sign), and for the node the chain check and one
// verification (verify; verify-anchored with the chain checked from the
// node's verified intermediate), by signer kind. Parse is what the bundles
// service pays per upload before it verifies.
func BenchmarkSignVerify(b *testing.B) {
	f := newFixture(b, hpke.DHKEM(ecdh.P256()))
	for _, s := range []struct {
		name string
		s    *Signer
	}{{"admin", f.admin}, {"node", nodeSigner(b, f.nodeKey)}} {
		sealed := f.seal(b, "n1", 3, sampleContents(), s.s)
		p, err := Parse(sealed)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name+"/sign", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.s.sign("n1", 3, p.Sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/parse", func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse(sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/verify", func(b *testing.B) {
			v := f.verifier("n1", 3)
			for b.Loop() {
				if _, err := p.Verify(v); err != nil {
					b.Fatal(err)
				}
			}
		})
		// As a node verifies once its own chain gave it the intermediate
		// (Verifier.Anchor): one verification less for an admin signer.
		b.Run(s.name+"/verify-anchored", func(b *testing.B) {
			v := f.verifier("n1", 3)
			v.Anchor = f.pki.inter
			for b.Loop() {
				if _, err := p.Verify(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen is a node opening its bundle, verification included, by
// KEM and size.
func BenchmarkOpen(b *testing.B) {
	for _, k := range kems {
		for _, size := range []int{4 << 10, 256 << 10} {
			b.Run(fmt.Sprintf("%s/%dKiB", k.name, size>>10), func(b *testing.B) {
				f := newFixture(b, k.kem)
				content := make([]byte, size)
				rand.Read(content)
				sealed := f.seal(b, "n1", 1, filesOnly([]File{{Path: "etc/config", Mode: 0o600, Content: content}}), f.admin)
				b.SetBytes(int64(size))
				for b.Loop() {
					if _, err := f.open("n1", 1, sealed); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
