// Package regstore is the registration service's store: bootstrap tokens,
// the registry of nodes, keyed by the SHA-256 of each node's identity key,
// and the node lifecycle event log (package eventlog) that the management
// engine follows by cursor.
//
// Every change to a node's lifecycle appends its event in the transaction
// that makes the change, so the two commit together: a change is never
// without its event, an event never without its change, and a refused
// change appends nothing. The events, by method:
//
//	RegisterNode      registered (or replaced, when it replaces a node):
//	                  status, token, hostname
//	SetStatus         approved, rejected, revoked (pending, should a caller
//	                  move a node back): status, previous_status, actor;
//	                  only when the status changes
//	CompleteIssuance  certificate_issued for a node's first certificate
//	                  (or the first after a replacement), else
//	                  certificate_renewed: serial, not_after (RFC 3339,
//	                  UTC) and previous_serial when there was one.
//	                  CompleteIssuance appends nothing for a certificate
//	                  it counts but does not install
//	DeleteNode        deleted: actor
//	RegisterNode      also duplicate_hardware, after registered, when other
//	                  nodes report the same hardware UUID or one of the
//	                  same MACs: duplicate_of (their IDs), hardware_uuid,
//	                  macs (the shared values)
//	NoteDuplicate     duplicate_hardware on a registered node whose
//	                  hardware a refused registration claimed:
//	                  hardware_uuid, claimant_key, identity_source
//	CreateAPIToken    api_token_created, of no node: api_token (its ID),
//	                  name, role, actor
//	RevokeAPIToken    api_token_revoked, of no node: api_token, name,
//	                  actor; only when it was not revoked yet
//	CreateToken       token_created, of no node: token, actor
//	RevokeToken       token_revoked, of no node: token, actor; only when
//	                  it was not revoked yet
//	AllowReplacement  replacement_allowed: actor; only when it was not
//	                  allowed yet
//	ImportEKs         eks_imported, of no node: added, updated, actor
//	SetPCRPolicy      pcr_policy_set, of no node: label, enforce, actor
//	DeletePCRPolicy   pcr_policy_deleted, of no node: label, actor
//	CreateConsoleSession  sign_in_link_created, of no node, for a link
//	                  only: actor (whom the link signs in)
//
// Details whose value would be empty are left out.
package regstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
)

// Status is where a node stands in the registration lifecycle.
type Status string

// The node statuses. A node starts pending (or approved, with an auto-approve
// token); an administrator moves it on.
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved"
	StatusRejected Status = "rejected"
	StatusRevoked  Status = "revoked"
)

// Cert is the certificate a node currently holds.
type Cert struct {
	Serial    string // lower-case hex
	NotBefore time.Time
	NotAfter  time.Time
	Chain     [][]byte // DER, leaf first
}

// Node is one registered machine. Empty and nil Labels, MACs and Chain are the
// same thing; the stores return nil.
type Node struct {
	ID           string
	Status       Status
	KeySHA256    []byte // SHA-256 of the identity public key; 32 bytes, unique
	HardwareUUID string
	MACs         []string
	Hostname     string
	Serial       string
	Labels       map[string]string
	BundleKEM    uint16
	BundleKey    []byte
	// CSR is the node's registration request, kept so that the CA can
	// renew its certificate for the same key without asking the node.
	CSR                []byte
	TokenID            string // the token it registered with
	ReplacementAllowed bool
	Cert               *Cert // nil when none
	CertificatesIssued int64
	CreatedAt          time.Time
	UpdatedAt          time.Time
	// IdentitySource is how the node holds its identity key, as the
	// agent reported it (keys.Assurance: "tpm", "seed-file", "file",
	// "site-secret"); "" for nodes registered before it was recorded.
	IdentitySource string
	// EKHash names a TPM node's endorsement key (attest.EKHash) and
	// EKCertificate what its EK certificate showed ("trusted",
	// "untrusted", "unchecked", "none"); both "" for other nodes.
	EKHash        string
	EKCertificate string
	// AKPublic is a TPM node's attestation key (TPM public area),
	// certified at registration; nil for nodes without one, which cannot
	// quote their boot.
	AKPublic []byte
	// BootPCRDigest is the PCR digest of the node's last accepted boot
	// quote ("sha256:" and hex; "" for none), BootPCRDigestAt when it was
	// accepted, BootNonceTime the issue time (unix nanoseconds) of the
	// nonce it quoted: a quote is accepted only with a newer nonce.
	BootPCRDigest   string
	BootPCRDigestAt time.Time
	BootNonceTime   int64
	// BootPolicyViolation says why the node's boot does not satisfy the
	// PCR policies of its labels; "" when it does.
	BootPolicyViolation string
	// StatusReason is the reason given with the node's current status
	// (a rejection's or revocation's); "" when none was.
	StatusReason string
}

// Boot is what an accepted boot quote says, for RecordBoot.
type Boot struct {
	PCRDigest       string
	NonceTime       int64 // unix nanoseconds, from the quoted nonce
	PolicyViolation string
}

// PCRPolicy is the set of boot PCR digests allowed for the nodes carrying
// the label LabelKey=LabelValue.
type PCRPolicy struct {
	LabelKey   string
	LabelValue string
	Digests    []string
	Enforce    bool
	UpdatedAt  time.Time
}

// EnrolledEK is an endorsement key an administrator enrolled, so that the
// TPM holding it registers without a bootstrap token.
type EnrolledEK struct {
	Hash      string // attest.EKHash form: "sha256:" and hex
	Label     string
	CreatedAt time.Time
}

// Token is a bootstrap token. Only a hash of its secret is stored.
type Token struct {
	ID          string
	SecretHash  []byte // SHA-256 of the secret
	ExpiresAt   time.Time
	UsesLeft    int
	AutoApprove bool
	Labels      map[string]string
	Description string
	Revoked     bool
	CreatedAt   time.Time
	// CreatedBy is who created the token: recorded in its token_created
	// event, not with the token.
	CreatedBy string
	// MinIdentity is the weakest identity source the token auto-approves
	// ("" = any); AllowSiteSecret lets it auto-approve site-secret ones.
	// The store keeps them as given; the service decides.
	MinIdentity     string
	AllowSiteSecret bool
}

// APIToken is a bearer credential of the admin API. Only the SHA-256 of
// its secret is stored. Role is "viewer", "operator" or "admin"; the
// store refuses anything else. Zero times mean: never expires, never
// used, not revoked.
type APIToken struct {
	ID         string
	Name       string
	Role       string
	SecretHash []byte // SHA-256 of the secret; 32 bytes
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt time.Time
	RevokedAt  time.Time
	// CreatedBy is the caller that created it ("admin:NAME", "token:ID/NAME").
	CreatedBy string
}

// Revoked reports whether the token was revoked.
func (t APIToken) Revoked() bool { return !t.RevokedAt.IsZero() }

// Expired reports whether the token has expired at now. A token is usable
// strictly before ExpiresAt.
func (t APIToken) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// Intent is an open certificate issuance: recorded before the CA is asked,
// closed with the CA's answer. The CA's Sign is idempotent on RequestID, so
// an intent can be completed by whoever finds it open, any number of times
// concurrently: the node's next call, another replica, the reconciler.
type Intent struct {
	RequestID string
	NodeID    string
	// KeySHA256, Hostname and CSR are the node's when the intent was
	// opened: the certificate is for that key even if the node has moved on.
	KeySHA256 []byte
	Hostname  string
	CSR       []byte
	// PrevSerial is the node's current serial when the intent was opened
	// ("" for none): the certificate replaces that one only.
	PrevSerial string
	CreatedAt  time.Time
}

// Claim is what a refused registration said about a registered node's
// hardware, for NoteDuplicate.
type Claim struct {
	HardwareUUID   string
	KeySHA256      []byte // the claimant's identity key hash
	IdentitySource string
}

// NodeFilter selects nodes for ListNodes.
type NodeFilter struct {
	Status  Status            // "" = any
	Labels  map[string]string // all must match
	AfterID string            // paging: only IDs > AfterID
	Limit   int               // <= 0 = no limit
}

// Event types of the node lifecycle log; see the package documentation.
const (
	EventRegistered         = "registered"
	EventReplaced           = "replaced"
	EventApproved           = "approved"
	EventRejected           = "rejected"
	EventRevoked            = "revoked"
	EventPending            = "pending"
	EventDeleted            = "deleted"
	EventCertificateIssued  = "certificate_issued"
	EventCertificateRenewed = "certificate_renewed"
	EventDuplicateHardware  = "duplicate_hardware"
	// EventAPITokenCreated and EventAPITokenRevoked are an administrator's
	// changes to the admin API's tokens; their NodeID is empty.
	EventAPITokenCreated = "api_token_created"
	EventAPITokenRevoked = "api_token_revoked"
	// EventBootDigestChanged: a quoted boot's PCR digest differs from the
	// node's previous one (or is its first).
	EventBootDigestChanged = "boot_digest_changed"
	// EventBootPolicyViolation: the node's boot broke the PCR policies of
	// its labels (or broke them for another reason than before).
	EventBootPolicyViolation = "boot_policy_violation"
	// EventBootPolicyCleared: a node whose boot broke them no longer does.
	EventBootPolicyCleared = "boot_policy_cleared"
	// EventLabeled: an operator changed the node's labels.
	EventLabeled = "labeled"
	// Administrators' other changes, so that the log says who did each:
	// bootstrap tokens, replacement, EK enrolment and PCR policies.
	EventTokenCreated       = "token_created"
	EventTokenRevoked       = "token_revoked"
	EventReplacementAllowed = "replacement_allowed"
	EventEKsImported        = "eks_imported"
	EventPCRPolicySet       = "pcr_policy_set"
	EventPCRPolicyDeleted   = "pcr_policy_deleted"
	// EventSignInLinkCreated: an admin minted a one-time console sign-in
	// link (berthctl ui link, berthd dev's banner).
	EventSignInLinkCreated = "sign_in_link_created"
)

// EventTypes returns every event type the store appends.
func EventTypes() []string {
	return []string{EventRegistered, EventReplaced, EventApproved, EventRejected, EventRevoked, EventPending,
		EventDeleted, EventCertificateIssued, EventCertificateRenewed, EventDuplicateHardware,
		EventBootDigestChanged, EventBootPolicyViolation, EventBootPolicyCleared, EventAPITokenCreated, EventAPITokenRevoked, EventLabeled,
		EventTokenCreated, EventTokenRevoked, EventReplacementAllowed, EventEKsImported, EventPCRPolicySet, EventPCRPolicyDeleted, EventSignInLinkCreated}
}

// Keys of event details.
const (
	DetailStatus         = "status"
	DetailPreviousStatus = "previous_status"
	DetailToken          = "token"
	DetailHostname       = "hostname"
	DetailActor          = "actor"
	DetailSerial         = "serial"
	DetailNotAfter       = "not_after"
	DetailPreviousSerial = "previous_serial"
	DetailIdentitySource = "identity_source"
	DetailDuplicateOf    = "duplicate_of"
	DetailHardwareUUID   = "hardware_uuid"
	DetailMACs           = "macs"
	DetailClaimantKey    = "claimant_key"
	DetailAPIToken       = "api_token"
	DetailName           = "name"
	DetailRole           = "role"
	DetailDigest         = "digest"
	DetailPreviousDigest = "previous_digest"
	DetailReason         = "reason"
	DetailPreviousReason = "previous_reason"
	// DetailLabelsSet and DetailLabelsRemoved are a labeled event's
	// changes: "k=v,k2=v2" and "k3,k4", keys sorted.
	DetailLabelsSet     = "set"
	DetailLabelsRemoved = "removed"
	// DetailAdded and DetailUpdated count an EK import's new and relabelled
	// EKs; DetailLabel and DetailEnforce name a PCR policy ("key=value").
	DetailAdded   = "added"
	DetailUpdated = "updated"
	DetailLabel   = "label"
	DetailEnforce = "enforce"
)

// Errors returned, wrapped, by every Store.
var (
	ErrNotFound       = errors.New("not found")
	ErrConflict       = errors.New("conflict")
	ErrTokenInvalid   = errors.New("token unknown or revoked")
	ErrTokenExpired   = errors.New("token expired")
	ErrTokenExhausted = errors.New("token has no uses left")
	ErrPrecondition   = errors.New("status transition not allowed")
	// ErrTooManyLabels: a label change would leave a node more labels
	// than it may have.
	ErrTooManyLabels = errors.New("too many labels")
	// ErrStaleNonce: a boot quote's nonce is not newer than the last one
	// the node quoted (a replay, or a race with its own other call).
	ErrStaleNonce = errors.New("quote nonce already used or superseded")
)

// HardwareClaimedError is RegisterIssuing's refusal of a node whose
// hardware UUID node NodeID reports with another key. Replaceable: an
// admin allowed NodeID's replacement, and registering again with it as
// replaceID replaces it.
type HardwareClaimedError struct {
	NodeID      string
	Replaceable bool
}

func (e *HardwareClaimedError) Error() string {
	if e.Replaceable {
		return fmt.Sprintf("hardware UUID registered to node %s, which may be replaced", e.NodeID)
	}
	return fmt.Sprintf("hardware UUID registered to node %s with another key", e.NodeID)
}

// KeyRegisteredError is RegisterIssuing's refusal of a key that node Node
// holds already: a node registering again, perhaps a retry whose first
// attempt committed. It is an ErrConflict.
type KeyRegisteredError struct{ Node Node }

func (e *KeyRegisteredError) Error() string {
	return fmt.Sprintf("key registered already, by node %s", e.Node.ID)
}

// Is makes a KeyRegisteredError an ErrConflict.
func (e *KeyRegisteredError) Is(target error) bool { return target == ErrConflict }

// Store holds the registration service's state. Implementations are safe for
// concurrent use by several goroutines and several processes (replicas) on one
// database. Times are stored in UTC at microsecond precision.
type Store interface {
	// CreateToken stores t as given; ErrConflict if the ID is taken.
	CreateToken(ctx context.Context, t Token) error
	// GetToken returns token id; ErrNotFound if absent.
	GetToken(ctx context.Context, id string) (Token, error)
	// ListTokens returns tokens ordered by CreatedAt (then ID); only those
	// active at now unless includeInactive.
	ListTokens(ctx context.Context, includeInactive bool, now time.Time) ([]Token, error)
	// RevokeToken marks the token revoked and returns it; revoking twice is
	// not an error.
	RevokeToken(ctx context.Context, id string, now time.Time, actor string) (Token, error)
	// RegisterNode atomically consumes one use of token tokenID (must be
	// active at now, else ErrTokenInvalid/ErrTokenExpired/ErrTokenExhausted
	// and nothing changes) and creates n with CreatedAt and UpdatedAt set to
	// now (ErrConflict if n.KeySHA256 or n.ID is already registered; nothing
	// changes, the use is not consumed). n.TokenID is set to tokenID.
	//
	// When replaceID != "", instead of creating, it overwrites node replaceID
	// in place with n: it keeps ID, CreatedAt and CertificatesIssued, clears
	// Cert and ReplacementAllowed, and takes everything else (key, facts,
	// labels, bundle key, CSR, status) from n. ErrNotFound if replaceID does
	// not exist; ErrPrecondition if it no longer has ReplacementAllowed.
	//
	// tokenID "" registers without a token: nothing is consumed and
	// n.TokenID is "". The caller has decided that the node needs none (an
	// enrolled TPM endorsement key).
	//
	// A malformed n (empty ID, key hash not 32 bytes, unknown status) is
	// refused with a plain error before anything else is looked at.
	RegisterNode(ctx context.Context, tokenID string, now time.Time, n Node, replaceID string) (Node, error)
	// RegisterIssuing is RegisterNode that, when it leaves the node
	// approved and requestID is not "", also opens the node's first
	// issuance in the same transaction: the intent ClaimIssuance would
	// open (requestID, the node's ID, key, hostname and CSR, no previous
	// serial, created at now), which it returns. So an approved node is
	// never without a certificate or an open issuance because a crash came
	// between two writes, and registration pays one commit for both. The
	// zero Intent when none was opened: the node is not approved, or a
	// replaced node still has its old key's issuance open (the caller
	// claims as for any node).
	//
	// Unlike RegisterNode, it refuses a node whose hardware UUID another
	// node (neither replaceID nor one with n's key) reports: with a
	// *HardwareClaimedError naming it, once the token is found usable, and
	// nothing changes. A node that may not be replaced wins over one that
	// may. A key registered already is a *KeyRegisteredError holding its
	// node, found by the same lookup, so that the caller need not look the
	// key up first. It looks in the registering transaction, after the
	// token's row lock: of two registrations with one token and one UUID
	// (or one key), the second sees the first.
	RegisterIssuing(ctx context.Context, tokenID string, now time.Time, n Node, replaceID, requestID string) (Node, Intent, error)
	// SetLabels sets and removes labels of node id in one transaction,
	// with a labeled event naming actor (none when nothing changed). It
	// fails with ErrTooManyLabels if the node would have more than max
	// labels, ErrNotFound for an unknown node.
	SetLabels(ctx context.Context, id string, set map[string]string, remove []string, max int, now time.Time, actor string) (Node, error)
	// GetNode returns node id; ErrNotFound if absent.
	GetNode(ctx context.Context, id string) (Node, error)
	// GetNodeByKey returns the node with this identity key hash; ErrNotFound
	// if none. It is the hot path of every boot: one indexed query.
	GetNodeByKey(ctx context.Context, keySHA256 []byte) (Node, error)
	// NodesByHardware returns the nodes reporting any of uuids as their
	// hardware UUID or any of macs among their MACs, ordered by ID. Empty
	// values match nothing. It is one query, however many values.
	NodesByHardware(ctx context.Context, uuids, macs []string) ([]Node, error)
	// NoteDuplicate appends a duplicate_hardware event to node id
	// (ErrNotFound if absent) and changes nothing else: a registration
	// that claimed its hardware with another key was refused.
	NoteDuplicate(ctx context.Context, id string, now time.Time, claim Claim) error
	// ListNodes returns the nodes matching f, ordered by ID.
	ListNodes(ctx context.Context, f NodeFilter) ([]Node, error)
	// SetStatus moves a node to `to` only if its status is one of `from`
	// (ErrPrecondition otherwise, ErrNotFound if absent), with reason as
	// its StatusReason ("" for none). actor ("admin:…") and reason go into
	// the event, which is appended only when the status or reason changes.
	SetStatus(ctx context.Context, id string, from []Status, to Status, now time.Time, actor, reason string) (Node, error)
	// ClaimIssuance opens intent in (RequestID, NodeID, KeySHA256,
	// PrevSerial, CreatedAt; Hostname and CSR are taken from the node) if
	// the node is approved, has that key and that current serial, and no
	// issuance is open for it. It returns the intent open for the node
	// afterwards: in (claimed) or the one opened first by another caller
	// (not claimed), which the caller completes in its stead. ErrConflict
	// if the node no longer matches and nothing is open; ErrNotFound if
	// the node does not exist.
	ClaimIssuance(ctx context.Context, in Intent) (open Intent, claimed bool, err error)
	// CompleteIssuance closes intent requestID with c, the CA's certificate
	// for it, in one transaction: the node's CertificatesIssued goes up by
	// one, and c becomes its current certificate if the node is still
	// approved with the intent's key and previous serial (installed).
	// Otherwise (revoked, replaced, renewed by other means, deleted: the
	// zero Node) c is only counted, and the caller must revoke it.
	// ErrNotFound if the intent is not open (completed already).
	CompleteIssuance(ctx context.Context, requestID string, c Cert, now time.Time) (n Node, installed bool, err error)
	// InstallIssuance is CompleteIssuance when c becomes the node's
	// current certificate (installed). When it would only be counted it
	// changes nothing (the zero Node, not installed): the intent stays
	// open, so that the caller revokes c before closing it with
	// CompleteIssuance, and a revocation that fails is tried again by
	// whoever completes the intent next. ErrNotFound if the intent is not
	// open.
	InstallIssuance(ctx context.Context, requestID string, c Cert, now time.Time) (n Node, installed bool, err error)
	// ListIntents returns up to limit (<= 0: all) open intents created at
	// or before `before`, oldest first.
	ListIntents(ctx context.Context, before time.Time, limit int) ([]Intent, error)
	// ListUncertified returns up to limit (<= 0: all) approved nodes that
	// hold no certificate and have no open issuance, last changed at or
	// before `before`, oldest change first: nodes approved (by an admin,
	// or at registration) whose issuance nobody began, or whose caller
	// was lost before it opened the intent. The reconciler issues theirs.
	ListUncertified(ctx context.Context, before time.Time, limit int) ([]Node, error)
	// CountNodes counts the nodes by status and identity source
	// (metrics); combinations without a node are absent.
	CountNodes(ctx context.Context) ([]NodeCount, error)
	// AllowReplacement lets the next registration that names this node
	// replace it (see RegisterNode).
	AllowReplacement(ctx context.Context, id string, now time.Time, actor string) (Node, error)
	// DeleteNode removes node id, recording who (actor) at now; ErrNotFound
	// if absent. Its key can then register again.
	DeleteNode(ctx context.Context, id string, now time.Time, actor string) error
	// ImportEKs enrols eks at now: new hashes are added, known ones get
	// the new label (their CreatedAt stays). It returns how many of each,
	// all in one transaction.
	ImportEKs(ctx context.Context, eks []EnrolledEK, now time.Time, actor string) (added, updated int, err error)
	// GetEK returns the enrolled EK with this hash; ErrNotFound if none.
	GetEK(ctx context.Context, hash string) (EnrolledEK, error)
	// CreateAPIToken stores t as given; ErrConflict if the ID is taken. A
	// malformed t (empty ID, hash not 32 bytes, unknown role) is refused
	// with a plain error.
	CreateAPIToken(ctx context.Context, t APIToken) error
	// GetAPIToken returns API token id; ErrNotFound if absent.
	GetAPIToken(ctx context.Context, id string) (APIToken, error)
	// ListAPITokens returns API tokens ordered by CreatedAt (then ID); only
	// those neither revoked nor expired at now unless includeInactive.
	ListAPITokens(ctx context.Context, includeInactive bool, now time.Time) ([]APIToken, error)
	// RevokeAPIToken revokes API token id at now, by actor, and returns
	// it; revoking twice keeps the first RevokedAt (and its event).
	// ErrNotFound if absent.
	RevokeAPIToken(ctx context.Context, id string, now time.Time, actor string) (APIToken, error)
	// TouchAPITokens records when tokens were last used, in one
	// transaction: LastUsedAt becomes the later of the stored time and the
	// given one. Unknown IDs are skipped.
	TouchAPITokens(ctx context.Context, used map[string]time.Time) error
	// CreateConsoleSession records a web console session or sign-in link
	// and drops those expired by its CreatedAt; UseConsoleLink spends a
	// live link exactly once, however many replicas race, recording the
	// session it becomes; ConsoleSession returns a live session. A session
	// or link is live until it expires, ends, or its API token is revoked
	// or expires; ErrNotFound otherwise. EndConsoleSession forgets one.
	CreateConsoleSession(ctx context.Context, c ConsoleSession) error
	UseConsoleLink(ctx context.Context, sum []byte, session ConsoleSession) (ConsoleSession, error)
	ConsoleSession(ctx context.Context, sum []byte, now time.Time) (ConsoleSession, error)
	EndConsoleSession(ctx context.Context, sum []byte) error
	// EKLabels returns the labels of those of hashes that are enrolled,
	// by hash, in one query.
	EKLabels(ctx context.Context, hashes []string) (map[string]string, error)
	// RecordBoot records node id's accepted boot quote at now, if
	// b.NonceTime is newer than the node's BootNonceTime (ErrStaleNonce
	// otherwise; ErrNotFound if absent), with boot_digest_changed when the
	// digest changed and boot_policy_violation or boot_policy_cleared when
	// the violation did.
	RecordBoot(ctx context.Context, id string, b Boot, now time.Time) (Node, error)
	// SetBootPolicyViolation sets node id's BootPolicyViolation, with
	// boot_policy_violation or boot_policy_cleared, when it changes; it
	// writes nothing when it does not.
	SetBootPolicyViolation(ctx context.Context, id, violation string, now time.Time) (Node, error)
	// SetPCRPolicy creates or replaces the policy of p's label; its
	// UpdatedAt is stored as given.
	SetPCRPolicy(ctx context.Context, p PCRPolicy, actor string) (PCRPolicy, error)
	// ListPCRPolicies returns every policy, by label key and value.
	ListPCRPolicies(ctx context.Context) ([]PCRPolicy, error)
	// DeletePCRPolicy removes a label's policy; ErrNotFound if none.
	DeletePCRPolicy(ctx context.Context, key, value string, now time.Time, actor string) error
	// Secret returns the secret stored under name, storing candidate first
	// if there is none: every replica gets the same value.
	Secret(ctx context.Context, name string, candidate []byte) ([]byte, error)
	// Events is the node lifecycle log, which the methods above append to.
	Events() eventlog.Log
	// Close releases the database.
	Close()
}

// NodeCount is how many nodes have one status and identity source.
type NodeCount struct {
	Status         Status
	IdentitySource string
	N              int64
}
