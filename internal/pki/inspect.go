package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.step.sm/crypto/pemutil"

	"github.com/berth-dev/berth/internal/mtls"
)

// Kinds of what Inspect finds.
const (
	FoundCertificate = "certificate"
	FoundPrivateKey  = "private_key"
	FoundUnreadable  = "unreadable"
)

// Found is a certificate or private key that Inspect found in a file, or a
// file it could not read.
type Found struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
	// Identity is the certificate's berth URIs, comma-separated; for a key,
	// those of the certificate with the same public key.
	Identity string `json:"identity,omitempty"`
	// CA is "root" or "intermediate" for a CA certificate or its key.
	CA string `json:"ca,omitempty"`
	// Subject is the certificate's subject.
	Subject string `json:"subject,omitempty"`
	// Matched is false for a key of no certificate Inspect found.
	Matched bool   `json:"matched"`
	Error   string `json:"error,omitempty"`
}

// maxInspectSize bounds the files Inspect reads: keys and certificates
// are a few KiB, binaries are skipped.
const maxInspectSize = 1 << 20

// skipDirs are not walked when Inspect is given /: kernel interfaces.
var skipDirs = []string{"/proc", "/sys", "/dev"}

// Inspect walks paths (files or directories) and reports every private
// key and every berth certificate it can read (one with a spiffe:// URI,
// or a CA that issued one or whose key it found; not the system's trust
// store), and every file it cannot read. Keys are matched with the
// certificates found anywhere in the walk, so that a root key is known as
// one wherever the trust bundle is. It answers what a process running
// with the same user and mounts could get hold of.
func Inspect(paths []string) ([]Found, error) {
	type keyAt struct {
		path string
		pub  crypto.PublicKey
	}
	type certAt struct {
		path string
		cert *x509.Certificate
	}
	var (
		out   []Found
		keys  []keyAt
		certs []certAt
	)
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrPermission) {
					out = append(out, Found{Path: p, Kind: FoundUnreadable, Error: err.Error()})
					return nil
				}
				return err
			}
			if d.IsDir() {
				if p != root && slices.Contains(skipDirs, p) {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			if fi, err := d.Info(); err != nil || fi.Size() > maxInspectSize {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				out = append(out, Found{Path: p, Kind: FoundUnreadable, Error: err.Error()})
				return nil
			}
			for rest := b; ; {
				var block *pem.Block
				if block, rest = pem.Decode(rest); block == nil {
					break
				}
				switch {
				case block.Type == "CERTIFICATE":
					c, err := x509.ParseCertificate(block.Bytes)
					if err != nil {
						continue
					}
					certs = append(certs, certAt{p, c})
				case strings.HasSuffix(block.Type, "PRIVATE KEY"):
					k, err := pemutil.ParseKey(pem.EncodeToMemory(block))
					s, ok := k.(crypto.Signer)
					if err != nil || !ok {
						out = append(out, Found{Path: p, Kind: FoundPrivateKey, Error: "cannot parse the key"})
						continue
					}
					keys = append(keys, keyAt{p, s.Public()})
				}
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("inspect %s: %w", root, err)
		}
	}
	// The CAs worth reporting: those with a key here, and those that
	// issued a berth identity or such a CA, found in two rounds.
	berth := map[*x509.Certificate]bool{}
	for _, c := range certs {
		berth[c.cert] = strings.Contains(describe(c.cert).Identity, "spiffe://") ||
			slices.ContainsFunc(keys, func(k keyAt) bool { return mtls.SameKey(k.pub, c.cert.PublicKey) })
	}
	for range 2 {
		for _, c := range certs {
			if berth[c.cert] {
				continue
			}
			berth[c.cert] = c.cert.IsCA && slices.ContainsFunc(certs, func(o certAt) bool {
				return berth[o.cert] && o.cert != c.cert && o.cert.CheckSignatureFrom(c.cert) == nil
			})
		}
	}
	for _, c := range certs {
		if berth[c.cert] {
			f := describe(c.cert)
			f.Path = c.path
			out = append(out, f)
		}
	}
	for _, k := range keys {
		f := Found{Path: k.path, Kind: FoundPrivateKey}
		for _, c := range certs {
			if mtls.SameKey(k.pub, c.cert.PublicKey) {
				d := describe(c.cert)
				f.Identity, f.CA, f.Subject, f.Matched = d.Identity, d.CA, d.Subject, true
				break
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// describe says what a certificate is.
func describe(c *x509.Certificate) Found {
	f := Found{Kind: FoundCertificate, Subject: c.Subject.String(), Matched: true}
	var uris []string
	for _, u := range c.URIs {
		uris = append(uris, u.String())
	}
	f.Identity = strings.Join(uris, ",")
	if c.IsCA {
		f.CA = "intermediate"
		if c.CheckSignatureFrom(c) == nil {
			f.CA = "root"
		}
	}
	return f
}
