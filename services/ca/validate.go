package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/castore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Limits on request fields.
const (
	maxCSRSize      = 16 << 10
	maxSerialDigits = 40 // 20 octets, RFC 5280's limit
	maxReasonLen    = 256
	maxRequestIDLen = 64
)

// signRequest is a checked Sign request.
type signRequest struct {
	pki.SignRequest
	requestID string
	// keySHA256 is the SHA-256 of the CSR's public key (SPKI): a repeated
	// request must be for the same key.
	keySHA256 []byte
}

// validateSign checks the shape of a sign request; the signer then applies
// the CA's policy to the key and names.
func validateSign(req *berthv1.SignRequest) (signRequest, error) {
	if err := ident.NodeID(req.GetNodeId()); err != nil {
		return signRequest{}, rpcerr.Invalid("node_id", ruleNodeID)
	}
	host, err := ident.Hostname(req.GetHostname())
	if err != nil {
		return signRequest{}, rpcerr.Invalid("hostname", ruleHostname)
	}
	if n := len(req.GetCsr()); n == 0 || n > maxCSRSize {
		return signRequest{}, rpcerr.Invalid("csr", ruleCSRSize)
	}
	if !validRequestID(req.GetRequestId()) {
		return signRequest{}, rpcerr.Invalid("request_id", ruleRequestID)
	}
	// The signer checks the CSR's key and signature; this parse only finds
	// the key that identifies the request.
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		return signRequest{}, fmt.Errorf("%w: %w", pki.ErrBadCSR, err)
	}
	sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	return signRequest{
		SignRequest: pki.SignRequest{NodeID: req.GetNodeId(), Hostname: host, CSR: req.GetCsr()},
		requestID:   req.GetRequestId(), keySHA256: sum[:],
	}, nil
}

// validRequestID: 1 to 64 of [a-z0-9_-].
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validateRevokeNode returns the revocation to record and the key hash to
// keep (nil: none).
func validateRevokeNode(req *berthv1.RevokeNodeCertificatesRequest) (castore.Revocation, []byte, error) {
	if ident.NodeID(req.GetNodeId()) != nil {
		return castore.Revocation{}, nil, rpcerr.Invalid("node_id", ruleNodeID)
	}
	reason := strings.TrimSpace(req.GetReason())
	if len(reason) > maxReasonLen || strings.IndexFunc(reason, unicode.IsControl) >= 0 {
		return castore.Revocation{}, nil, rpcerr.Invalid("reason", ruleReason)
	}
	keep := req.GetKeepKeySha256()
	if len(keep) != 0 && len(keep) != sha256.Size {
		return castore.Revocation{}, nil, rpcerr.Invalid("keep_key_sha256", ruleKeyHash)
	}
	if len(keep) != 0 && req.GetNodeRevoked() {
		return castore.Revocation{}, nil, rpcerr.Invalid("keep_key_sha256", ruleKeepRevoked)
	}
	return castore.Revocation{NodeID: req.GetNodeId(), Reason: reason, Node: req.GetNodeRevoked()}, keep, nil
}

// validateRevoke returns the serial in canonical form (lower-case hex, no
// leading zeros, as the issued log holds it) and the reason.
func validateRevoke(req *berthv1.RevokeRequest) (serial, reason string, err error) {
	serial, err = normalizeSerial(req.GetSerial())
	if err != nil {
		return "", "", err
	}
	reason = strings.TrimSpace(req.GetReason())
	if len(reason) > maxReasonLen || strings.IndexFunc(reason, unicode.IsControl) >= 0 {
		return "", "", rpcerr.Invalid("reason", ruleReason)
	}
	return serial, reason, nil
}

// normalizeSerial accepts hex with or without a 0x prefix or colons
// between octets ("01:a2:…", as openssl prints it).
func normalizeSerial(s string) (string, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" || len(s) > maxSerialDigits {
		return "", rpcerr.Invalid("serial", ruleSerial)
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return "", rpcerr.Invalid("serial", ruleSerial)
	}
	return n.Text(16), nil
}

func validateListIssued(req *berthv1.ListIssuedRequest) (nodeID string, since time.Time, err error) {
	if id := req.GetNodeId(); id != "" {
		if ident.NodeID(id) != nil {
			return "", time.Time{}, rpcerr.Invalid("node_id", ruleNodeID)
		}
		nodeID = id
	}
	since, err = validateSince(req.GetSince())
	return nodeID, since, err
}

// validateSince turns an optional timestamp into a time; unset is the zero
// time, which keeps everything.
func validateSince(ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, rpcerr.Invalid("since", ruleTimestamp)
	}
	return ts.AsTime(), nil
}
