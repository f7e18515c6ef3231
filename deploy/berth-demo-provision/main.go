// Command berth-demo-provision plays, for the Docker Compose demo agent, the
// part a PXE server (or a USB stick) plays for a real stateless node: it
// hands the node its per-node seed and its kernel command line.
//
//	berth-demo-provision --pki-dir /var/lib/berth/pki --node-dir /var/lib/berth/node --server registration:8443
//
// It writes NODE_DIR/seed (32 random bytes, mode 0600) once and keeps it
// on every later run, so the node keeps its identity; and it (re)writes
// NODE_DIR/cmdline with berth.server= and berth.ca_hash= (the pin of the
// root in PKI_DIR/ca.crt), which berth-agent reads with --cmdline. The
// image is FROM scratch, without a shell to do this with head and od.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// seedSize matches what berth-agent needs at least (keys.MinSeedSize).
const seedSize = 32

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "berth-demo-provision: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("berth-demo-provision", flag.ContinueOnError)
	fset.SetOutput(stderr)
	pkiDir := fset.String("pki-dir", orDefault(getenv("BERTH_PKI_DIR"), "/var/lib/berth/pki"), "PKI directory written by berthd init (env BERTH_PKI_DIR)")
	nodeDir := fset.String("node-dir", orDefault(getenv("BERTH_NODE_DIR"), "/var/lib/berth/node"), "directory to write seed and cmdline to (env BERTH_NODE_DIR)")
	server := fset.String("server", orDefault(getenv("BERTH_SERVER"), "registration:8443"), "registration address for berth.server= (env BERTH_SERVER)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fset.Arg(0))
	}
	hash, err := caHash(filepath.Join(*pkiDir, "ca.crt"))
	if err != nil {
		return err
	}
	created, err := ensureSeed(filepath.Join(*nodeDir, "seed"))
	if err != nil {
		return err
	}
	cmdline := fmt.Sprintf("berth.server=%s berth.ca_hash=%s\n", *server, hash)
	if err := writeAtomic(filepath.Join(*nodeDir, "cmdline"), []byte(cmdline), 0o644); err != nil {
		return err
	}
	state := "kept the existing seed"
	if created {
		state = "created a new seed"
	}
	fmt.Fprintf(stdout, "%s in %s; kernel command line: %s", state, *nodeDir, cmdline)
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// caHash is berth's pin of a root CA: "sha256:" and the hex SHA-256 of its
// SubjectPublicKeyInfo (as berthd init prints it).
func caHash(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read root certificate: %w (has berthd init run?)", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s holds no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", path, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// ensureSeed keeps a seed of the right size, or writes a new one.
func ensureSeed(path string) (created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) >= seedSize:
		return false, nil
	case err == nil:
		return false, fmt.Errorf("%s holds %d bytes, not a seed of at least %d; remove it to get a new one", path, len(b), seedSize)
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("read seed: %w", err)
	}
	seed := make([]byte, seedSize)
	if _, err := rand.Read(seed); err != nil {
		return false, err
	}
	return true, writeAtomic(path, seed, 0o600)
}

// writeAtomic replaces path with data, never leaving a partial file.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
