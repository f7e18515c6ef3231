package registration

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/revocation"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// registered is what register found or made.
type registered struct {
	node regstore.Node
	// opened is the issuance of the first certificate of a node register
	// created (or replaced) approved, opened in the same write
	// (RegisterIssuing) for credentials to complete; zero otherwise.
	opened regstore.Intent
	// challenge is what a TPM node's first call gets instead of a node.
	challenge *berthv1.TPMChallenge
	// made: register created or replaced the node.
	made bool
}

// register finds or creates the node for the caller's key.
//
// A TPM node's first call returns a challenge instead (and no node): the
// node activates it and calls again with the secret.
//
// A key registered already is the same node: no token is needed, consumed
// or charged, and nothing changes. A registration by token finds such a
// key in the store's registering write (regstore.KeyRegisteredError), or
// looks it up when refused, rather than looking first: a fresh node's
// registration makes one round trip fewer. A TPM node's key is looked up
// first, since a registered TPM node is never challenged again.
func (s *Service) register(ctx context.Context, id mtls.Identity, in registration) (registered, error) {
	key := id.KeySHA256[:]
	var (
		proof      tpmProof
		ekApproved bool
		why        string
	)
	if in.tpm != nil {
		if existing, known, err := s.knownKey(ctx, key); err != nil || known {
			return existing, err
		}
		// A TPM node proves its TPM first: the first call gets a
		// credential to activate, the second brings the secret back.
		p, ch, err := s.checkTPM(ctx, id, in.tpm)
		if err != nil {
			return registered{}, err
		}
		if ch != nil {
			return registered{challenge: ch}, nil
		}
		proof = p
		ekApproved, why = s.tpmApproval(proof)
	}
	var (
		tok regstore.Token
		err error
	)
	switch {
	case in.tokenID != "":
		if tok, err = s.limitedCheckToken(ctx, in.tokenID, in.tokenSecret); err != nil {
			return s.unlessKnown(ctx, key, err)
		}
	case ekApproved:
		// The EK stands in for the token.
	case in.tpm != nil:
		return registered{}, errTPMTokenRequired
	default:
		return s.unlessKnown(ctx, key, errTokenRequired)
	}
	status, held := approval(tok, in.source)
	if ekApproved {
		status, held = regstore.StatusApproved, ""
		s.log.Info("TPM node approved by its endorsement key", "ek_hash", proof.ekHash, "reason", why)
	}
	if held != "" {
		s.log.Warn("auto-approval withheld; the node waits for an administrator", "token", tok.ID, "reason", held)
	}
	now := s.clock.Now()
	n := regstore.Node{
		ID:           ident.NewNodeID(),
		Status:       status,
		KeySHA256:    id.KeySHA256[:],
		HardwareUUID: in.hardwareUUID,
		MACs:         in.macs,
		Hostname:     in.hostname,
		Serial:       in.serial,
		Labels:       tok.Labels,
		BundleKEM:    in.kem,
		BundleKey:    in.bundleKey,
		CSR:          in.csr,
		TokenID:      tok.ID,
		CreatedAt:    now,
		UpdatedAt:    now,

		IdentitySource: string(in.source),
		EKHash:         proof.ekHash,
		EKCertificate:  proof.ekCert,
		AKPublic:       proof.akPublic,
	}
	node, opened, replaceID, err := s.registerNew(ctx, in, n)
	var taken *regstore.KeyRegisteredError
	switch {
	case errors.As(err, &taken):
		return sameNode(ctx, taken.Node)
	case tokenFailure(err):
		// The token was revoked or ran out after it was read: the next
		// registration reads it again, and is refused before any write.
		// Nothing was consumed or changed, and a registered key is still
		// its node.
		s.bootstrap.drop(tok.ID)
		return s.unlessKnown(ctx, key, fmt.Errorf("register node: %w", err))
	case errors.Is(err, regstore.ErrConflict):
		// Nothing was consumed or changed. A plain conflict is a retry
		// racing the caller's own earlier attempt, which committed after
		// this one's lookup: the key is registered now, by this node.
		return s.unlessKnown(ctx, key, fmt.Errorf("register node: %w", err))
	case err != nil:
		return registered{}, fmt.Errorf("register node: %w", err)
	}
	if replaceID != "" {
		// Again, for an old-key renewal that was in flight: its completion
		// revokes it too, once it finds the key changed.
		if err := s.ca.RevokeNode(ctx, replaceID, n.KeySHA256, revocation.ReasonSuperseded, false); err != nil {
			s.log.Warn("revoking the replaced board's certificates again failed", "node", replaceID, "error", err)
		}
	}
	if replaceID != "" && s.bundles != nil {
		// Bundles were sealed to the old board's key; the new one cannot
		// open them, so the node configures itself again.
		if err := s.bundles.Delete(ctx, replaceID); err != nil {
			return registered{}, fmt.Errorf("drop bundles of replaced node: %w", err)
		}
	}
	s.log.Info("node registered", "node", node.ID, "status", node.Status, "token", tok.ID, "replaced", replaceID != "",
		"identity_source", node.IdentitySource, "ek_hash", node.EKHash)
	known(ctx, node)
	return registered{node: node, opened: opened, made: true}, nil
}

// limitedCheckToken is checkToken under the per-source limit on failed
// attempts, which unlessKnown charges. Only failures are charged: a fleet
// registering at once from behind one address, with a good token, is never
// slowed by it; nor is a registered key. Guesses in flight together may
// overspend the burst; each one is then paid for by a longer wait, and the
// secret (26 base-36 characters) makes guessing hopeless anyway: the limit
// keeps a broken or hostile client from hammering the store.
func (s *Service) limitedCheckToken(ctx context.Context, id, secret string) (regstore.Token, error) {
	if ok, wait := s.tokenFailures.Allow(rpc.Source(ctx)); !ok {
		return regstore.Token{}, rpcerr.RetryAfter(errTooManyTokenFailures, wait)
	}
	return s.checkToken(ctx, id, secret)
}

// knownKey returns the node registered with key, if any.
func (s *Service) knownKey(ctx context.Context, key []byte) (registered, bool, error) {
	n, err := s.store.GetNodeByKey(ctx, key)
	switch {
	case errors.Is(err, regstore.ErrNotFound):
		return registered{}, false, nil
	case err != nil:
		return registered{}, false, fmt.Errorf("look up key: %w", err)
	}
	r, err := sameNode(ctx, n)
	return r, true, err
}

// unlessKnown answers a registration refused with refusal: as the node
// itself if its key is registered, else with the refusal, charging the
// caller's source for a failed token (limitedCheckToken). If the key
// cannot be looked up, the lookup's error stands: the node retries rather
// than stop at a refusal that may not be its own.
func (s *Service) unlessKnown(ctx context.Context, key []byte, refusal error) (registered, error) {
	if r, known, err := s.knownKey(ctx, key); known || err != nil {
		return r, err
	}
	if tokenFailure(refusal) {
		s.tokenFailures.Charge(rpc.Source(ctx))
	}
	return registered{}, refusal
}

// tokenFailure reports a token refused as invalid, expired or used up, by
// checkToken or, when it changed meanwhile, by the registering write.
func tokenFailure(err error) bool {
	return errors.Is(err, errTokenInvalid) || errors.Is(err, regstore.ErrTokenInvalid) ||
		errors.Is(err, regstore.ErrTokenExpired) || errors.Is(err, regstore.ErrTokenExhausted)
}

// sameNode answers a registration by a key that is registered already: the
// same key registering again is the same node, so no token is consumed
// and nothing changes.
func sameNode(ctx context.Context, n regstore.Node) (registered, error) {
	if err := usable(n, true); err != nil {
		return registered{node: n}, err
	}
	known(ctx, n)
	return registered{node: n}, nil
}

// known tells the server that the caller's connection belongs to a
// registered, approved node, so that it stops counting against the limits
// on unauthenticated connections: a fleet booting from behind one
// address is then never throttled by them.
func known(ctx context.Context, n regstore.Node) {
	if n.Status == regstore.StatusApproved {
		rpc.MarkAuthenticated(ctx)
	}
}

// checkToken verifies the secret of a token, read once per replica
// (tokenCache). Use limits, expiry and revocation are enforced again,
// atomically, when the token is consumed.
func (s *Service) checkToken(ctx context.Context, id, secret string) (regstore.Token, error) {
	tok, cached := s.bootstrap.get(id)
	if !cached {
		var err error
		tok, err = s.store.GetToken(ctx, id)
		if errors.Is(err, regstore.ErrNotFound) {
			return tok, errTokenInvalid
		}
		if err != nil {
			return tok, fmt.Errorf("get token: %w", err)
		}
		s.bootstrap.put(tok)
	}
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(sum[:], tok.SecretHash) != 1 || tok.Revoked {
		return tok, errTokenInvalid
	}
	if !s.clock.Now().Before(tok.ExpiresAt) {
		return tok, regstore.ErrTokenExpired
	}
	if tok.UsesLeft <= 0 {
		return tok, regstore.ErrTokenExhausted
	}
	return tok, nil
}

// registerNew stores n, the registration of a new key, with its first
// issuance open if it is approved. The store refuses it if a node is
// registered for this machine's hardware UUID with another key: a
// conflict, unless an admin allowed that node's replacement, which n then
// replaces. One duplicate-hardware lookup serves both this check and the
// duplicate_hardware event, in the registering transaction.
//
// A conflict is also a duplicate_hardware event on the registered node,
// although the registration changes nothing else: a second machine (or a
// second key) claiming a registered machine's UUID is a cloned image, a
// firmware placeholder or an impersonation attempt, which the engine must
// hear of. Only a caller with a valid token gets this far, so nobody can
// flood the log without one.
func (s *Service) registerNew(ctx context.Context, in registration, n regstore.Node) (node regstore.Node, opened regstore.Intent, replaceID string, err error) {
	requestID := newRequestID()
	node, opened, err = s.store.RegisterIssuing(ctx, n.TokenID, n.CreatedAt, n, "", requestID)
	var claimed *regstore.HardwareClaimedError
	if errors.As(err, &claimed) && claimed.Replaceable {
		replaceID = claimed.NodeID
		// Every certificate of the old board must die with the
		// replacement; the new key's stay.
		if err := s.ca.RevokeNode(ctx, replaceID, n.KeySHA256, revocation.ReasonSuperseded, false); err != nil {
			return regstore.Node{}, regstore.Intent{}, "", fmt.Errorf("revoke replaced certificates: %w", err)
		}
		node, opened, err = s.store.RegisterIssuing(ctx, n.TokenID, n.CreatedAt, n, replaceID, requestID)
	}
	if errors.As(err, &claimed) && !claimed.Replaceable {
		c := regstore.Claim{HardwareUUID: in.hardwareUUID, KeySHA256: n.KeySHA256, IdentitySource: string(in.source)}
		if err := s.store.NoteDuplicate(ctx, claimed.NodeID, s.clock.Now(), c); err != nil {
			// The refusal stands; only its trace is lost.
			s.log.Error("recording a duplicate hardware claim failed", "node", claimed.NodeID, "err", err)
		}
		return regstore.Node{}, regstore.Intent{}, "", errHardwareConflict
	}
	return node, opened, replaceID, err
}

// bundleAnswer is what credentials tell a node of its sealed bundle.
type bundleAnswer int

const (
	// withoutBundle: nothing, for renewing nodes, which apply bundles at
	// boot only.
	withoutBundle bundleAnswer = iota
	// withBundle: the node's current bundle, for booting nodes.
	withBundle
	// noBundleYet: checked and none, without asking the bundle store, for
	// a node this very call created (a new random ID: nobody can have
	// sealed a bundle for it) or replaced (register deleted the old
	// board's bundles). A bundle put for it from now on reaches it on its
	// heartbeat stream, which announces the node's latest version when it
	// opens.
	noBundleYet
)

// resume is the path of every boot: one indexed lookup and, unless the
// certificate is due for renewal, no write and no CA call.
func (s *Service) resume(ctx context.Context, id mtls.Identity, bundle bundleAnswer) (*berthv1.NodeCredentials, error) {
	node, err := s.resumeNode(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.credentials(ctx, node, regstore.Intent{}, bundle)
}

// resumeNode is the caller's node, if it may get credentials.
func (s *Service) resumeNode(ctx context.Context, id mtls.Identity) (regstore.Node, error) {
	node, err := s.store.GetNodeByKey(ctx, id.KeySHA256[:])
	if errors.Is(err, regstore.ErrNotFound) {
		return node, errUnknownKey
	}
	if err != nil {
		return node, fmt.Errorf("look up key: %w", err)
	}
	if err := usable(node, false); err != nil {
		return node, err
	}
	known(ctx, node)
	return node, nil
}

// usable says whether a node may get credentials. A pending node may poll
// Register, which reports its status, but Resume refuses it.
func usable(n regstore.Node, pendingOK bool) error {
	switch n.Status {
	case regstore.StatusApproved:
		return nil
	case regstore.StatusPending:
		if pendingOK {
			return nil
		}
		return errPending
	case regstore.StatusRejected:
		return errRejected
	}
	return errRevoked
}

// credentials returns the node's current chain, asking the CA for a new
// certificate only when there is none, or it is due or expired: through
// opened, the issuance registration opened with the node, if not zero.
func (s *Service) credentials(ctx context.Context, n regstore.Node, opened regstore.Intent, bundle bundleAnswer) (*berthv1.NodeCredentials, error) {
	out := &berthv1.NodeCredentials{
		NodeId:      n.ID,
		Status:      statusToProto(n.Status),
		TrustBundle: s.bundle,
		Endpoints:   s.endpoints,
	}
	if n.Status != regstore.StatusApproved {
		return out, nil
	}
	if n.Cert == nil || dueForRenewal(*n.Cert, s.clock.Now()) {
		renewed, err := s.renew(ctx, n, opened)
		if err != nil {
			return nil, err
		}
		n, out.Renewed = renewed, true
	}
	out.CertificateChain = n.Cert.Chain
	switch {
	case s.bundles == nil:
	case bundle == noBundleYet:
		out.BundleChecked = true
	case bundle == withBundle:
		b, err := s.bundles.Sealed(ctx, n.ID, n.BundleKey)
		if err != nil {
			return nil, err
		}
		out.BundleChecked, out.Bundle = true, b
	}
	return out, nil
}

// dueForRenewal is true in the last third of the lifetime and after expiry,
// so a node powered off past expiry still comes back. The lifetime counts
// from the certificate's issuance, not from its backdated NotBefore
// (mtls.RenewalTime): counting from NotBefore would make a short-lived
// certificate due as soon as it is issued.
func dueForRenewal(c regstore.Cert, now time.Time) bool {
	return !now.Before(mtls.RenewalTime(c.NotBefore, c.NotAfter))
}
