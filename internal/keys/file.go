package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// File names of the file source under its key directory.
const (
	IdentityKeyFile = "identity.key"
	BundleKeyFile   = "bundle.key"
)

// bundlePEMType is the PEM type of a stored bundle key. Its bytes are the
// KEM's SerializePrivateKey output (RFC 9180); the KEM-ID header names the
// KEM.
const bundlePEMType = "BERTH HPKE PRIVATE KEY"

// NewFile returns the keys kept under dir, generating each one on first use
// (files of mode 0600 in a directory of mode 0700). A key file readable by
// anyone but its owner is refused, as is a stored bundle key of a KEM other
// than kem.
func NewFile(dir string, kem hpke.KEM) (Source, error) {
	if kem == nil {
		kem = DefaultKEM()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	id, err := loadOrCreate(filepath.Join(dir, IdentityKeyFile), newIdentityPEM, parseIdentityPEM)
	if err != nil {
		return nil, err
	}
	bundle, err := loadOrCreate(filepath.Join(dir, BundleKeyFile),
		func() ([]byte, error) { return newBundlePEM(kem) },
		func(b []byte) (hpke.PrivateKey, error) { return parseBundlePEM(b, kem) })
	if err != nil {
		return nil, err
	}
	return &keyPair{id: id, bundle: bundle}, nil
}

// loadOrCreate parses the key at path, first creating it with create if it
// does not exist yet. Creation is exclusive: of two agents racing on first
// use, both end up with the key that was written first.
func loadOrCreate[K any](path string, create func() ([]byte, error), parse func([]byte) (K, error)) (K, error) {
	var zero K
	b, err := readPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		pemBytes, cerr := create()
		if cerr != nil {
			return zero, fmt.Errorf("generate %s: %w", path, cerr)
		}
		if cerr := writeExclusive(path, pemBytes); cerr != nil {
			return zero, cerr
		}
		b, err = readPrivate(path)
	}
	if err != nil {
		return zero, err
	}
	k, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// readPrivate reads a key file, refusing one that others can read.
func readPrivate(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o, open to other users; chmod it 0600", path, perm)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// writeExclusive writes data to path with mode 0600 unless path exists:
// the data goes to a synced temporary file that is then linked into place,
// so path is never seen half written.
func writeExclusive(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // another agent won the race; use its key
		}
		// Some file systems (vfat on a USB stick) have no hard links.
		if err := os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Not every file system can sync a directory; the data is already safe.
	_ = d.Sync()
	return nil
}

func newIdentityPEM() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return IdentityPEM(k)
}

func parseIdentityPEM(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New(`no PEM "PRIVATE KEY" block`)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse identity key: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("identity key is not ECDSA P-256")
	}
	return ec, nil
}

func newBundlePEM(kem hpke.KEM) ([]byte, error) {
	k, err := kem.GenerateKey()
	if err != nil {
		return nil, err
	}
	raw, err := k.Bytes()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{
		Type:    bundlePEMType,
		Headers: map[string]string{"KEM-ID": fmt.Sprintf("0x%04x", kem.ID())},
		Bytes:   raw,
	}), nil
}

func parseBundlePEM(b []byte, kem hpke.KEM) (hpke.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != bundlePEMType {
		return nil, fmt.Errorf("no PEM %q block", bundlePEMType)
	}
	id, err := strconv.ParseUint(blk.Headers["KEM-ID"], 0, 16)
	if err != nil {
		return nil, fmt.Errorf("bad KEM-ID header %q", blk.Headers["KEM-ID"])
	}
	if uint16(id) != kem.ID() {
		return nil, fmt.Errorf("bundle key uses KEM 0x%04x but --bundle-kem asks for 0x%04x; remove the file to make a new key", id, kem.ID())
	}
	return kem.NewPrivateKey(blk.Bytes)
}
