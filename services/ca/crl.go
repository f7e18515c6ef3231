package ca

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/crl"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/castore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// revocationLog reads the store's revocations for the CRL.
func revocationLog(store castore.Store) crl.Source {
	return func(ctx context.Context) ([]crl.Entry, error) {
		revs, err := store.ListRevocations(ctx, time.Time{})
		if err != nil {
			return nil, err
		}
		out := make([]crl.Entry, len(revs))
		for i, r := range revs {
			out[i] = crl.Entry{Serial: r.Serial, RevokedAt: r.RevokedAt, Reason: r.Reason}
		}
		return out, nil
	}
}

// GetCRL returns the current revocation list.
func (s *Service) GetCRL(ctx context.Context, _ *berthv1.GetCRLRequest) (*berthv1.GetCRLResponse, error) {
	log := rpc.Logger(ctx, s.log)
	if s.crl == nil {
		return nil, errorTable.Status(ctx, log, errNoCRL)
	}
	c, err := s.crl.Current(ctx)
	if err != nil {
		return nil, errorTable.Status(ctx, log, fmt.Errorf("revocation list: %w", err))
	}
	return &berthv1.GetCRLResponse{
		Crl:        c.DER,
		CrlNumber:  c.Number.String(),
		ThisUpdate: timestamppb.New(c.ThisUpdate),
		NextUpdate: timestamppb.New(c.NextUpdate),
		Revoked:    int64(c.Entries),
	}, nil
}

// refreshCRL makes the CRL list a revocation just recorded. The revocation
// stands whatever happens here: a CRL that could not be signed now is
// signed on the next request or refresh, which read the same log.
func (s *Service) refreshCRL(ctx context.Context, log *slog.Logger) {
	if s.crl == nil {
		return
	}
	if _, err := s.crl.Refresh(ctx); err != nil {
		log.Error("revocation recorded, but the revocation list was not re-signed", "error", err)
	}
}

// Run keeps the revocation list signed and days from its nextUpdate until
// ctx ends. Without a CRL signer it returns at once.
func (s *Service) Run(ctx context.Context) error {
	if s.crl != nil {
		s.crl.Run(ctx)
	}
	return nil
}

// Paths of the CRL over HTTP.
const (
	CRLPath    = "/crl"     // DER, application/pkix-crl (RFC 5280 section 4.2.1.13)
	CRLPEMPath = "/crl.pem" // PEM, for nginx's ssl_crl and openssl -CRLfile
)

// CRLHandler serves the revocation list over plain HTTP: DER at /crl and
// PEM at /crl.pem, with Last-Modified and conditional GET. A CRL is signed,
// so it needs no TLS; nothing else is served.
func (s *Service) CRLHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CRLPath, func(w http.ResponseWriter, r *http.Request) {
		s.serveCRL(w, r, "application/pkix-crl", func(der []byte) []byte { return der })
	})
	mux.HandleFunc("GET "+CRLPEMPath, func(w http.ResponseWriter, r *http.Request) {
		s.serveCRL(w, r, "application/x-pem-file", func(der []byte) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
		})
	})
	return mux
}

func (s *Service) serveCRL(w http.ResponseWriter, r *http.Request, contentType string, encode func([]byte) []byte) {
	if s.crl == nil {
		http.Error(w, msgNoCRL, http.StatusNotFound)
		return
	}
	c, err := s.crl.Current(r.Context())
	if err != nil {
		s.log.Error("revocation list not served", "error", err)
		http.Error(w, msgCRLUnavailable, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Expires", c.NextUpdate.UTC().Format(http.TimeFormat))
	http.ServeContent(w, r, "", c.ThisUpdate, bytes.NewReader(encode(c.DER)))
}
