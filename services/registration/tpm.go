package registration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// What a TPM node's EK certificate showed, as regstore.Node.EKCertificate
// and Node.ek_certificate keep it.
const (
	ekCertTrusted   = "trusted"   // chains to a manufacturer CA of --ek-ca
	ekCertUntrusted = "untrusted" // does not
	ekCertUnchecked = "unchecked" // no --ek-ca configured
	ekCertNone      = "none"      // the TPM had no EK certificate
)

// Limits of the TPM registration round trip.
const (
	// challengeTTL is how long a credential waits for its activation: a
	// TPM activates in well under a second, a slow one in a few.
	challengeTTL = 5 * time.Minute
	// maxChallenges bounds the open challenges, which anyone with a TLS
	// key may open (an enrolled TPM needs no token), so memory is bounded.
	maxChallenges = 10_000
	maxTPMBlob    = 8 << 10
	maxEKImport   = 10_000
)

var ekHashRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// tpmProof is what a TPM node proved at registration.
type tpmProof struct {
	ekHash   string
	ekCert   string // ekCert* above
	enrolled bool   // the EK was enrolled with ImportEKs
	// akPublic is the attestation key proven to be in the EK's TPM; nil
	// when the agent sent none.
	akPublic []byte
}

// challenge is an open credential: its secret, for whom, until when.
type challenge struct {
	secret  []byte
	ekHash  string
	expires time.Time
	// akSecret is the AK credential's secret, for akPublic; nil without.
	akSecret []byte
	akPublic []byte
}

// challenges holds the open credentials by identity key hash. They live in
// this process: the node answers on the connection it asked on, which
// reaches the same replica.
type challenges struct {
	mu sync.Mutex
	m  map[[32]byte]challenge
}

func (c *challenges) put(key [32]byte, ch challenge, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[32]byte]challenge{}
	}
	if len(c.m) >= maxChallenges {
		for k, v := range c.m {
			if !now.Before(v.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxChallenges {
			return errTooManyChallenges
		}
	}
	c.m[key] = ch
	return nil
}

// take removes and returns key's open challenge, if it has not expired.
func (c *challenges) take(key [32]byte, now time.Time) (challenge, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.m[key]
	delete(c.m, key)
	return ch, ok && now.Before(ch.expires)
}

// checkTPM checks a TPM node's evidence. Without activated_secret it makes
// a credential for the identity key under the EK and returns it as the
// challenge; with it, it checks the secret against the challenge it made
// and returns what the TPM proved.
func (s *Service) checkTPM(ctx context.Context, id mtls.Identity, ev *berthv1.TPMEvidence) (tpmProof, *berthv1.TPMChallenge, error) {
	if len(ev.GetEkPublic()) > maxTPMBlob || len(ev.GetEkCertificate()) > maxTPMBlob || len(ev.GetIdentityKeyPublic()) > maxTPMBlob ||
		len(ev.GetAkPublic()) > maxTPMBlob {
		return tpmProof{}, nil, rpcerr.Invalid("tpm", ruleTPMSize)
	}
	ek, err := attest.ParseEK(ev.GetEkPublic())
	if err != nil {
		return tpmProof{}, nil, tpmEvidenceError("tpm.ek_public", err)
	}
	if id.Leaf == nil {
		return tpmProof{}, nil, errCSRKeyMismatch
	}
	idKey, err := attest.ParseIdentityKey(ev.GetIdentityKeyPublic(), id.Leaf.PublicKey)
	if err != nil {
		return tpmProof{}, nil, tpmEvidenceError("tpm.identity_key_public", err)
	}
	var ak *attest.Key
	if raw := ev.GetAkPublic(); len(raw) > 0 {
		if ak, err = attest.ParseAK(raw); err != nil {
			return tpmProof{}, nil, tpmEvidenceError("tpm.ak_public", err)
		}
	}
	proof := tpmProof{ekHash: ek.Hash(), ekCert: ekCertNone}
	if der := ev.GetEkCertificate(); len(der) > 0 {
		cert, err := attest.ParseEKCert(der)
		if err != nil {
			return tpmProof{}, nil, tpmEvidenceError("tpm.ek_certificate", err)
		}
		if err := ek.CheckCert(cert); err != nil {
			return tpmProof{}, nil, tpmEvidenceError("tpm.ek_certificate", err)
		}
		switch {
		case s.ekRoots == nil:
			proof.ekCert = ekCertUnchecked
		case s.ekRoots.Verify(cert, s.clock.Now()) == nil:
			proof.ekCert = ekCertTrusted
		default:
			proof.ekCert = ekCertUntrusted
		}
	}
	now := s.clock.Now()
	if len(ev.GetActivatedSecret()) == 0 {
		ch, secret, err := attest.MakeCredential(rand.Reader, ek, idKey)
		if err != nil {
			return tpmProof{}, nil, tpmEvidenceError("tpm.ek_public", err)
		}
		open := challenge{secret: secret, ekHash: proof.ekHash, expires: now.Add(challengeTTL)}
		out := &berthv1.TPMChallenge{CredentialBlob: ch.CredentialBlob, EncryptedSecret: ch.EncryptedSecret}
		if ak != nil {
			// The same proof for the AK: its quotes then speak for the
			// TPM whose EK this node registered with.
			akCh, akSecret, err := attest.MakeCredential(rand.Reader, ek, ak)
			if err != nil {
				return tpmProof{}, nil, tpmEvidenceError("tpm.ek_public", err)
			}
			open.akSecret, open.akPublic = akSecret, ev.GetAkPublic()
			out.AkCredentialBlob, out.AkEncryptedSecret = akCh.CredentialBlob, akCh.EncryptedSecret
		}
		if err := s.challenges.put(id.KeySHA256, open, now); err != nil {
			return tpmProof{}, nil, err
		}
		return proof, out, nil
	}
	open, ok := s.challenges.take(id.KeySHA256, now)
	if !ok || open.ekHash != proof.ekHash || !bytes.Equal(open.akPublic, ev.GetAkPublic()) {
		return tpmProof{}, nil, errNoChallenge
	}
	if err := attest.CheckSecret(open.secret, ev.GetActivatedSecret()); err != nil {
		return tpmProof{}, nil, fmt.Errorf("%w: %v", errActivation, err)
	}
	if open.akSecret != nil {
		if err := attest.CheckSecret(open.akSecret, ev.GetAkActivatedSecret()); err != nil {
			return tpmProof{}, nil, fmt.Errorf("%w: %v", errAKActivation, err)
		}
		proof.akPublic = open.akPublic
	}
	_, err = s.store.GetEK(ctx, proof.ekHash)
	switch {
	case err == nil:
		proof.enrolled = true
	case !errors.Is(err, regstore.ErrNotFound):
		return tpmProof{}, nil, fmt.Errorf("look up EK: %w", err)
	}
	return proof, nil, nil
}

// tpmEvidenceError turns attest's errors into the service's: evidence that
// does not parse or has the wrong attributes is invalid, evidence that is
// not about this node's key is not its to show.
func tpmEvidenceError(field string, err error) error {
	switch {
	case errors.Is(err, attest.ErrKeyMismatch):
		return fmt.Errorf("%w: %s: %v", errTPMKeyMismatch, field, err)
	case errors.Is(err, attest.ErrMalformed), errors.Is(err, attest.ErrKeyAttributes):
		return rpcerr.Invalid(field, ruleTPMEvidence)
	}
	return fmt.Errorf("%s: %w", field, err)
}

// tpmApproval says whether a TPM node is approved by its EK alone: an
// enrolled EK always, an EK certificate that chains to the manufacturer
// CAs when the server's policy says so.
func (s *Service) tpmApproval(p tpmProof) (approved bool, why string) {
	switch {
	case p.enrolled:
		return true, "enrolled EK"
	case s.autoApproveTrustedEK && p.ekCert == ekCertTrusted:
		return true, "EK certificate from a trusted manufacturer"
	}
	return false, ""
}

// ImportEKs enrols endorsement keys.
func (s *Service) ImportEKs(ctx context.Context, req *berthv1.ImportEKsRequest) (*berthv1.ImportEKsResponse, error) {
	log := rpc.Logger(ctx, s.log)
	eks, err := validateEKs(req.GetEks())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	added, updated, err := s.store.ImportEKs(ctx, eks, s.clock.Now(), caller(ctx).String())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log.Info("endorsement keys enrolled", "added", added, "updated", updated)
	return &berthv1.ImportEKsResponse{Added: int32(added), Updated: int32(updated)}, nil
}

func validateEKs(in []*berthv1.EnrolledEK) ([]regstore.EnrolledEK, error) {
	if len(in) == 0 || len(in) > maxEKImport {
		return nil, rpcerr.Invalid("eks", ruleEKCount)
	}
	seen := map[string]bool{}
	out := make([]regstore.EnrolledEK, 0, len(in))
	for _, e := range in {
		if !ekHashRE.MatchString(e.GetHash()) {
			return nil, rpcerr.Invalid("eks.hash", ruleEKHash)
		}
		if seen[e.GetHash()] {
			return nil, rpcerr.Invalid("eks.hash", ruleEKTwice)
		}
		seen[e.GetHash()] = true
		if len(e.GetLabel()) > maxDescription || !printable(e.GetLabel()) {
			return nil, rpcerr.Invalid("eks.label", ruleText)
		}
		out = append(out, regstore.EnrolledEK{Hash: e.GetHash(), Label: e.GetLabel()})
	}
	return out, nil
}
