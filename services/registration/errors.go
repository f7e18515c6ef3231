package registration

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/apitoken"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
)

// Public messages. Clients see only these (and validation messages, which
// are built from field names and the rules below), never an internal cause.
const (
	msgUnknownKey       = "no node is registered with this key"
	msgPending          = "node is pending approval"
	msgRejected         = "node was rejected by the administrator"
	msgRevoked          = "node is revoked"
	msgTokenRequired    = "a bootstrap token is required to register a new node"
	msgTokenInvalid     = "bootstrap token is invalid"
	msgTokenExpired     = "bootstrap token has expired"
	msgTokenExhausted   = "bootstrap token has no uses left"
	msgCSRKeyMismatch   = "CSR key does not match the key of the TLS session"
	msgCSRIdentity      = "CSR requests a URI identity; the CA names certificates after the node"
	msgHardwareConflict = "another node with this hardware UUID is registered with a different key; an administrator must allow its replacement or delete it"
	msgNodeNotFound     = "node not found"
	msgTooManyLabels    = "the node would hold more than 32 labels"
	msgTokenNotFound    = "token not found"
	msgAPITokenNotFound = "API token not found"
	msgBadTransition    = "node status does not allow this change"
	msgKeyConflict      = "this key is already registered"
	msgCAUnavailable    = "certificate authority is unavailable; retry later"
	msgBundlesDown      = "bundle store is unavailable; retry later"
	msgTokenFailures    = "too many failed bootstrap token attempts from this address; retry after the delay given"
	msgTPMRequired      = "identity_source tpm needs the TPM's evidence (tpm)"
	msgTPMNotTPM        = "tpm evidence comes only with identity_source tpm"
	msgTPMKeyMismatch   = "the TPM evidence is not about this node's key: the identity key's public area must be the TLS key's, and the EK certificate the EK's"
	msgNoChallenge      = "no open TPM challenge for this key and EK (it expired, was answered, or was made by another server); register again without activated_secret"
	msgActivation       = "TPM credential activation failed: the identity key is not in the TPM that holds this endorsement key"
	msgTooManyChallenge = "too many TPM registrations in progress; retry later"
	msgTPMTokenRequired = "a bootstrap token is required: this TPM's endorsement key is not enrolled (berthctl ek import) and its certificate does not qualify it"
	msgAKActivation     = "TPM credential activation failed: the attestation key is not in the TPM that holds this endorsement key"
	msgNoAK             = "this node registered no TPM attestation key, so it cannot quote its boot; resume without a quote"
	msgQuoteNonce       = "the quote's nonce was not issued to this node by this deployment"
	msgQuoteExpired     = "the quote's nonce has expired; resume again for a new one"
	msgQuoteReplay      = "the quote's nonce was used already or superseded by a newer one (a replayed quote?)"
	msgQuoteInvalid     = "the quote does not verify: not signed by this node's attestation key, or not over its nonce and the boot PCRs asked for"
	msgBootRefused      = "boot refused by PCR policy"
	msgPolicyNotFound   = "no PCR policy for this label"
)

// Validation rules, shown after the field name.
const (
	ruleRequired       = "is required"
	ruleUUID           = "must be a UUID like 4c4c4544-0042-3510-8051-b2c04f4e4d32"
	ruleMACCount       = "must hold at most 64 addresses"
	ruleMAC            = "must each be a hardware address like 52:54:00:12:34:56"
	rulePrintable      = "must be at most 128 printable characters"
	ruleHostname       = ident.HostnameRule
	ruleCSRSize        = "must be a DER PKCS#10 certificate request of at most 8 KiB"
	ruleCSRParse       = "must be a DER PKCS#10 certificate request"
	ruleCSRSignature   = "must carry a signature that verifies"
	ruleCSRDNSNames    = "must ask for no DNS name but the node's hostname"
	ruleCSRSANs        = "must ask for no IP address or email SAN"
	ruleBundleKey      = "must name a KEM and hold a public key of at most 4 KiB"
	ruleKEM            = "must be a supported HPKE KEM"
	rulePublicKey      = "must be a valid public key for its KEM"
	ruleToken          = `must be "id.secret" as printed by berthctl tokens create`
	ruleNodeID         = ident.NodeIDRule
	ruleTokenID        = "must be a token ID (8 lower-case letters and digits)"
	ruleAPITokenID     = "must be an API token ID (16 lower-case hex digits)"
	ruleAPITokenName   = "must be at most 64 letters, digits and . _ @ -"
	ruleAPITokenTTL    = "must be between 0 (never expires) and ten years"
	ruleRole           = "must be viewer, operator or admin"
	ruleLabelCount     = "must hold at most 32 labels"
	ruleLabelBoth      = "must not name a key that set names too"
	ruleLabelChange    = "must set or remove at least one label"
	ruleLabelKey       = "must have keys of 1-63 letters, digits, '.', '_', '/', '-'"
	ruleLabelValue     = "must have values of at most 63 letters, digits and . _ : / @ + = -"
	rulePageSize       = "must be between 0 and 1000"
	ruleStatus         = "must be a known node status"
	rulePageToken      = "must be a next_page_token returned by ListNodes"
	ruleText           = "must be at most 256 printable characters"
	ruleReasonReserved = `must not be "superseded", which is reserved for replaced hardware`
	ruleTTL            = "must be between 0 and one year"
	ruleUses           = "must be between 0 and 1000000"
	// keys.AssuranceNames, spelled out so that the message is a constant.
	ruleIdentitySource      = "must be one of tpm, seed-file, file or site-secret"
	ruleAllowSiteSecretAuto = "needs auto_approve: it only lets auto-approval take site-secret identities"
	ruleAllowSiteSecretMin  = "contradicts a min_identity above site-secret"
	ruleTPMSize             = "must hold TPM structures and certificates of at most 8 KiB each"
	ruleTPMEvidence         = "must be a TPM public area (or EK certificate) of the kind berth-agent --identity tpm sends"
	ruleEKCount             = "must hold 1 to 10000 endorsement keys"
	ruleEKHash              = `must be "sha256:" and 64 lower-case hex digits, as nodes get shows ek_hash`
	ruleEKTwice             = "must not name one endorsement key twice"
	ruleQuoteSize           = "must hold TPM structures of at most 8 KiB and at most 24 PCR values"
	ruleQuotePCRs           = "must name PCRs 0-23"
	ruleQuote               = "must be a TPM2_Quote as berth-agent --identity tpm sends it"
	rulePolicyLabel         = `must be one label "key=value" (key: 1-63 letters, digits, '.', '_', '/', '-'; value: 1-63 letters, digits and . _ : / @ + = -)`
	rulePolicyDigests       = "must hold 1 to 1000 digests"
	rulePolicyDigest        = `must each be "sha256:" and 64 lower-case hex digits, as nodes get shows boot_pcr_digest`
	rulePolicyDigestTwice   = "must not name one digest twice"
)

// Errors of the registration core. Store errors are mapped as well.
var (
	errUnknownKey         = errors.New(msgUnknownKey)
	errPending            = errors.New(msgPending)
	errRejected           = errors.New(msgRejected)
	errRevoked            = errors.New(msgRevoked)
	errTokenRequired      = errors.New(msgTokenRequired)
	errTokenInvalid       = errors.New(msgTokenInvalid)
	errCSRKeyMismatch     = errors.New(msgCSRKeyMismatch)
	errCSRIdentity        = errors.New(msgCSRIdentity)
	errHardwareConflict   = errors.New(msgHardwareConflict)
	errNodeNotFound       = errors.New(msgNodeNotFound)
	errTokenNotFound      = errors.New(msgTokenNotFound)
	errAPITokenNotFound   = errors.New(msgAPITokenNotFound)
	errCAUnavailable      = errors.New(msgCAUnavailable)
	errBundlesUnavailable = errors.New(msgBundlesDown)
	// errTooManyTokenFailures is a source that failed too many token
	// attempts; it is wrapped with the delay after which it may try again.
	errTooManyTokenFailures = errors.New(msgTokenFailures)
	errTPMRequired          = errors.New(msgTPMRequired)
	errTPMNotTPM            = errors.New(msgTPMNotTPM)
	errTPMKeyMismatch       = errors.New(msgTPMKeyMismatch)
	errNoChallenge          = errors.New(msgNoChallenge)
	errActivation           = errors.New(msgActivation)
	errTooManyChallenges    = errors.New(msgTooManyChallenge)
	errTPMTokenRequired     = errors.New(msgTPMTokenRequired)
	errAKActivation         = errors.New(msgAKActivation)
	errNoAK                 = errors.New(msgNoAK)
	errQuoteNonce           = errors.New(msgQuoteNonce)
	errQuoteNonceExpired    = errors.New(msgQuoteExpired)
	errQuoteReplay          = errors.New(msgQuoteReplay)
	errQuoteInvalid         = errors.New(msgQuoteInvalid)
	errQuoteMalformed       = rpcerr.Invalid("quote", ruleQuote)
	errPolicyNotFound       = errors.New(msgPolicyNotFound)
)

// errorTable is the service's mapping of errors to gRPC status.
var errorTable = rpcerr.Table{
	rpcerr.Is(errUnknownKey, codes.NotFound, msgUnknownKey),
	rpcerr.Is(errPending, codes.FailedPrecondition, msgPending),
	rpcerr.Is(errRejected, codes.PermissionDenied, msgRejected),
	rpcerr.Is(errRevoked, codes.PermissionDenied, msgRevoked),
	rpcerr.Is(errTokenRequired, codes.InvalidArgument, msgTokenRequired),
	rpcerr.Is(errTokenInvalid, codes.PermissionDenied, msgTokenInvalid),
	rpcerr.Is(regstore.ErrTokenInvalid, codes.PermissionDenied, msgTokenInvalid),
	rpcerr.Is(regstore.ErrTokenExpired, codes.PermissionDenied, msgTokenExpired),
	rpcerr.Is(regstore.ErrTokenExhausted, codes.ResourceExhausted, msgTokenExhausted),
	rpcerr.Is(errCSRKeyMismatch, codes.PermissionDenied, msgCSRKeyMismatch),
	rpcerr.Is(errCSRIdentity, codes.PermissionDenied, msgCSRIdentity),
	rpcerr.Is(errHardwareConflict, codes.FailedPrecondition, msgHardwareConflict),
	rpcerr.Is(errNodeNotFound, codes.NotFound, msgNodeNotFound),
	rpcerr.Is(regstore.ErrTooManyLabels, codes.InvalidArgument, msgTooManyLabels),
	rpcerr.Is(errTokenNotFound, codes.NotFound, msgTokenNotFound),
	rpcerr.Is(errAPITokenNotFound, codes.NotFound, msgAPITokenNotFound),
	rpcerr.Is(errNoConsoleSession, codes.NotFound, msgNoConsoleSession),
	rpcerr.Is(errNoSignInLink, codes.NotFound, msgNoSignInLink),
	rpcerr.Is(errTokenNotLive, codes.FailedPrecondition, msgTokenNotLive),
	// A refused API token: the same messages whether the check ran here or
	// the front door asked for it (apitoken.Client reads them back).
	rpcerr.Is(apitoken.ErrMalformed, codes.Unauthenticated, apitoken.MsgMalformed),
	rpcerr.Is(apitoken.ErrUnknown, codes.Unauthenticated, apitoken.MsgUnknown),
	rpcerr.Is(apitoken.ErrRevoked, codes.Unauthenticated, apitoken.MsgRevoked),
	rpcerr.Is(apitoken.ErrExpired, codes.Unauthenticated, apitoken.MsgExpired),
	rpcerr.Is(regstore.ErrPrecondition, codes.FailedPrecondition, msgBadTransition),
	rpcerr.Is(regstore.ErrConflict, codes.AlreadyExists, msgKeyConflict),
	rpcerr.Is(errCAUnavailable, codes.Unavailable, msgCAUnavailable),
	rpcerr.Is(errBundlesUnavailable, codes.Unavailable, msgBundlesDown),
	rpcerr.Is(errTooManyTokenFailures, codes.ResourceExhausted, msgTokenFailures),
	rpcerr.Is(errTPMRequired, codes.InvalidArgument, msgTPMRequired),
	rpcerr.Is(errTPMNotTPM, codes.InvalidArgument, msgTPMNotTPM),
	rpcerr.Is(errTPMKeyMismatch, codes.PermissionDenied, msgTPMKeyMismatch),
	rpcerr.Is(errNoChallenge, codes.FailedPrecondition, msgNoChallenge),
	rpcerr.Is(errActivation, codes.PermissionDenied, msgActivation),
	rpcerr.Is(errTooManyChallenges, codes.ResourceExhausted, msgTooManyChallenge),
	rpcerr.Is(errTPMTokenRequired, codes.InvalidArgument, msgTPMTokenRequired),
	rpcerr.Is(errAKActivation, codes.PermissionDenied, msgAKActivation),
	rpcerr.Is(errNoAK, codes.FailedPrecondition, msgNoAK),
	rpcerr.Is(errQuoteNonce, codes.PermissionDenied, msgQuoteNonce),
	rpcerr.Is(errQuoteNonceExpired, codes.FailedPrecondition, msgQuoteExpired),
	rpcerr.Is(errQuoteReplay, codes.PermissionDenied, msgQuoteReplay),
	rpcerr.Is(errQuoteInvalid, codes.PermissionDenied, msgQuoteInvalid),
	rpcerr.As(codes.FailedPrecondition, func(e *bootRefusedError) string { return e.Error() }),
	rpcerr.Is(errPolicyNotFound, codes.NotFound, msgPolicyNotFound),
}
