// Package ca is the gRPC adapter of berth's certificate authority: it signs
// node certificates for the registration service through internal/pki,
// keeps the issued-certificate log and the revocations in a castore.Store,
// and hands out the trust bundle.
package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/crl"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/castore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Log attribute keys of this service (the shared ones are in internal/rpc).
const (
	attrNode   = "node_id"
	attrSerial = "serial"
	attrCSR    = "csr_sha256"
	// attrRequest is the registration service's request ID.
	attrRequest = "request_id"
)

// Signer is what the service needs of the CA core; *pki.Signer is one.
type Signer interface {
	Sign(ctx context.Context, r pki.SignRequest) (pki.Signed, error)
	// Intermediate signs the certificates: a repeated request gets the
	// recorded leaf with it.
	Intermediate() *x509.Certificate
}

// Config holds the dependencies of the CA service.
type Config struct {
	// Signer issues node certificates. Required.
	Signer Signer
	// Store keeps the issued-certificate log and the revocations. Required.
	Store castore.Store
	// Roots is the trust bundle GetTrustBundle returns. Required.
	Roots []*x509.Certificate
	// Logger defaults to a logger that discards everything.
	Logger *slog.Logger
	// Clock dates the issued log and revocations; the system clock when nil.
	Clock clock.Clock
	// CRLIssuer and CRLKey sign the revocation list: the intermediate that
	// issues node certificates. Without them GetCRL answers
	// FailedPrecondition.
	CRLIssuer *x509.Certificate
	CRLKey    crypto.Signer
}

// Service implements berth.v1.CertificateAuthorityService.
type Service struct {
	berthv1.UnsafeCertificateAuthorityServiceServer

	signer Signer
	store  castore.Store
	roots  [][]byte
	log    *slog.Logger
	clock  clock.Clock
	// crl publishes the revocation list; nil without a CRL signer.
	crl *crl.Publisher
}

var _ berthv1.CertificateAuthorityServiceServer = (*Service)(nil)

// New checks c and returns the service.
func New(c Config) (*Service, error) {
	switch {
	case c.Signer == nil:
		return nil, errors.New("ca: Config.Signer is required")
	case c.Store == nil:
		return nil, errors.New("ca: Config.Store is required")
	case len(c.Roots) == 0:
		return nil, errors.New("ca: Config.Roots is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	roots := make([][]byte, 0, len(c.Roots))
	for i, r := range c.Roots {
		if r == nil || !r.IsCA {
			return nil, fmt.Errorf("ca: Config.Roots[%d] is not a CA certificate", i)
		}
		roots = append(roots, r.Raw)
	}
	s := &Service{signer: c.Signer, store: c.Store, roots: roots, log: c.Logger, clock: clock.Or(c.Clock)}
	if (c.CRLIssuer == nil) != (c.CRLKey == nil) {
		return nil, errors.New("ca: Config.CRLIssuer and Config.CRLKey go together")
	}
	if c.CRLIssuer != nil {
		p, err := crl.New(crl.Config{Issuer: c.CRLIssuer, Key: c.CRLKey, Source: revocationLog(c.Store), Clock: s.clock, Logger: c.Logger})
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		s.crl = p
	}
	return s, nil
}

// Register puts the service on a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	berthv1.RegisterCertificateAuthorityServiceServer(g, s)
}

// Policy is the service's rows of the authorisation matrix (rpc.Matrix):
// signing and revoking are for the registration service alone, the trust
// bundle and the revocation list are public, revocations are for the
// services that enforce them and admins, and the issued log for the
// registration service and admins.
func (s *Service) Policy() rpc.Policy {
	return rpc.PolicyFor(berthv1.CertificateAuthorityService_ServiceDesc.ServiceName)
}

// Sign issues a node certificate and records it in the issued log, once
// per request ID: a request seen before, by this replica or another, gets
// the certificate recorded for it.
func (s *Service) Sign(ctx context.Context, req *berthv1.SignRequest) (*berthv1.SignResponse, error) {
	log := rpc.Logger(ctx, s.log).With(attrCSR, fingerprint(req.GetCsr()))
	r, err := validateSign(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log = log.With(attrNode, r.NodeID, attrRequest, r.requestID)
	// Signed first, then recorded under the request ID, which the log
	// holds once: a request seen before (rare: a retry, a replica or the
	// reconciler completing an intent) finds its certificate by the
	// conflict, and the one signed again, never recorded, never leaves.
	// Looking the request up first would cost every first request a read.
	signed, err := s.signer.Sign(ctx, r.SignRequest)
	if err != nil {
		// A request answered before is answered again, whatever the
		// signer says now.
		if prior, perr := s.store.GetIssuedByRequest(ctx, r.requestID); perr == nil {
			return s.answered(ctx, log, prior, r)
		}
		return nil, errorTable.Status(ctx, log, err)
	}
	issued := castore.Issued{
		Serial:    signed.Serial,
		NodeID:    r.NodeID,
		NotBefore: signed.NotBefore,
		NotAfter:  signed.NotAfter,
		IssuedAt:  s.clock.Now().UTC(),
		DER:       signed.Chain[0],
		RequestID: r.requestID,
		KeySHA256: r.keySHA256,
	}
	if err := s.store.RecordIssued(ctx, issued); err != nil {
		if errors.Is(err, castore.ErrConflict) {
			// This request was recorded before, or by another replica
			// just now: its certificate is the answer, and this one, never
			// recorded, never leaves.
			if prior, perr := s.store.GetIssuedByRequest(ctx, r.requestID); perr == nil {
				return s.answered(ctx, log, prior, r)
			}
		}
		// The certificate exists but is not in the log, so it is not handed
		// out: every certificate a node holds must be revocable by serial.
		return nil, errorTable.Status(ctx, log.With(attrSerial, signed.Serial), fmt.Errorf("%w: %w", errNotRecorded, err))
	}
	log.Info("certificate issued", attrSerial, issued.Serial, "not_after", issued.NotAfter)
	return &berthv1.SignResponse{CertificateChain: signed.Chain, Certificate: issuedToProto(issued)}, nil
}

// answered returns the certificate recorded for a request again, if the
// request is the same one: the same node and key.
func (s *Service) answered(ctx context.Context, log *slog.Logger, prior castore.Issued, r signRequest) (*berthv1.SignResponse, error) {
	log = log.With(attrSerial, prior.Serial)
	if prior.NodeID != r.NodeID || !bytes.Equal(prior.KeySHA256, r.keySHA256) {
		return nil, errorTable.Status(ctx, log, errRequestReused)
	}
	inter := s.signer.Intermediate()
	leaf, err := x509.ParseCertificate(prior.DER)
	if err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("recorded certificate: %w", err))
	}
	if err := leaf.CheckSignatureFrom(inter); err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("%w: %w", errOtherIntermediate, err))
	}
	log.Info("certificate issued before for this request returned again")
	return &berthv1.SignResponse{CertificateChain: [][]byte{prior.DER, inter.Raw}, Certificate: issuedToProto(prior)}, nil
}

// Revoke revokes an issued certificate. Revoking it again returns the
// first revocation.
func (s *Service) Revoke(ctx context.Context, req *berthv1.RevokeRequest) (*berthv1.RevokeResponse, error) {
	log := rpc.Logger(ctx, s.log)
	serial, reason, err := validateRevoke(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log = log.With(attrSerial, serial)
	// The store fills in the node from the issued log, answers NotFound for
	// a serial it never issued, and returns the first revocation on a repeat.
	rev, err := s.store.Revoke(ctx, castore.Revocation{Serial: serial, Reason: reason, RevokedAt: s.clock.Now().UTC()})
	if err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("revoke certificate: %w", err))
	}
	log.Info("certificate revoked", attrNode, rev.NodeID, "reason", rev.Reason)
	s.refreshCRL(ctx, log)
	return &berthv1.RevokeResponse{Revocation: revocationToProto(rev)}, nil
}

// RevokeNodeCertificates revokes every certificate issued to a node, but
// those of the key it keeps.
func (s *Service) RevokeNodeCertificates(ctx context.Context, req *berthv1.RevokeNodeCertificatesRequest) (*berthv1.RevokeNodeCertificatesResponse, error) {
	log := rpc.Logger(ctx, s.log)
	r, keep, err := validateRevokeNode(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	log = log.With(attrNode, r.NodeID)
	r.RevokedAt = s.clock.Now().UTC()
	n, err := s.store.RevokeNode(ctx, r.NodeID, keep, r)
	if err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("revoke node certificates: %w", err))
	}
	if n > 0 {
		log.Info("node certificates revoked", "revoked", n, "reason", r.Reason, "node_revoked", r.Node)
		s.refreshCRL(ctx, log)
	}
	return &berthv1.RevokeNodeCertificatesResponse{Revoked: n}, nil
}

// GetTrustBundle returns the root certificates.
func (s *Service) GetTrustBundle(context.Context, *berthv1.GetTrustBundleRequest) (*berthv1.GetTrustBundleResponse, error) {
	return &berthv1.GetTrustBundleResponse{Roots: s.roots}, nil
}

// GetRevocations lists revocations, oldest first.
func (s *Service) GetRevocations(ctx context.Context, req *berthv1.GetRevocationsRequest) (*berthv1.GetRevocationsResponse, error) {
	log := rpc.Logger(ctx, s.log)
	since, err := validateSince(req.GetSince())
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	revs, err := s.store.ListRevocations(ctx, since)
	if err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("list revocations: %w", err))
	}
	out := make([]*berthv1.Revocation, 0, len(revs))
	for _, r := range revs {
		out = append(out, revocationToProto(r))
	}
	return &berthv1.GetRevocationsResponse{Revocations: out}, nil
}

// ListIssued reads the issued-certificate log, or only counts it.
func (s *Service) ListIssued(ctx context.Context, req *berthv1.ListIssuedRequest) (*berthv1.ListIssuedResponse, error) {
	log := rpc.Logger(ctx, s.log)
	nodeID, since, err := validateListIssued(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	if req.GetCountOnly() {
		n, err := s.store.CountIssued(ctx, nodeID, since)
		if err != nil {
			return nil, errorTable.Status(ctx, log, fmt.Errorf("count issued certificates: %w", err))
		}
		return &berthv1.ListIssuedResponse{Count: n}, nil
	}
	list, err := s.store.ListIssued(ctx, nodeID, since)
	if err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("list issued certificates: %w", err))
	}
	out := make([]*berthv1.IssuedCertificate, 0, len(list))
	for _, c := range list {
		out = append(out, issuedToProto(c))
	}
	return &berthv1.ListIssuedResponse{Certificates: out, Count: int64(len(out))}, nil
}

// fingerprint identifies a CSR in logs without revealing it.
func fingerprint(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:8])
}
