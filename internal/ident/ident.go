// Package ident holds the one rule for node IDs and the one rule for host
// names, which every service, the CA core (internal/pki) and the event log
// apply alike: a name accepted at registration is never refused at signing
// time, and an ID one service hands out is one every other accepts.
//
// The package is pure and dependency-free so that anything, clients
// included, can check a name without linking the CA.
package ident

import (
	"crypto/rand"
	"errors"
	"net"
	"strings"
)

// Rules, as the public messages say them after the field name.
const (
	NodeIDRule   = "must match ^[a-z0-9][a-z0-9-]{0,62}$"
	HostnameRule = "must be a DNS name of letters, digits and hyphens, dot separated, at most 253 characters, not an IP address or localhost"
)

// Errors of the checks. Their messages hold no part of the checked value.
var (
	ErrNodeID   = errors.New("node ID " + NodeIDRule)
	ErrHostname = errors.New("hostname " + HostnameRule)
	ErrDNSName  = errors.New("not a DNS name of letters, digits and hyphens, dot separated, at most 253 characters")
)

// Limits of the rules.
const (
	MaxNodeIDLen   = 63
	MaxHostnameLen = 253
	maxLabelLen    = 63
)

// NodeID checks a node ID against ^[a-z0-9][a-z0-9-]{0,62}$. The server
// makes IDs of 26 lower-case base32 characters; the rule also admits the
// hyphenated names admins and tests give, and no more than fits one DNS
// label and the last segment of spiffe://<trust-domain>/node/<id>.
func NodeID(id string) error {
	if id == "" || len(id) > MaxNodeIDLen {
		return ErrNodeID
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isLowerAlnum(c) && (c != '-' || i == 0) {
			return ErrNodeID
		}
	}
	return nil
}

// NewNodeID makes a node ID as the registration service gives one: 26
// lower-case base32 characters (130 random bits), which NodeID accepts.
func NewNodeID() string { return strings.ToLower(rand.Text()) }

// Hostname checks a node's host name and returns it in canonical form:
// a DNSName that is not localhost nor under it, which the CA's name policy
// refuses to certify.
func Hostname(h string) (string, error) {
	n, err := DNSName(h)
	if err != nil || n == "localhost" || strings.HasSuffix(n, ".localhost") {
		return "", ErrHostname
	}
	return n, nil
}

// DNSName checks that h is a DNS name fit for a certificate and returns it
// in canonical form: lower case, without a trailing dot. Single-label names
// ("node-07") are allowed; IP addresses, wildcards, empty labels, labels
// that start or end with '-' and an all-numeric last label are not.
func DNSName(h string) (string, error) {
	h = asciiLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > MaxHostnameLen || net.ParseIP(h) != nil {
		return "", ErrDNSName
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if !validLabel(l) {
			return "", ErrDNSName
		}
	}
	if allDigits(labels[len(labels)-1]) {
		return "", ErrDNSName
	}
	return h, nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > maxLabelLen || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		if !isLowerAlnum(l[i]) && l[i] != '-' {
			return false
		}
	}
	return true
}

// asciiLower folds A-Z only: strings.ToLower would also fold a few
// non-ASCII letters (the Kelvin sign) into ASCII ones and so accept them.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// BootIDRule is the rule for boot IDs and agent instances, as the public
// messages say it after the field name.
const BootIDRule = "must be 1 to 64 letters, digits, '.', '_', ':' or '-'"

// BootID says whether s is a boot ID (or agent instance): it matches
// ^[A-Za-z0-9._:-]{1,64}$. The agent, Resume's boot and every heartbeat
// check it, so it is a loop rather than a regular expression.
func BootID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
