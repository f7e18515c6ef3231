package registration

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Boot evidence. An approved node that registered a TPM attestation key
// (AK) gets its credentials only for a quote of its boot PCRs over a nonce
// of the server's: Resume (and Register, for a known or new node) answers
// first with a QuoteChallenge, and the node calls Resume again with the
// quote. The quote's PCR digest is recorded with the node (RecordBoot),
// and checked against the PCR policies of the node's labels.
//
// The nonce is stateless, so that any replica accepts a nonce any other
// issued, with no write to issue it:
//
//	nonce = t || HMAC-SHA256(K, "berth/v1 quote nonce" || node key hash || t)[:24]
//
// t is the issue time in unix nanoseconds (8 bytes, big-endian) and K a
// random key every replica reads from the store (regstore.Secret, made by
// the first replica that needs it). The MAC binds the nonce to the node's
// identity key and makes it unforgeable without K. A nonce is accepted
// for quoteNonceTTL after t, and only if t is newer than the t of the
// node's last accepted quote, which RecordBoot compares and advances under
// the node's row lock: so each nonce is accepted once, and a replayed
// quote, or a quote over an older nonce, is refused. Issuing takes
// max(now, last t + 1), so a replica whose clock is behind still issues a
// usable nonce.
const (
	// quoteNonceTTL bounds a nonce's life: a TPM quotes in well under a
	// second, a slow chip in a few.
	quoteNonceTTL  = 2 * time.Minute
	nonceTimeSize  = 8
	nonceMACSize   = 24
	nonceSize      = nonceTimeSize + nonceMACSize
	nonceKeyName   = "quote-nonce-hmac-sha256"
	nonceKeySize   = 32
	nonceMACDomain = "berth/v1 quote nonce\x00"
	// policyCacheTTL is how long a replica uses the PCR policies it read:
	// a policy set on another replica applies here within it. The replica
	// that sets one applies it at once.
	policyCacheTTL = 5 * time.Second
	maxQuotePCRs   = 24
)

// DefaultBootPCRs are the SHA-256 PCRs a boot quote covers unless
// Config.BootPCRs says otherwise: 0-7, what the firmware measures up to
// and including the boot loader (PC Client Platform Firmware Profile:
// firmware, option ROMs, their configuration, the boot loader, Secure
// Boot state), and 9, where Linux's EFI stub measures the initrd it loads
// (Linux 5.17 on). A PXE-booted image changes PCR 4 (the boot loader or
// unified kernel image) and PCR 9 (the initrd).
func DefaultBootPCRs() []int { return []int{0, 1, 2, 3, 4, 5, 6, 7, 9} }

// nonceKey is the replicas' shared nonce key, read once.
type nonceKey struct {
	mu  sync.Mutex
	key []byte
}

func (s *Service) nonceKey(ctx context.Context) ([]byte, error) {
	s.nonceK.mu.Lock()
	defer s.nonceK.mu.Unlock()
	if s.nonceK.key != nil {
		return s.nonceK.key, nil
	}
	candidate := make([]byte, nonceKeySize)
	if _, err := rand.Read(candidate); err != nil {
		return nil, err
	}
	k, err := s.store.Secret(ctx, nonceKeyName, candidate)
	if err != nil {
		return nil, fmt.Errorf("quote nonce key: %w", err)
	}
	if len(k) != nonceKeySize {
		return nil, fmt.Errorf("quote nonce key: stored key is %d bytes, want %d", len(k), nonceKeySize)
	}
	s.nonceK.key = k
	return k, nil
}

func nonceMAC(key, keyHash []byte, t uint64) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(nonceMACDomain))
	m.Write(keyHash)
	m.Write(binary.BigEndian.AppendUint64(nil, t))
	return m.Sum(nil)[:nonceMACSize]
}

// newNonce issues a quote nonce for n.
func (s *Service) newNonce(ctx context.Context, n regstore.Node) ([]byte, error) {
	key, err := s.nonceKey(ctx)
	if err != nil {
		return nil, err
	}
	t := uint64(max(s.clock.Now().UnixNano(), n.BootNonceTime+1))
	return append(binary.BigEndian.AppendUint64(nil, t), nonceMAC(key, n.KeySHA256, t)...), nil
}

// checkNonce returns the issue time of a nonce issued to n, still fresh and
// newer than n's last quoted one.
func (s *Service) checkNonce(ctx context.Context, n regstore.Node, nonce []byte) (int64, error) {
	if len(nonce) != nonceSize {
		return 0, errQuoteNonce
	}
	key, err := s.nonceKey(ctx)
	if err != nil {
		return 0, err
	}
	t := binary.BigEndian.Uint64(nonce[:nonceTimeSize])
	if !hmac.Equal(nonce[nonceTimeSize:], nonceMAC(key, n.KeySHA256, t)) || t > 1<<63-1 {
		return 0, errQuoteNonce
	}
	if s.clock.Now().Sub(time.Unix(0, int64(t))) > quoteNonceTTL {
		return 0, errQuoteNonceExpired
	}
	if int64(t) <= n.BootNonceTime {
		return 0, errQuoteReplay
	}
	return int64(t), nil
}

// bootCheck runs before an approved node gets its credentials from
// Register or Resume. A node with an AK and no quote in this call gets a
// challenge instead; with a quote, its boot is recorded and judged. A node
// without an AK is judged on having no evidence. Under an enforced policy
// a boot it does not allow is refused (bootRefusedError).
func (s *Service) bootCheck(ctx context.Context, n regstore.Node, q *berthv1.TPMQuote) (regstore.Node, *berthv1.QuoteChallenge, error) {
	if n.Status != regstore.StatusApproved {
		return n, nil, nil
	}
	pols, err := s.policiesFor(ctx, n.Labels)
	if err != nil {
		return n, nil, err
	}
	if len(n.AKPublic) == 0 {
		if q != nil {
			return n, nil, errNoAK
		}
		return s.judgeStored(ctx, n, pols, true)
	}
	if q == nil {
		nonce, err := s.newNonce(ctx, n)
		if err != nil {
			return n, nil, err
		}
		return n, &berthv1.QuoteChallenge{Nonce: nonce, Pcrs: s.bootPCRs32}, nil
	}
	digest, t, err := s.verifyQuote(ctx, n, q)
	if err != nil {
		return n, nil, err
	}
	v := judge(pols, digest, true)
	prev := n.BootPCRDigest
	n, err = s.store.RecordBoot(ctx, n.ID, regstore.Boot{PCRDigest: digest, NonceTime: t, PolicyViolation: v.reason}, s.clock.Now())
	if errors.Is(err, regstore.ErrStaleNonce) {
		return n, nil, errQuoteReplay
	}
	if err != nil {
		return n, nil, err
	}
	if digest != prev {
		s.log.Info("node booted with a new PCR digest", "node", n.ID, "digest", digest, "previous", prev)
	}
	if v.reason != "" {
		s.log.Warn("node boot breaks its PCR policies", "node", n.ID, "reason", v.reason, "enforced", v.enforced)
	}
	if v.enforced {
		return n, nil, &bootRefusedError{reason: v.reason}
	}
	return n, nil, nil
}

// judgeStored judges a node on the evidence it has on record: none, for
// a node without an AK (write: record the verdict, which changes only
// when policies or labels do), or its last quoted boot, for Renew.
func (s *Service) judgeStored(ctx context.Context, n regstore.Node, pols []regstore.PCRPolicy, write bool) (regstore.Node, *berthv1.QuoteChallenge, error) {
	v := judge(pols, n.BootPCRDigest, len(n.AKPublic) > 0)
	if write && v.reason != n.BootPolicyViolation {
		var err error
		if n, err = s.store.SetBootPolicyViolation(ctx, n.ID, v.reason, s.clock.Now()); err != nil {
			return n, nil, err
		}
	}
	if v.enforced {
		return n, nil, &bootRefusedError{reason: v.reason}
	}
	return n, nil, nil
}

// renewCheck refuses Renew to an approved node whose recorded boot an
// enforced policy does not allow: a node refused at Resume must not get
// its certificate by renewing instead. It writes nothing.
func (s *Service) renewCheck(ctx context.Context, n regstore.Node) error {
	if n.Status != regstore.StatusApproved {
		return nil
	}
	pols, err := s.policiesFor(ctx, n.Labels)
	if err != nil || len(pols) == 0 {
		return err
	}
	_, _, err = s.judgeStored(ctx, n, pols, false)
	return err
}

// verifyQuote checks a quote by n's AK over the server's nonce and PCRs
// and returns its PCR digest and the nonce's issue time.
func (s *Service) verifyQuote(ctx context.Context, n regstore.Node, q *berthv1.TPMQuote) (string, int64, error) {
	if len(q.GetAttest()) > maxTPMBlob || len(q.GetSignature()) > maxTPMBlob || len(q.GetPcrs()) > maxQuotePCRs {
		return "", 0, rpcerr.Invalid("quote", ruleQuoteSize)
	}
	t, err := s.checkNonce(ctx, n, q.GetNonce())
	if err != nil {
		return "", 0, err
	}
	ak, err := attest.ParseAK(n.AKPublic)
	if err != nil {
		return "", 0, fmt.Errorf("node %s's stored AK: %w", n.ID, err)
	}
	pcrs := make(map[int][]byte, len(q.GetPcrs()))
	for i, v := range q.GetPcrs() {
		if i >= maxQuotePCRs {
			return "", 0, rpcerr.Invalid("quote.pcrs", ruleQuotePCRs)
		}
		pcrs[int(i)] = v
	}
	res, err := attest.VerifyQuote(ak, q.GetNonce(), s.bootPCRs, attest.Quote{Attest: q.GetAttest(), Signature: q.GetSignature(), PCRs: pcrs})
	switch {
	case errors.Is(err, attest.ErrMalformed):
		return "", 0, fmt.Errorf("%w: %v", errQuoteMalformed, err)
	case err != nil:
		return "", 0, fmt.Errorf("%w: %v", errQuoteInvalid, err)
	}
	return res.PCRDigest, t, nil
}

// verdict is what the PCR policies say of a boot.
type verdict struct {
	reason   string // "" when every policy allows it
	enforced bool   // an enforced policy does not allow it
}

// judge checks digest ("" for none) against every policy in pols, which
// must all apply to the node: each must allow it.
func judge(pols []regstore.PCRPolicy, digest string, hasAK bool) verdict {
	var (
		v       verdict
		reasons []string
	)
	for _, p := range pols {
		label := p.LabelKey + "=" + p.LabelValue
		switch {
		case digest == "" && !hasAK:
			reasons = append(reasons, "policy "+label+": no boot evidence (the node has no TPM attestation key)")
		case digest == "":
			reasons = append(reasons, "policy "+label+": no quoted boot on record")
		case !slices.Contains(p.Digests, digest):
			reasons = append(reasons, "policy "+label+": boot digest "+digest+" is not allowed")
		default:
			continue
		}
		v.enforced = v.enforced || p.Enforce
	}
	v.reason = strings.Join(reasons, "; ")
	return v
}

// bootRefusedError is a boot an enforced PCR policy does not allow. Its
// reason is built from policy labels (set by an administrator, validated)
// and a PCR digest (hex the server computed), never from free text a
// caller sent, so it is safe to show the node.
type bootRefusedError struct{ reason string }

func (e *bootRefusedError) Error() string { return msgBootRefused + ": " + e.reason }

// policyCache holds the PCR policies this replica read last.
type policyCache struct {
	mu     sync.Mutex
	read   time.Time
	valid  bool
	policy []regstore.PCRPolicy
}

// policiesFor returns the PCR policies whose label the node carries.
func (s *Service) policiesFor(ctx context.Context, labels map[string]string) ([]regstore.PCRPolicy, error) {
	if len(labels) == 0 {
		return nil, nil
	}
	all, err := s.pcrPolicies(ctx)
	if err != nil {
		return nil, err
	}
	var out []regstore.PCRPolicy
	for _, p := range all {
		if v, ok := labels[p.LabelKey]; ok && v == p.LabelValue {
			out = append(out, p)
		}
	}
	return out, nil
}

// pcrPolicies returns every policy, read at most every policyCacheTTL:
// Resume is every boot's path, and policies change rarely.
func (s *Service) pcrPolicies(ctx context.Context) ([]regstore.PCRPolicy, error) {
	c := &s.policies
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.clock.Now()
	if c.valid && now.Sub(c.read) < policyCacheTTL && !now.Before(c.read) {
		return c.policy, nil
	}
	ps, err := s.store.ListPCRPolicies(ctx)
	if err != nil {
		return nil, fmt.Errorf("read PCR policies: %w", err)
	}
	c.policy, c.read, c.valid = ps, now, true
	return ps, nil
}

// forgetPolicies makes the next check read the policies again.
func (s *Service) forgetPolicies() {
	s.policies.mu.Lock()
	s.policies.valid = false
	s.policies.mu.Unlock()
}

// checkBootPCRs validates Config.BootPCRs and returns them sorted.
func checkBootPCRs(pcrs []int) ([]int, error) {
	if pcrs == nil {
		pcrs = DefaultBootPCRs()
	}
	out := slices.Sorted(slices.Values(pcrs))
	if len(out) == 0 || out[0] < 0 || out[len(out)-1] >= maxQuotePCRs || len(slices.Compact(slices.Clone(out))) != len(out) {
		return nil, fmt.Errorf("registration: BootPCRs %v must be distinct PCRs 0-%d", pcrs, maxQuotePCRs-1)
	}
	return out, nil
}
