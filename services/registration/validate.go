package registration

import (
	"crypto/x509"
	"net"
	"regexp"
	"strings"
	"unicode"

	"crypto/hpke"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Limits on what a node may send.
const (
	maxCSRBytes      = 8 << 10
	maxMACs          = 64
	maxSerialLen     = 128
	maxBundleKey     = 4 << 10
	maxLabels        = 32
	maxDescription   = 256
	maxTokenUses     = 1_000_000
	maxPageSize      = 1000
	defaultPageSize  = 100
	tokenIDLen       = 8
	tokenSecretLen   = 26
	maxTokenTTLHours = 24 * 366
)

var (
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`)
	labelValRE = regexp.MustCompile(`^[A-Za-z0-9._:/@+=-]{0,63}$`)
	tokenIDRE  = regexp.MustCompile(`^[a-z0-9]{8}$`)
	tokenSecRE = regexp.MustCompile(`^[a-z0-9]{26}$`)
)

// registration is a validated RegisterRequest.
type registration struct {
	hardwareUUID string
	macs         []string
	hostname     string
	serial       string
	csr          []byte
	kem          uint16
	bundleKey    []byte
	tokenID      string
	tokenSecret  string
	source       keys.Assurance
	tpm          *berthv1.TPMEvidence // with source tpm only
}

func validateRegister(req *berthv1.RegisterRequest, caller mtls.Identity) (registration, error) {
	var r registration
	f := req.GetFacts()
	if f == nil {
		return r, rpcerr.Invalid("facts", ruleRequired)
	}
	r.hardwareUUID = strings.ToLower(strings.TrimSpace(f.GetHardwareUuid()))
	if !uuidRE.MatchString(r.hardwareUUID) {
		return r, rpcerr.Invalid("facts.hardware_uuid", ruleUUID)
	}
	host, err := validateHostname(f.GetHostname())
	if err != nil {
		return r, err
	}
	r.hostname = host
	if len(f.GetMacs()) > maxMACs {
		return r, rpcerr.Invalid("facts.macs", ruleMACCount)
	}
	for _, m := range f.GetMacs() {
		hw, err := net.ParseMAC(m)
		if err != nil {
			return r, rpcerr.Invalid("facts.macs", ruleMAC)
		}
		r.macs = append(r.macs, hw.String())
	}
	if len(f.GetSerial()) > maxSerialLen || !printable(f.GetSerial()) {
		return r, rpcerr.Invalid("facts.serial", rulePrintable)
	}
	r.serial = f.GetSerial()
	if err := validateCSR(req.GetCsr(), host, caller); err != nil {
		return r, err
	}
	r.csr = req.GetCsr()
	if r.kem, r.bundleKey, err = validateBundleKey(req.GetBundleKey()); err != nil {
		return r, err
	}
	if req.GetToken() != "" {
		if r.tokenID, r.tokenSecret, err = parseToken(req.GetToken()); err != nil {
			return r, err
		}
	}
	if r.source, err = validateIdentitySource(req.GetIdentitySource()); err != nil {
		return r, err
	}
	switch {
	case r.source == keys.AssuranceTPM && req.GetTpm() == nil:
		return r, errTPMRequired
	case r.source != keys.AssuranceTPM && req.GetTpm() != nil:
		return r, errTPMNotTPM
	}
	r.tpm = req.GetTpm()
	return r, nil
}

// validateHostname applies the one host-name rule, which the CA applies
// too, so that a name accepted here is never refused at signing time,
// minutes later, on approval.
func validateHostname(h string) (string, error) {
	n, err := ident.Hostname(h)
	if err != nil {
		return "", rpcerr.Invalid("facts.hostname", ruleHostname)
	}
	return n, nil
}

// validateCSR checks that the CSR is well formed, self-signed by the key the
// TLS session proved, and asks for no identity beyond the node's host name.
func validateCSR(der []byte, hostname string, caller mtls.Identity) error {
	if len(der) == 0 {
		return rpcerr.Invalid("csr", ruleCSRSize)
	}
	if len(der) > maxCSRBytes {
		return rpcerr.Invalid("csr", ruleCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return rpcerr.Invalid("csr", ruleCSRParse)
	}
	if err := csr.CheckSignature(); err != nil {
		return rpcerr.Invalid("csr", ruleCSRSignature)
	}
	if caller.Leaf == nil || !mtls.SameKey(csr.PublicKey, caller.Leaf.PublicKey) {
		return errCSRKeyMismatch
	}
	if len(csr.URIs) > 0 {
		return errCSRIdentity
	}
	for _, d := range csr.DNSNames {
		if !strings.EqualFold(d, hostname) {
			return rpcerr.Invalid("csr", ruleCSRDNSNames)
		}
	}
	if len(csr.IPAddresses) > 0 || len(csr.EmailAddresses) > 0 {
		return rpcerr.Invalid("csr", ruleCSRSANs)
	}
	return nil
}

func validateBundleKey(k *berthv1.BundleKey) (uint16, []byte, error) {
	if k == nil || len(k.GetPublicKey()) == 0 {
		return 0, nil, rpcerr.Invalid("bundle_key", ruleRequired)
	}
	if k.GetKemId() > 0xffff || len(k.GetPublicKey()) > maxBundleKey {
		return 0, nil, rpcerr.Invalid("bundle_key", ruleBundleKey)
	}
	kem, err := hpke.NewKEM(uint16(k.GetKemId()))
	if err != nil {
		return 0, nil, rpcerr.Invalid("bundle_key.kem_id", ruleKEM)
	}
	if _, err := kem.NewPublicKey(k.GetPublicKey()); err != nil {
		return 0, nil, rpcerr.Invalid("bundle_key.public_key", rulePublicKey)
	}
	return uint16(k.GetKemId()), k.GetPublicKey(), nil
}

// parseToken splits "id.secret".
func parseToken(t string) (id, secret string, err error) {
	id, secret, ok := strings.Cut(strings.TrimSpace(t), ".")
	if !ok || !tokenIDRE.MatchString(id) || !tokenSecRE.MatchString(secret) {
		return "", "", rpcerr.Invalid("token", ruleToken)
	}
	return id, secret, nil
}

func validateNodeID(id string) error {
	if ident.NodeID(id) != nil {
		return rpcerr.Invalid("id", ruleNodeID)
	}
	return nil
}

func validateTokenID(id string) error {
	if !tokenIDRE.MatchString(id) {
		return rpcerr.Invalid("id", ruleTokenID)
	}
	return nil
}

func validateLabels(field string, labels map[string]string) error {
	if len(labels) > maxLabels {
		return rpcerr.Invalid(field, ruleLabelCount)
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) {
			return rpcerr.Invalid(field, ruleLabelKey)
		}
		if !labelValRE.MatchString(v) {
			return rpcerr.Invalid(field, ruleLabelValue)
		}
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func decodePageToken(t string) (string, error) {
	after, ok := ident.AfterPageToken(t)
	if !ok {
		return "", rpcerr.Invalid("page_token", rulePageToken)
	}
	return after, nil
}

// validateLabelChange checks a LabelNode request: the node ID, the labels
// set by the rules of labels, the keys removed by the rule of keys.
func validateLabelChange(req *berthv1.LabelNodeRequest) error {
	if err := validateNodeID(req.GetId()); err != nil {
		return err
	}
	if len(req.GetSet()) == 0 && len(req.GetRemove()) == 0 {
		return rpcerr.Invalid("set", ruleLabelChange)
	}
	if err := validateLabels("set", req.GetSet()); err != nil {
		return err
	}
	if len(req.GetRemove()) > maxLabels {
		return rpcerr.Invalid("remove", ruleLabelCount)
	}
	for _, k := range req.GetRemove() {
		if !labelKeyRE.MatchString(k) {
			return rpcerr.Invalid("remove", ruleLabelKey)
		}
		if _, both := req.GetSet()[k]; both {
			return rpcerr.Invalid("remove", ruleLabelBoth)
		}
	}
	return nil
}
