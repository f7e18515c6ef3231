package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/mtls"
)

// Why Init migrates rather than refusing the old layout: its service
// certificates already carry only their own identity, so moving the files
// into role directories keeps every key, certificate and the CA hash that
// nodes pin; only the front door's certificate is new. Files are copied
// first and the old ones removed last, so a migration that stopped half
// way is finished by running init again.

// oldServices are the services the old layout had certificates for.
func oldServices() []string {
	return []string{ServiceRegistration, ServiceCA, ServiceBundles, ServiceHeartbeat}
}

// oldFiles lists every file of a complete PKI in the old layout.
func oldFiles() []string {
	files := append(topFiles(), oldLayoutFiles()...)
	for _, s := range oldServices() {
		files = append(files, filepath.Join(oldServicesDir, s+".crt"), filepath.Join(oldServicesDir, s+".key"))
	}
	return files
}

// move is one file of the old layout and where the new one keeps it.
type move struct{ from, to string }

// moves lists where the new layout keeps each file of the old one, in the
// order removeOld removes them: root.key and services/ last, by which
// isOldLayout still knows a migration that stopped while removing. ca.crt
// and trust-domain stay at the top and are also copied into every role
// directory.
func moves() []move {
	m := []move{
		{IntermediateCertFile, filepath.Join(ServiceCA, IntermediateCertFile)},
		{IntermediateKeyFile, filepath.Join(ServiceCA, IntermediateKeyFile)},
		{AdminCertFile, filepath.Join(RoleAdmin, AdminCertFile)},
		{AdminKeyFile, filepath.Join(RoleAdmin, AdminKeyFile)},
		{RootKeyFile, filepath.Join(RootDir, RootKeyFile)},
	}
	for _, s := range oldServices() {
		m = append(m,
			move{filepath.Join(oldServicesDir, s+".crt"), filepath.Join(s, ServiceCertFile)},
			move{filepath.Join(oldServicesDir, s+".key"), filepath.Join(s, ServiceKeyFile)})
	}
	return m
}

// migrate moves a PKI of the old layout in dir into role directories.
func migrate(dir, wantTD string, now time.Time) (*Layout, error) {
	if len(missingIn(dir, layoutFiles())) == 0 {
		// Copied before; only old files are left to remove.
		if err := removeOld(dir); err != nil {
			return nil, err
		}
		l, err := loadExisting(dir, wantTD)
		if err != nil {
			return nil, err
		}
		l.Existing, l.Migrated = false, true
		return l, nil
	}
	if missing := missingIn(dir, oldFiles()); len(missing) > 0 {
		return nil, fmt.Errorf("migrate PKI in %s: %w: it holds part of the old single-directory layout, missing %s",
			dir, ErrIncomplete, strings.Join(missing, ", "))
	}
	td, root, err := readTrust(dir)
	if err != nil {
		return nil, fmt.Errorf("migrate PKI: %w", err)
	}
	if wantTD != "" && wantTD != td {
		return nil, fmt.Errorf("init PKI: %s already holds a PKI for trust domain %q, not %q", dir, td, wantTD)
	}
	// The old intermediate and its key, to issue the front door's
	// certificate, which the old layout did not have.
	inter, err := readCert(filepath.Join(dir, IntermediateCertFile))
	if err != nil {
		return nil, err
	}
	if !inter.IsCA || inter.CheckSignatureFrom(root) != nil {
		return nil, fmt.Errorf("migrate PKI: %s is not a CA certificate signed by the root", filepath.Join(dir, IntermediateCertFile))
	}
	key, err := readSigner(filepath.Join(dir, IntermediateKeyFile))
	if err != nil {
		return nil, err
	}
	if !mtls.SameKey(key.Public(), inter.PublicKey) {
		return nil, fmt.Errorf("migrate PKI: %s is not the key of %s", filepath.Join(dir, IntermediateKeyFile), filepath.Join(dir, IntermediateCertFile))
	}

	files, err := migratedFiles(dir, td)
	if err != nil {
		return nil, err
	}
	if !exists(filepath.Join(dir, ServiceAPI, ServiceCertFile)) {
		sans, err := extraNamesOf(filepath.Join(dir, oldServicesDir, ServiceRegistration+".crt"), ServiceRegistration)
		if err != nil {
			return nil, err
		}
		api, err := issueRole(ServiceAPI, td, root, &issuer{cert: inter, key: key}, sans, now)
		if err != nil {
			return nil, fmt.Errorf("migrate PKI: %w", err)
		}
		files = append(files, api...)
	}
	if err := writeMissing(dir, files); err != nil {
		return nil, fmt.Errorf("migrate PKI in %s: %w", dir, err)
	}
	for _, f := range topFiles() {
		if err := os.Chmod(filepath.Join(dir, f), certMode); err != nil {
			return nil, fmt.Errorf("migrate PKI: %w", err)
		}
	}
	if err := removeOld(dir); err != nil {
		return nil, err
	}
	l, err := Load(dir)
	if err != nil {
		return nil, err
	}
	l.Migrated = true
	return l, nil
}

// migratedFiles reads the old files into their new places, checking that
// each service certificate is its service's.
func migratedFiles(dir, td string) ([]file, error) {
	var files []file
	for _, r := range Roles() {
		if r == ServiceAPI {
			continue
		}
		for _, f := range topFiles() {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return nil, err
			}
			files = append(files, file{filepath.Join(r, f), b, certMode})
		}
	}
	for _, mv := range moves() {
		from, to := mv.from, mv.to
		b, err := os.ReadFile(filepath.Join(dir, from))
		if err != nil {
			return nil, err
		}
		mode := certMode
		if strings.HasSuffix(from, ".key") {
			mode = keyMode
		}
		files = append(files, file{to, b, mode})
		if rest, ok := strings.CutPrefix(from, oldServicesDir+string(filepath.Separator)); ok && strings.HasSuffix(rest, ".crt") {
			svc := strings.TrimSuffix(rest, ".crt")
			leaf, err := readCert(filepath.Join(dir, from))
			if err != nil {
				return nil, err
			}
			if !ownedBy(leaf, svc) {
				return nil, fmt.Errorf("migrate PKI: %s is the certificate of %s, not of the %s service", filepath.Join(dir, from), urisOf(leaf), svc)
			}
		}
	}
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	return files, nil
}

// extraNamesOf returns the DNS names and IP addresses of a service
// certificate beyond the ones every service certificate has, so that a new
// certificate answers to the names the operator chose with --san.
func extraNamesOf(path, service string) (subjectNames, error) {
	c, err := readCert(path)
	if err != nil {
		return subjectNames{}, err
	}
	n := subjectNames{}
	for _, d := range c.DNSNames {
		if d != service && d != "localhost" {
			n.dns = append(n.dns, d)
		}
	}
	n.ips = append(n.ips, c.IPAddresses...)
	for _, lo := range []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback} {
		if !slices.ContainsFunc(n.ips, lo.Equal) {
			n.ips = append(n.ips, lo)
		}
	}
	return n, nil
}

// writeMissing writes files that are not there yet; one that is there
// already (copied by a migration that stopped) must be identical, and
// gets its mode.
func writeMissing(dir string, files []file) error {
	var todo, there []file
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			todo = append(todo, f)
		case err != nil:
			return err
		case !bytes.Equal(b, f.data):
			return fmt.Errorf("%s is already there and differs from what the old layout holds; move it away and run init again",
				filepath.Join(dir, f.name))
		default:
			there = append(there, f)
		}
	}
	if err := writeAll(dir, todo); err != nil {
		return err
	}
	for _, f := range there {
		if err := os.Chmod(filepath.Join(dir, f.name), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// removeOld removes the files of the old layout once each is in its new
// place with the same content.
func removeOld(dir string) error {
	for _, mv := range moves() {
		old := filepath.Join(dir, mv.from)
		b, err := os.ReadFile(old)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		moved, err := os.ReadFile(filepath.Join(dir, mv.to))
		if err != nil || !bytes.Equal(b, moved) {
			return fmt.Errorf("migrate PKI: %s differs from %s; both layouts are present, remove the old files by hand",
				old, filepath.Join(dir, mv.to))
		}
		if err := os.Remove(old); err != nil {
			return fmt.Errorf("migrate PKI: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(dir, oldServicesDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("migrate PKI: %w", err)
	}
	return nil
}
