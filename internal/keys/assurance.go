package keys

import (
	"fmt"
	"strings"
)

// Assurance says how a node's identity key is held, which decides how far
// the registration service trusts a node that claims it. The agent reports
// it at registration; the server records it, shows it as identity_source,
// and lets a bootstrap token demand a minimum before it auto-approves.
//
// From strongest to weakest:
//
//   - tpm: primary keys in the machine's TPM. The private halves never
//     leave the chip, and registration proves it (credential activation
//     under the endorsement key), so it is the one claim the server checks.
//   - seed-file: keys derived from a per-node random seed the operator put
//     on the machine. Whoever reads that one file can become that one
//     node, and nobody else.
//   - file: keys generated on the node and kept under its state directory.
//     As copyable as a seed file, and no operator decided which machine
//     holds it: the first machine that boots with a token gets it. On a
//     stateless node the directory is lost at every boot, so the node comes
//     back with a new key and runs into the hardware conflict, which an
//     administrator sees: a weakness of availability, not of impersonation.
//   - site-secret: keys derived from a secret shared by the whole site and
//     the machine's hardware UUID. Anyone with the boot image (and so the
//     secret) who learns a machine's UUID becomes that machine, so one
//     leaked image impersonates the whole fleet. This is why it ranks below
//     file, although a file key does not survive a stateless reboot: a
//     lost key costs one node a re-approval, a leaked site secret costs
//     every node its identity. It is never auto-approved unless the token
//     allows it explicitly.
//
// Except for tpm the claim is the agent's word. The ranking is a policy on
// honest agents (a misconfigured image is held for approval, not trusted),
// not a proof against a forged one.
type Assurance string

// The identity sources, as the agent reports them.
const (
	AssuranceTPM        Assurance = "tpm"
	AssuranceSeedFile   Assurance = "seed-file"
	AssuranceFile       Assurance = "file"
	AssuranceSiteSecret Assurance = "site-secret"
)

// Assurances lists every identity source, strongest first.
func Assurances() []Assurance {
	return []Assurance{AssuranceTPM, AssuranceSeedFile, AssuranceFile, AssuranceSiteSecret}
}

// AssuranceNames is the list of identity sources for messages.
const AssuranceNames = "tpm, seed-file, file or site-secret"

// ParseAssurance parses an identity source name exactly as reported (the
// wire form is lower case; nothing is trimmed or folded, so that what is
// stored is what was sent).
func ParseAssurance(s string) (Assurance, error) {
	a := Assurance(s)
	if a.Rank() == 0 {
		return "", fmt.Errorf("unknown identity source %q (want %s)", s, AssuranceNames)
	}
	return a, nil
}

// Rank orders identity sources: the stronger, the higher. Unknown sources
// rank 0, below every known one.
func (a Assurance) Rank() int {
	switch a {
	case AssuranceTPM:
		return 4
	case AssuranceSeedFile:
		return 3
	case AssuranceFile:
		return 2
	case AssuranceSiteSecret:
		return 1
	}
	return 0
}

// AtLeast reports whether a is as strong as min.
func (a Assurance) AtLeast(min Assurance) bool { return a.Rank() >= min.Rank() }

// Assurance is the identity source that cfg describes, or an error when it
// describes none (ParseKind's and Open's checks apply).
func (cfg Config) Assurance() (Assurance, error) {
	switch cfg.Kind {
	case KindSeed, "":
		if cfg.SiteSecretFile != "" && cfg.SeedFile == "" {
			return AssuranceSiteSecret, nil
		}
		return AssuranceSeedFile, nil
	case KindFile:
		return AssuranceFile, nil
	case KindTPM:
		return AssuranceTPM, nil
	}
	return "", fmt.Errorf("unknown identity source %q", strings.TrimSpace(string(cfg.Kind)))
}
