//go:build compose

package compose

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"go.step.sm/crypto/pemutil"
)

// found is one line of berthd pki inspect --json.
type found struct {
	Path     string `json:"path"`
	Kind     string `json:"kind"`
	Identity string `json:"identity"`
	CA       string `json:"ca"`
	Matched  bool   `json:"matched"`
	Error    string `json:"error"`
}

// inspect runs berthd pki inspect over the whole file system of a running
// service's container, as that container's user: what the service could
// read, whatever it does. The image has no shell to look with.
func (p *project) inspect(service string) []found {
	p.t.Helper()
	out := p.docker("exec", p.container(service), "berthd", "pki", "inspect", "--json", "/")
	var fs []found
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		p.t.Fatalf("berthd pki inspect in %s said %q: %v", service, out, err)
	}
	return fs
}

// mount is one mount of a container, as docker inspect reports it.
type mount struct {
	Type        string
	Name        string
	Destination string
	RW          bool
}

func (p *project) mounts(service string) []mount {
	p.t.Helper()
	out := p.docker("inspect", "-f", "{{json .Mounts}}", p.container(service))
	var ms []mount
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		p.t.Fatalf("mounts of %s: %q: %v", service, out, err)
	}
	return ms
}

// checkOwnCredentials checks that a running service's container mounts
// its role's volume alone, read-only, and can read no key but its own
// (and, for the CA, the intermediate's): in particular no root key and no
// other role's key. It returns what it found, for the log.
func (p *project) checkOwnCredentials(service string) string {
	p.t.Helper()
	ms := p.mounts(service)
	want := p.name + "_pki-" + service
	if len(ms) != 1 || ms[0].Type != "volume" || ms[0].Name != want || ms[0].Destination != "/var/lib/berth/pki" || ms[0].RW {
		p.t.Errorf("%s mounts %+v; want only volume %s at /var/lib/berth/pki, read-only", service, ms, want)
	}
	own := "spiffe://berth.local/service/" + service
	var keys, certs []string
	for _, f := range p.inspect(service) {
		switch {
		case f.Kind == "unreadable" && strings.HasPrefix(f.Path, "/var/lib/berth"):
			p.t.Errorf("%s: %s cannot be read, so what it holds is not known: %s", service, f.Path, f.Error)
		case f.Kind == "private_key" && f.CA == "root":
			p.t.Errorf("%s can read the root key at %s", service, f.Path)
		case f.Kind == "private_key" && !f.Matched:
			p.t.Errorf("%s can read a key of no certificate it holds at %s", service, f.Path)
		case f.Kind == "private_key" && f.CA == "intermediate" && service != "ca":
			p.t.Errorf("%s can read the intermediate key at %s", service, f.Path)
		case f.Kind == "private_key" && f.CA == "" && f.Identity != own:
			p.t.Errorf("%s can read the key of %s at %s", service, f.Identity, f.Path)
		case f.Kind == "certificate" && f.Identity != "" && f.Identity != own:
			p.t.Errorf("%s holds the certificate of %s at %s", service, f.Identity, f.Path)
		}
		switch f.Kind {
		case "private_key":
			keys = append(keys, fmt.Sprintf("%s (%s)", f.Path, orCA(f)))
		case "certificate":
			certs = append(certs, fmt.Sprintf("%s (%s)", f.Path, orCA(f)))
		}
	}
	wantKeys := 1
	if service == "ca" {
		wantKeys = 2 // its own and the intermediate's
	}
	if len(keys) != wantKeys {
		p.t.Errorf("%s can read %d keys, want %d: %v", service, len(keys), wantKeys, keys)
	}
	slices.Sort(keys)
	slices.Sort(certs)
	return fmt.Sprintf("keys %v; certificates %v", keys, slices.Compact(certs))
}

func orCA(f found) string {
	if f.CA != "" {
		return f.CA + " CA"
	}
	return f.Identity
}

// checkRootKey checks that a PEM key file holds the key of the root in the
// admin credentials copied out.
func (p *project) checkRootKey(path string) {
	p.t.Helper()
	k, err := pemutil.Read(path)
	if err != nil {
		p.t.Fatalf("root key copied out: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(p.creds, "ca.crt"))
	if err != nil {
		p.t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		p.t.Fatal(err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		p.t.Fatalf("%s holds no private key", path)
	}
	pub, _ := x509.MarshalPKIXPublicKey(s.Public())
	if string(pub) != string(root.RawSubjectPublicKeyInfo) {
		p.t.Fatalf("%s is not the key of the root in ca.crt", path)
	}
}

// chainIntermediate returns the intermediate (second) certificate of a
// PEM chain file.
func (p *project) chainIntermediate(path string) *x509.Certificate {
	p.t.Helper()
	certs, err := pemutil.ReadCertificateBundle(path)
	if err != nil || len(certs) < 2 {
		p.t.Fatalf("%s: %d certificates, %v", path, len(certs), err)
	}
	return certs[1]
}

// composeStdout runs a compose command and returns its standard output
// alone: compose writes its progress to standard error.
func (p *project) composeStdout(args ...string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.compose[0], append(append([]string{}, p.compose[1:]...), args...)...)
	cmd.Env, cmd.Dir = p.env, p.rootDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		p.t.Fatalf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// checkAdminTool checks what the berthctl tool container can read: the
// admin's credential alone.
func (p *project) checkAdminTool() string {
	p.t.Helper()
	out := p.composeStdout("run", "--rm", "-T", "--entrypoint", "berthd", "berthctl", "pki", "inspect", "--json", "/")
	var fs []found
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		p.t.Fatalf("berthd pki inspect in the berthctl container said %q: %v", out, err)
	}
	var keys []string
	for _, f := range fs {
		if f.Kind == "private_key" {
			keys = append(keys, f.Path+" ("+orCA(f)+")")
			if f.Identity != "spiffe://berth.local/admin/admin" {
				p.t.Errorf("the berthctl container can read the key of %q at %s", orCA(f), f.Path)
			}
		}
	}
	if len(keys) != 1 {
		p.t.Errorf("the berthctl container can read %d keys, want the admin's alone: %v", len(keys), keys)
	}
	return strings.Join(keys, ", ")
}

func (p *project) readCert(path string) *x509.Certificate {
	p.t.Helper()
	c, err := pemutil.ReadCertificate(path)
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}
