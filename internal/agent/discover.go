package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/berth-dev/berth/internal/mtls"
)

// Kernel command line keys the agent reads.
const (
	CmdlineServer = "berth.server"
	CmdlineCAHash = "berth.ca_hash"
	CmdlineToken  = "berth.token"
	CmdlineDomain = "berth.domain"
	// CmdlineReconfigure=1 runs --configure even when the node has a
	// bundle, and uploads what it makes as a new version.
	CmdlineReconfigure = "berth.reconfigure"
)

// SRVService and SRVProto name the DNS SRV record of the registration
// service: _berth._tcp.<domain>.
const (
	SRVService = "berth"
	SRVProto   = "tcp"
)

// Errors for what discovery could not find, naming every way to give it.
var (
	ErrNoServer = &configError{msg: "no registration server: set --server, BERTH_SERVER or " +
		CmdlineServer + "= on the kernel command line, or publish DNS SRV _berth._tcp.<domain>"}
	ErrNoCAHash = &configError{msg: "no CA hash: set --ca-hash, BERTH_CA_HASH or " +
		CmdlineCAHash + "=sha256:HEX on the kernel command line"}
)

// Target is where the registration service is and how to trust it.
type Target struct {
	// Server is host:port.
	Server string
	// Pin is the SHA-256 of the root CA's SubjectPublicKeyInfo.
	Pin [32]byte
	// Token is the bootstrap token, if any.
	Token string
	// Source says where Server came from: "flag", "cmdline" or "dns".
	Source string
	// Reconfigure is berth.reconfigure=1 on the kernel command line.
	Reconfigure bool
}

// ParseCmdline splits a kernel command line into its parameters, the way
// the kernel does: whitespace separates them, double quotes group
// (`key="a b"`), a later value of a key replaces an earlier one, and
// everything after a lone "--" belongs to init and is ignored. Parameters
// without "=" map to "".
func ParseCmdline(s string) map[string]string {
	out := map[string]string{}
	for _, p := range splitCmdline(s) {
		if p == "--" {
			break
		}
		k, v, _ := strings.Cut(p, "=")
		out[k] = v
	}
	return out
}

func splitCmdline(s string) []string {
	var (
		out     []string
		cur     strings.Builder
		inQuote bool
		started bool
	)
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			started = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			if started {
				out = append(out, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		out = append(out, cur.String())
	}
	return out
}

// readCmdline reads the kernel command line; a missing file (containers,
// other systems) is an empty command line.
func readCmdline(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	return ParseCmdline(string(b)), nil
}

// SearchDomain returns the first search domain of a resolv.conf, or its
// domain line: the last of the two wins, as in the resolver.
func SearchDomain(resolvConf []byte) string {
	var domain string
	sc := bufio.NewScanner(bytes.NewReader(resolvConf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		if f[0] == "search" || f[0] == "domain" {
			domain = f[1]
		}
	}
	return strings.TrimSuffix(domain, ".")
}

// Discover works out the registration server, CA pin and token. Values in
// cfg win; then the kernel command line; then, for the server only, DNS
// SRV in the berth.domain= domain or the resolver's search domain. The CA
// hash never comes from DNS: it is what makes DNS answers safe to use.
func Discover(ctx context.Context, cfg *Config) (Target, error) {
	cmdline, err := readCmdline(cfg.CmdlineFile)
	if err != nil {
		return Target{}, err
	}
	pick := func(flag, key string) string {
		if flag != "" {
			return flag
		}
		return cmdline[key]
	}
	var t Target
	t.Token = pick(cfg.Token, CmdlineToken)
	switch strings.ToLower(cmdline[CmdlineReconfigure]) {
	case "1", "yes", "true", "on":
		t.Reconfigure = true
	}

	caHash := pick(cfg.CAHash, CmdlineCAHash)
	if caHash == "" {
		return Target{}, ErrNoCAHash
	}
	if t.Pin, err = mtls.ParseCAHash(caHash); err != nil {
		return Target{}, configErrorf("CA hash %q: %v", caHash, err)
	}

	switch {
	case cfg.Server != "":
		t.Server, t.Source = cfg.Server, "flag"
	case cmdline[CmdlineServer] != "":
		t.Server, t.Source = cmdline[CmdlineServer], "cmdline"
	default:
		domain := pick(cfg.Domain, CmdlineDomain)
		if domain == "" {
			if rc, err := os.ReadFile(cfg.ResolvConfFile); err == nil {
				domain = SearchDomain(rc)
			}
		}
		if domain == "" {
			return Target{}, ErrNoServer
		}
		if t.Server, err = lookupServer(ctx, cfg.Resolver, domain); err != nil {
			return Target{}, err
		}
		t.Source = "dns"
	}
	if _, port, err := net.SplitHostPort(t.Server); err != nil || port == "" {
		return Target{}, configErrorf("registration server %q must be host:port", t.Server)
	}
	return t, nil
}

// lookupServer resolves _berth._tcp.<domain> and returns its best target.
// Temporary DNS failures are left to the caller's retries; a missing
// record is a configuration error.
func lookupServer(ctx context.Context, r Resolver, domain string) (string, error) {
	name := fmt.Sprintf("_%s._%s.%s", SRVService, SRVProto, domain)
	_, addrs, err := r.LookupSRV(ctx, SRVService, SRVProto, domain)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return "", configErrorf("%v (DNS SRV %s not found)", ErrNoServer, name)
		}
		return "", &transientError{fmt.Errorf("look up DNS SRV %s: %w", name, err)}
	}
	// LookupSRV sorts by priority and shuffles by weight; the first is ours.
	for _, a := range addrs {
		host := strings.TrimSuffix(a.Target, ".")
		if host == "" {
			continue // "." means the service is decidedly not available
		}
		return net.JoinHostPort(host, fmt.Sprint(a.Port)), nil
	}
	return "", configErrorf("%v (DNS SRV %s has no targets)", ErrNoServer, name)
}

// transientError is a failure worth retrying: the network or a server is
// not there yet.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }
