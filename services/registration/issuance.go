package registration

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/revocation"
	"github.com/berth-dev/berth/internal/store/regstore"
)

// Reasons the service gives the CA for the revocations it makes itself.
const (
	// reasonNotInstalled: a certificate that arrived for a node that had
	// moved on (renewed, rejected, replaced) was never handed out.
	reasonNotInstalled = revocation.ReasonSuperseded
	reasonDeleted      = "node deleted"
	// reasonRevokedNode is for a certificate that arrived after its node
	// was revoked, when the admin's reason is no longer at hand.
	reasonRevokedNode = "node revoked"
)

// claimAttempts bounds how often one call completes intents other callers
// opened before it gets to open its own: one left by a crash, then
// possibly one a concurrent caller opened meanwhile.
const claimAttempts = 3

// reconcileBatch is how many open intents one reconciler pass takes.
const reconcileBatch = 500

// errIssuanceBusy is a node whose certificate another caller is issuing
// right now; the node retries.
var errIssuanceBusy = fmt.Errorf("%w: certificate issuance for this node is in progress", errCAUnavailable)

// renew issues a certificate for n, its first or a renewal of the current
// one, and returns the node with it. Concurrent boots of one node share one
// call in this process; other replicas meet in the database (ClaimIssuance).
// opened is the issuance this call opened with the node's registration
// (RegisterIssuing), or the zero Intent: it is completed without a claim.
func (s *Service) renew(ctx context.Context, n regstore.Node, opened regstore.Intent) (regstore.Node, error) {
	v, err, _ := s.renewals.Do(n.ID, func() (any, error) { return s.issue(ctx, n, opened) })
	if err != nil {
		return regstore.Node{}, err
	}
	return v.(regstore.Node), nil
}

func (s *Service) issue(ctx context.Context, n regstore.Node, opened regstore.Intent) (regstore.Node, error) {
	for range claimAttempts {
		open, claimed := opened, opened.RequestID != ""
		opened = regstore.Intent{}
		if !claimed {
			prev := ""
			if n.Cert != nil {
				prev = n.Cert.Serial
			}
			var err error
			open, claimed, err = s.store.ClaimIssuance(ctx, regstore.Intent{
				RequestID: newRequestID(), NodeID: n.ID, KeySHA256: n.KeySHA256, PrevSerial: prev, CreatedAt: s.clock.Now(),
			})
			switch {
			case errors.Is(err, regstore.ErrConflict), errors.Is(err, regstore.ErrNotFound):
				// The node changed since it was read: renewed, revoked,
				// replaced or deleted by someone else.
				return s.settled(ctx, n.ID)
			case err != nil:
				return regstore.Node{}, fmt.Errorf("record issuance for node %s: %w", n.ID, err)
			}
		}
		got, installed, err := s.complete(ctx, open)
		if err != nil {
			return regstore.Node{}, err
		}
		if claimed && installed {
			return got, nil
		}
		// Someone else's intent, completed for them, or ours arriving after
		// the node changed: look at the node again.
		if n, err = s.settled(ctx, n.ID); !errors.Is(err, errIssuanceBusy) {
			return n, err
		}
	}
	return regstore.Node{}, errIssuanceBusy
}

// settled re-reads a node after an issuance and returns it if it may be
// served as it is; errIssuanceBusy if it still needs a certificate.
func (s *Service) settled(ctx context.Context, id string) (regstore.Node, error) {
	n, err := s.store.GetNode(ctx, id)
	if errors.Is(err, regstore.ErrNotFound) {
		return regstore.Node{}, errUnknownKey
	}
	if err != nil {
		return regstore.Node{}, fmt.Errorf("read node %s: %w", id, err)
	}
	if err := usable(n, false); err != nil {
		return regstore.Node{}, err
	}
	if n.Cert == nil || dueForRenewal(*n.Cert, s.clock.Now()) {
		return n, errIssuanceBusy
	}
	return n, nil
}

// complete asks the CA for an open intent's certificate (the same one
// however often it is asked) and stores it. Installed is false when the
// node had moved on: the certificate was then counted and revoked. On an
// error the intent stays open, for a retry or the reconciler.
func (s *Service) complete(ctx context.Context, in regstore.Intent) (regstore.Node, bool, error) {
	cert, err := s.ca.Sign(ctx, in.RequestID, in.NodeID, in.Hostname, in.CSR)
	if err != nil {
		return regstore.Node{}, false, fmt.Errorf("sign node %s: %w", in.NodeID, err)
	}
	// Most often the node is as the intent found it, and the certificate
	// becomes its own in one write. Otherwise the intent stays open until
	// the certificate is revoked, so that a failed revocation is tried
	// again; the check after closing catches a change in between.
	n, installed, err := s.store.InstallIssuance(ctx, in.RequestID, cert, s.clock.Now())
	if err == nil && !installed {
		if err := s.revokeIfMovedOn(ctx, in, cert.Serial); err != nil {
			return regstore.Node{}, false, err
		}
		n, installed, err = s.store.CompleteIssuance(ctx, in.RequestID, cert, s.clock.Now())
	}
	if errors.Is(err, regstore.ErrNotFound) {
		// Completed by another caller with the same certificate.
		return regstore.Node{}, false, nil
	}
	if err != nil {
		return regstore.Node{}, false, fmt.Errorf("store certificate of node %s: %w", in.NodeID, err)
	}
	if !installed {
		if err := s.revokeIfMovedOn(ctx, in, cert.Serial); err != nil {
			s.log.Error("a certificate issued to a node that moved on may not be revoked", "node", in.NodeID, "serial", cert.Serial, "error", err)
		}
		s.log.Info("certificate issued after its node moved on; counted and revoked", "node", in.NodeID, "serial", cert.Serial)
		return n, false, nil
	}
	reason := "renew"
	if in.PrevSerial == "" {
		reason = "register"
	}
	s.metrics.CertificateIssued(reason)
	s.log.Info("certificate issued", "node", n.ID, "serial", cert.Serial, "not_after", cert.NotAfter, "request_id", in.RequestID)
	return n, true, nil
}

// revokeIfMovedOn revokes a certificate just issued for in if the node is
// gone or revoked (all its certificates, as a node revocation) or has
// another key (this certificate).
func (s *Service) revokeIfMovedOn(ctx context.Context, in regstore.Intent, serial string) error {
	n, err := s.store.GetNode(ctx, in.NodeID)
	switch {
	case errors.Is(err, regstore.ErrNotFound):
		return s.ca.RevokeNode(ctx, in.NodeID, nil, reasonDeleted, true)
	case err != nil:
		return fmt.Errorf("read node %s: %w", in.NodeID, err)
	case n.Status == regstore.StatusRevoked:
		return s.ca.RevokeNode(ctx, in.NodeID, nil, reasonRevokedNode, true)
	case !bytes.Equal(n.KeySHA256, in.KeySHA256), n.Status != regstore.StatusApproved,
		n.Cert != nil && n.Cert.Serial != in.PrevSerial && n.Cert.Serial != serial:
		return s.ca.Revoke(ctx, serial, reasonNotInstalled)
	}
	return nil
}

// Reconcile completes the issuances open for at least olderThan: it asks
// the CA for each one's certificate (the one already issued, if the CA
// signed before the caller was lost) and stores it, or counts and revokes
// it if the node moved on. Then it issues, through the same intent, the
// certificate of every approved node that has none and no open issuance
// and has not changed for olderThan: one an administrator approved, or
// whose registration was lost between its write and its intent. Such a
// node's next call just picks the certificate up, so no node stays
// approved without a certificate past the first pass that finds it.
// Replicas may run it at once: claims and completions are idempotent. It
// returns how many issuances it closed and the first error; the others
// are logged and tried again on the next pass.
func (s *Service) Reconcile(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := s.clock.Now().Add(-olderThan)
	open, err := s.store.ListIntents(ctx, cutoff, reconcileBatch)
	if err != nil {
		return 0, fmt.Errorf("list open issuances: %w", err)
	}
	var (
		closed int
		first  error
	)
	for _, in := range open {
		if _, _, err := s.complete(ctx, in); err != nil {
			s.log.Warn("completing an open issuance failed; retrying on the next pass", "node", in.NodeID, "request_id", in.RequestID, "error", err)
			first = cmp.Or(first, err)
			continue
		}
		closed++
	}
	if closed > 0 {
		s.log.Info("open issuances completed", "closed", closed, "open", len(open)-closed)
	}
	issued, err := s.issueUncertified(ctx, cutoff)
	return closed + issued, cmp.Or(first, err)
}

// issueUncertified issues the first certificate of the approved nodes,
// unchanged since cutoff, that have none and no open issuance, and returns
// how many it issued.
func (s *Service) issueUncertified(ctx context.Context, cutoff time.Time) (int, error) {
	nodes, err := s.store.ListUncertified(ctx, cutoff, reconcileBatch)
	if err != nil {
		return 0, fmt.Errorf("list approved nodes without a certificate: %w", err)
	}
	var (
		issued int
		first  error
	)
	for _, n := range nodes {
		_, err := s.renew(ctx, n, regstore.Intent{})
		switch {
		case err == nil:
			issued++
		case movedOn(err):
			// Revoked, rejected or deleted since it was listed: nothing
			// to issue.
		default:
			s.log.Warn("issuing the certificate of an approved node failed; retrying on the next pass", "node", n.ID, "error", err)
			first = cmp.Or(first, err)
		}
	}
	if issued > 0 {
		s.log.Info("certificates of approved nodes issued", "issued", issued, "found", len(nodes))
	}
	return issued, first
}

// movedOn is an issuance refused because the node is no longer approved.
func movedOn(err error) bool {
	return errors.Is(err, errUnknownKey) || errors.Is(err, errPending) || errors.Is(err, errRejected) || errors.Is(err, errRevoked)
}

// reconcileLoop runs Reconcile at start, over every open issuance, then
// every reconcilePeriod, until ctx ends.
func (s *Service) reconcileLoop(ctx context.Context) {
	age := time.Duration(0)
	for {
		if _, err := s.Reconcile(ctx, age); err != nil && ctx.Err() == nil {
			s.log.Warn("reconciling open issuances failed", "error", err)
		}
		age = s.reconcileAge
		if s.clock.Sleep(ctx, s.reconcilePeriod) != nil {
			return
		}
	}
}

// newRequestID returns 26 lower-case base32 characters (130 random bits).
func newRequestID() string { return strings.ToLower(rand.Text()) }
