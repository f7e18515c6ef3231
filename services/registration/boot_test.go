package registration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/tpm"
	"github.com/berth-dev/berth/internal/tpm/tpmtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

const imageLabel = "image=node-4.5"

// akRequest is the node's RegisterRequest with its attestation key too.
func (n *tpmNode) akRequest(t testing.TB, token string) *berthv1.RegisterRequest {
	t.Helper()
	req := n.request(t, token)
	req.Tpm.AkPublic = n.tpm.PublicArea(tpm.KeyAK)
	return req
}

// registerAK runs both calls of a TPM registration with an AK, activating
// both credentials, and returns the second answer.
func (n *tpmNode) registerAK(t testing.TB, req *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
	t.Helper()
	c := berthv1.NewRegistrationServiceClient(n.conn)
	resp, err := c.Register(t.Context(), req)
	if err != nil {
		return nil, err
	}
	ch := resp.GetTpmChallenge()
	if ch == nil || len(ch.GetAkCredentialBlob()) == 0 {
		t.Fatalf("first registration call = %v, want a challenge for both keys", resp)
	}
	id, err := n.tpm.ActivateCredential(t.Context(), tpm.KeyIdentity, attest.Challenge{CredentialBlob: ch.GetCredentialBlob(), EncryptedSecret: ch.GetEncryptedSecret()})
	if err != nil {
		t.Fatal(err)
	}
	ak, err := n.tpm.ActivateCredential(t.Context(), tpm.KeyAK, attest.Challenge{CredentialBlob: ch.GetAkCredentialBlob(), EncryptedSecret: ch.GetAkEncryptedSecret()})
	if err != nil {
		t.Fatal(err)
	}
	req.Tpm.ActivatedSecret, req.Tpm.AkActivatedSecret = id, ak
	return c.Register(t.Context(), req)
}

// challenge asks Resume for a quote challenge.
func (n *tpmNode) challenge(t testing.TB) *berthv1.QuoteChallenge {
	t.Helper()
	resp, err := berthv1.NewRegistrationServiceClient(n.conn).Resume(t.Context(), &berthv1.ResumeRequest{})
	if err != nil {
		t.Fatalf("Resume without a quote: %v", err)
	}
	if resp.GetQuoteChallenge() == nil || resp.GetCredentials() != nil {
		t.Fatalf("Resume without a quote = %v, want a quote challenge and no credentials", resp)
	}
	return resp.GetQuoteChallenge()
}

// quoteWith has tp quote pcrs with nonce, as the agent sends it.
func quoteWith(t testing.TB, tp *tpm.TPM, nonce []byte, pcrs []int) *berthv1.TPMQuote {
	t.Helper()
	q, err := tp.Quote(t.Context(), nonce, pcrs)
	if err != nil {
		t.Fatalf("quote: %v", err)
	}
	values := map[uint32][]byte{}
	for p, v := range q.PCRs {
		values[uint32(p)] = v
	}
	return &berthv1.TPMQuote{Nonce: nonce, Attest: q.Attest, Signature: q.Signature, Pcrs: values}
}

func (n *tpmNode) resumeWith(t testing.TB, q *berthv1.TPMQuote) (*berthv1.ResumeResponse, error) {
	t.Helper()
	return berthv1.NewRegistrationServiceClient(n.conn).Resume(t.Context(), &berthv1.ResumeRequest{Quote: q})
}

// bootDigest is what berth records for the TPM's current boot PCRs.
func bootDigest(t testing.TB, tp *tpm.TPM) string {
	t.Helper()
	pcrs := DefaultBootPCRs()
	values, err := tp.ReadPCRs(t.Context(), pcrs)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, p := range pcrs {
		h.Write(values[p])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// extend measures something new into PCR 9 of the swtpm (another initrd),
// on a connection of its own that is closed again before the next boot.
func extend(t testing.TB, sim *tpmtest.Sim, what string) {
	t.Helper()
	tp := openTPM(t, sim)
	if err := tp.ExtendPCR(t.Context(), 9, sha256.Sum256([]byte(what))); err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
}

// digestOf reads the digest the sim's boot PCRs give now.
func digestOf(t testing.TB, sim *tpmtest.Sim) string {
	t.Helper()
	tp := openTPM(t, sim)
	defer tp.Close()
	return bootDigest(t, tp)
}

// nodeEvents are node id's events of type typ, oldest first.
func (e *env) nodeEvents(t testing.TB, id, typ string) []eventlog.Event {
	t.Helper()
	p, err := e.reg.Events().Read(context.Background(), eventlog.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []eventlog.Event
	for _, ev := range p.Events {
		if ev.NodeID == id && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// bootTPMAgentErr is bootTPMAgent for a boot that may be refused.
func (e *env) bootTPMAgentErr(t testing.TB, sim *tpmtest.Sim, token, uuid string) (agent.Result, error) {
	t.Helper()
	src, err := keys.Open(t.Context(), keys.Config{Kind: keys.KindTPM, TPMDevice: sim.Device()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var stdout, logs bytes.Buffer
	a, err := agent.New(agent.Config{
		Server: e.addr, CAHash: e.layout.CAHash(), Token: token, Keys: src, IdentitySource: keys.AssuranceTPM,
		CertDir: t.TempDir(), Root: t.TempDir(), CmdlineFile: t.TempDir() + "/none",
		Wait: time.Minute, Once: true, Output: agent.OutputJSON, NoHeartbeat: true,
		Facts:  agent.FactOverrides{HardwareUUID: uuid, Hostname: "tpm-node", Serial: "SN-TPM", MACs: []string{"52:54:00:7e:00:01"}},
		Stdout: &stdout, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	runErr := a.Run(t.Context())
	var r agent.Result
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatalf("agent output %q: %v", stdout.String(), err)
		}
	}
	return r, runErr
}

func (e *env) setPolicy(t testing.TB, label string, enforce bool, digests ...string) {
	t.Helper()
	if _, err := e.adminClient().SetPCRPolicy(t.Context(), &berthv1.SetPCRPolicyRequest{Policy: &berthv1.PCRPolicy{
		Label: label, Digests: digests, Enforce: enforce}}); err != nil {
		t.Fatalf("SetPCRPolicy: %v", err)
	}
}

// TestBootDigestRecorded: a real agent quotes its boot at registration and
// at every boot; the digest is the TPM's boot PCRs', shown on the node and
// dated; a PCR extended between two boots (another initrd) is a new digest
// and a boot_digest_changed event with the old and the new.
func TestBootDigestRecorded(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		sim := tpmtest.Start(t)
		d1 := digestOf(t, sim)
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
		first := e.bootTPMAgent(t, sim, tok, uuidN(60))
		if first.Action != agent.ActionRegistered || first.Status != "approved" {
			t.Fatalf("first boot = %+v", first)
		}
		n := e.getNode(t, first.NodeID)
		if n.GetBootPcrDigest() != d1 || !n.GetBootPcrDigestAt().AsTime().Equal(e.clock.Now()) {
			t.Fatalf("node boot digest %q at %v; want %s at %v", n.GetBootPcrDigest(), n.GetBootPcrDigestAt().AsTime(), d1, e.clock.Now())
		}
		if evs := e.nodeEvents(t, first.NodeID, regstore.EventBootDigestChanged); len(evs) != 1 || evs[0].Details[regstore.DetailDigest] != d1 {
			t.Fatalf("boot_digest_changed events = %+v; want one with digest %s", evs, d1)
		}

		e.clock.Advance(time.Minute)
		if r := e.bootTPMAgent(t, sim, "", uuidN(60)); r.Action != agent.ActionResumed {
			t.Fatalf("reboot = %+v", r)
		}
		n = e.getNode(t, first.NodeID)
		if n.GetBootPcrDigest() != d1 || !n.GetBootPcrDigestAt().AsTime().Equal(e.clock.Now()) {
			t.Errorf("after the same boot: digest %q at %v; want %s at %v", n.GetBootPcrDigest(), n.GetBootPcrDigestAt().AsTime(), d1, e.clock.Now())
		}
		if evs := e.nodeEvents(t, first.NodeID, regstore.EventBootDigestChanged); len(evs) != 1 {
			t.Errorf("the same boot again appended a boot_digest_changed event: %+v", evs)
		}

		extend(t, sim, "initrd of node-4.6")
		d2 := digestOf(t, sim)
		if d2 == d1 {
			t.Fatal("extending PCR 9 did not change the boot digest")
		}
		e.clock.Advance(time.Minute)
		e.bootTPMAgent(t, sim, "", uuidN(60))
		if n = e.getNode(t, first.NodeID); n.GetBootPcrDigest() != d2 {
			t.Errorf("after a new initrd: digest %q, want %s", n.GetBootPcrDigest(), d2)
		}
		evs := e.nodeEvents(t, first.NodeID, regstore.EventBootDigestChanged)
		want := map[string]string{regstore.DetailDigest: d2, regstore.DetailPreviousDigest: d1}
		if len(evs) != 2 || !mapsEqual(evs[1].Details, want) {
			t.Errorf("boot_digest_changed events = %+v; want a second with %v", evs, want)
		}
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBootPolicy: an enforced PCR policy on the node's label refuses a
// boot it does not allow, at Resume, at Register and at Renew, with a
// reason that names the policy and the digest; the same policy without
// enforce lets the node boot, flagged; allowing the digest clears the flag.
func TestBootPolicy(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		sim := tpmtest.Start(t)
		d1 := digestOf(t, sim)
		e.setPolicy(t, imageLabel, true, d1)
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Labels: map[string]string{"image": "node-4.5"}})
		first := e.bootTPMAgent(t, sim, tok, uuidN(61))
		if n := e.getNode(t, first.NodeID); n.GetBootPolicyViolation() != "" || n.GetBootPcrDigest() != d1 {
			t.Fatalf("allowed boot: violation %q digest %q", n.GetBootPolicyViolation(), n.GetBootPcrDigest())
		}

		extend(t, sim, "an initrd nobody allowed")
		d2 := digestOf(t, sim)
		reason := "boot refused by PCR policy: policy image=node-4.5: boot digest " + d2 + " is not allowed"
		r, err := e.bootTPMAgentErr(t, sim, "", uuidN(61))
		if err == nil || !strings.Contains(err.Error(), reason) || r.CertSerial != "" {
			t.Fatalf("boot under enforced policy = %+v, %v; want refused with %q", r, err, reason)
		}
		n := e.getNode(t, first.NodeID)
		if n.GetBootPcrDigest() != d2 || n.GetBootPolicyViolation() != "policy image=node-4.5: boot digest "+d2+" is not allowed" {
			t.Errorf("refused node: digest %q violation %q", n.GetBootPcrDigest(), n.GetBootPolicyViolation())
		}
		if evs := e.nodeEvents(t, first.NodeID, regstore.EventBootPolicyViolation); len(evs) != 1 {
			t.Errorf("boot_policy_violation events = %+v, want one", evs)
		}

		// The same refusal on each path that hands out credentials.
		node := e.tpmNode(t, sim, uuidN(61))
		c := berthv1.NewRegistrationServiceClient(node.conn)
		_, err = node.resumeWith(t, quoteWith(t, node.tpm, node.challenge(t).GetNonce(), DefaultBootPCRs()))
		grpctest.WantStatus(t, err, codes.FailedPrecondition, reason)
		_, err = c.Renew(t.Context(), &berthv1.RenewRequest{})
		grpctest.WantStatus(t, err, codes.FailedPrecondition, reason)
		reg, err := c.Register(t.Context(), node.akRequest(t, ""))
		if err != nil || reg.GetQuoteChallenge() == nil || reg.GetCredentials() != nil {
			t.Fatalf("Register of the known node = %v, %v; want a quote challenge and no credentials", reg, err)
		}
		_, err = node.resumeWith(t, quoteWith(t, node.tpm, reg.GetQuoteChallenge().GetNonce(), DefaultBootPCRs()))
		grpctest.WantStatus(t, err, codes.FailedPrecondition, reason)
		node.tpm.Close()

		// Not enforced: the node boots, flagged.
		e.setPolicy(t, imageLabel, false, d1)
		if r := e.bootTPMAgent(t, sim, "", uuidN(61)); r.Action != agent.ActionResumed || r.CertSerial == "" {
			t.Fatalf("boot under a flagging policy = %+v", r)
		}
		if n := e.getNode(t, first.NodeID); !strings.Contains(n.GetBootPolicyViolation(), d2) {
			t.Errorf("flagged node shows violation %q", n.GetBootPolicyViolation())
		}
		// Allowed: the flag goes, with an event.
		e.setPolicy(t, imageLabel, true, d1, d2)
		e.bootTPMAgent(t, sim, "", uuidN(61))
		if n := e.getNode(t, first.NodeID); n.GetBootPolicyViolation() != "" {
			t.Errorf("allowed boot still flagged: %q", n.GetBootPolicyViolation())
		}
		if evs := e.nodeEvents(t, first.NodeID, regstore.EventBootPolicyCleared); len(evs) != 1 {
			t.Errorf("boot_policy_cleared events = %+v, want one", evs)
		}
	})
}

// TestBootQuoteRefused: quotes that prove nothing about this boot are
// refused, and none of them is recorded or uses the node's nonce up.
func TestBootQuoteRefused(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	sim := tpmtest.Start(t)
	n := e.tpmNode(t, sim, uuidN(62))
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
	resp, err := n.registerAK(t, n.akRequest(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	ch := resp.GetQuoteChallenge()
	if ch == nil || resp.GetCredentials() != nil || !slices.Equal(ch.GetPcrs(), []uint32{0, 1, 2, 3, 4, 5, 6, 7, 9}) || len(ch.GetNonce()) != 32 {
		t.Fatalf("approved TPM registration = %v; want a quote challenge for PCRs 0-7, 9 and no credentials", resp)
	}
	good := quoteWith(t, n.tpm, ch.GetNonce(), DefaultBootPCRs())
	ok, err := n.resumeWith(t, good)
	if err != nil || len(ok.GetCredentials().GetCertificateChain()) == 0 {
		t.Fatalf("Resume with the quote = %v, %v; want credentials", ok, err)
	}

	sim2 := tpmtest.Start(t)
	other := openTPM(t, sim2)
	older := n.challenge(t)
	e.clock.Advance(time.Millisecond) // nonces are dated to the nanosecond
	newer := n.challenge(t)

	forged := bytes.Clone(newer.GetNonce())
	forged[len(forged)-1] ^= 1
	tampered := quoteWith(t, n.tpm, newer.GetNonce(), DefaultBootPCRs())
	tampered.Pcrs[9] = bytes.Repeat([]byte{0xee}, 32)
	badSig := quoteWith(t, n.tpm, newer.GetNonce(), DefaultBootPCRs())
	badSig.Signature = []byte{0xff, 0xff}
	farPCR := quoteWith(t, n.tpm, newer.GetNonce(), DefaultBootPCRs())
	farPCR.Pcrs[40] = make([]byte, 32)

	for _, tt := range []struct {
		name string
		q    *berthv1.TPMQuote
		code codes.Code
		msg  string
	}{
		{"replayed quote", good, codes.PermissionDenied, msgQuoteReplay},
		{"forged nonce", quoteWith(t, n.tpm, forged, DefaultBootPCRs()), codes.PermissionDenied, msgQuoteNonce},
		{"short nonce", quoteWith(t, n.tpm, []byte("nonce"), DefaultBootPCRs()), codes.PermissionDenied, msgQuoteNonce},
		{"quote from another TPM", quoteWith(t, other, newer.GetNonce(), DefaultBootPCRs()), codes.PermissionDenied, msgQuoteInvalid},
		{"other PCRs than asked", quoteWith(t, n.tpm, newer.GetNonce(), []int{0, 1, 2, 3, 4, 5, 6, 7}), codes.PermissionDenied, msgQuoteInvalid},
		{"PCR value changed", tampered, codes.PermissionDenied, msgQuoteInvalid},
		{"nonce of the quote is not the nonce sent", func() *berthv1.TPMQuote {
			q := quoteWith(t, n.tpm, older.GetNonce(), DefaultBootPCRs())
			q.Nonce = newer.GetNonce()
			return q
		}(), codes.PermissionDenied, msgQuoteInvalid},
		{"undecodable signature", badSig, codes.InvalidArgument, "quote " + ruleQuote},
		{"PCR out of range", farPCR, codes.InvalidArgument, "quote.pcrs " + ruleQuotePCRs},
		{"oversized", &berthv1.TPMQuote{Nonce: newer.GetNonce(), Attest: make([]byte, 9000)}, codes.InvalidArgument, "quote " + ruleQuoteSize},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.resumeWith(t, tt.q)
			grpctest.WantStatus(t, err, tt.code, tt.msg)
		})
	}
	// None of those used the newer nonce up; quoting it takes the older
	// one's place, which is then refused.
	if _, err := n.resumeWith(t, quoteWith(t, n.tpm, newer.GetNonce(), DefaultBootPCRs())); err != nil {
		t.Fatalf("Resume with the newer nonce after the refusals: %v", err)
	}
	_, err = n.resumeWith(t, quoteWith(t, n.tpm, older.GetNonce(), DefaultBootPCRs()))
	grpctest.WantStatus(t, err, codes.PermissionDenied, msgQuoteReplay)

	// A nonce past its life.
	stale := n.challenge(t)
	e.clock.Advance(quoteNonceTTL + time.Second)
	_, err = n.resumeWith(t, quoteWith(t, n.tpm, stale.GetNonce(), DefaultBootPCRs()))
	grpctest.WantStatus(t, err, codes.FailedPrecondition, msgQuoteExpired)

	// A node without an attestation key has nothing to quote with.
	seed := e.newNode(uuidN(63))
	e.register(t, seed, true)
	_, err = seed.client().Resume(t.Context(), &berthv1.ResumeRequest{Quote: good})
	grpctest.WantStatus(t, err, codes.FailedPrecondition, msgNoAK)
	if evs := e.nodeEvents(t, ok.GetCredentials().GetNodeId(), regstore.EventBootDigestChanged); len(evs) != 1 {
		t.Errorf("boot_digest_changed events = %d, want 1 (the refused quotes recorded nothing)", len(evs))
	}
}

// TestBootPolicySeedNode: a node without TPM evidence under a PCR policy
// is refused when it is enforced and flagged, once, when not.
func TestBootPolicySeedNode(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	n := e.newNode(uuidN(64))
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Labels: map[string]string{"image": "node-4.5"}})
	creds, err := n.client().Register(t.Context(), n.registerRequest(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	id := creds.GetCredentials().GetNodeId()
	digest := "sha256:" + strings.Repeat("ab", 32)
	const violation = "policy image=node-4.5: no boot evidence (the node has no TPM attestation key)"

	e.setPolicy(t, imageLabel, false, digest)
	for range 2 {
		if _, err := n.client().Resume(t.Context(), &berthv1.ResumeRequest{}); err != nil {
			t.Fatalf("Resume under a flagging policy: %v", err)
		}
	}
	if got := e.getNode(t, id).GetBootPolicyViolation(); got != violation {
		t.Errorf("violation %q, want %q", got, violation)
	}
	if evs := e.nodeEvents(t, id, regstore.EventBootPolicyViolation); len(evs) != 1 || evs[0].Details[regstore.DetailReason] != violation {
		t.Errorf("boot_policy_violation events = %+v; want one with the reason", evs)
	}

	e.setPolicy(t, imageLabel, true, digest)
	_, err = n.client().Resume(t.Context(), &berthv1.ResumeRequest{})
	grpctest.WantStatus(t, err, codes.FailedPrecondition, msgBootRefused+": "+violation)
	_, err = n.client().Register(t.Context(), n.registerRequest(t, ""))
	grpctest.WantStatus(t, err, codes.FailedPrecondition, msgBootRefused+": "+violation)

	// Another label's policy does not apply.
	if _, err := e.adminClient().DeletePCRPolicy(t.Context(), &berthv1.DeletePCRPolicyRequest{Label: imageLabel}); err != nil {
		t.Fatal(err)
	}
	e.setPolicy(t, "image=node-4.6", true, digest)
	if _, err := n.client().Resume(t.Context(), &berthv1.ResumeRequest{}); err != nil {
		t.Fatalf("Resume under another label's policy: %v", err)
	}
	if got := e.getNode(t, id).GetBootPolicyViolation(); got != "" {
		t.Errorf("violation %q after the policy went, want none", got)
	}
}

// TestPCRPolicies: set, list, replace and delete through the admin API.
func TestPCRPolicies(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	a := e.adminClient()
	d := func(b byte) string { return "sha256:" + strings.Repeat(fmt.Sprintf("%02x", b), 32) }
	set, err := a.SetPCRPolicy(t.Context(), &berthv1.SetPCRPolicyRequest{Policy: &berthv1.PCRPolicy{Label: "image=node=4.5", Digests: []string{d(1), d(2)}, Enforce: true}})
	if err != nil {
		t.Fatal(err)
	}
	if p := set.GetPolicy(); p.GetLabel() != "image=node=4.5" || !p.GetEnforce() || len(p.GetDigests()) != 2 || !p.GetUpdatedAt().AsTime().Equal(e.clock.Now()) {
		t.Errorf("SetPCRPolicy = %v", p)
	}
	e.setPolicy(t, "example.com/rack=r1", false, d(3))
	e.setPolicy(t, "image=node=4.5", false, d(4))
	list, err := a.ListPCRPolicies(t.Context(), &berthv1.ListPCRPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range list.GetPolicies() {
		got = append(got, fmt.Sprintf("%s %v %v", p.GetLabel(), p.GetDigests(), p.GetEnforce()))
	}
	want := []string{"example.com/rack=r1 [" + d(3) + "] false", "image=node=4.5 [" + d(4) + "] false"}
	if !slices.Equal(got, want) {
		t.Errorf("ListPCRPolicies = %q, want %q", got, want)
	}
	if _, err := a.DeletePCRPolicy(t.Context(), &berthv1.DeletePCRPolicyRequest{Label: "image=node=4.5"}); err != nil {
		t.Fatal(err)
	}
	_, err = a.DeletePCRPolicy(t.Context(), &berthv1.DeletePCRPolicyRequest{Label: "image=node=4.5"})
	grpctest.WantStatus(t, err, codes.NotFound, msgPolicyNotFound)
}

// TestPCRPolicyBadInput: malformed policies are refused, naming the field
// and the rule, and store nothing.
func TestPCRPolicyBadInput(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	good := "sha256:" + strings.Repeat("0f", 32)
	tooMany := make([]string, maxPolicyDigests+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("sha256:%064x", i)
	}
	for _, tt := range []struct {
		name    string
		policy  *berthv1.PCRPolicy
		wantMsg string
	}{
		{"no policy", nil, "policy.label " + rulePolicyLabel},
		{"no label", &berthv1.PCRPolicy{Digests: []string{good}}, "policy.label " + rulePolicyLabel},
		{"label without value", &berthv1.PCRPolicy{Label: "image", Digests: []string{good}}, "policy.label " + rulePolicyLabel},
		{"empty value", &berthv1.PCRPolicy{Label: "image=", Digests: []string{good}}, "policy.label " + rulePolicyLabel},
		{"empty key", &berthv1.PCRPolicy{Label: "=node-4.5", Digests: []string{good}}, "policy.label " + rulePolicyLabel},
		{"bad key", &berthv1.PCRPolicy{Label: "im age=node-4.5", Digests: []string{good}}, "policy.label " + rulePolicyLabel},
		{"bad value", &berthv1.PCRPolicy{Label: "image=node 4.5", Digests: []string{good}}, "policy.label " + rulePolicyLabel},
		{"two labels", &berthv1.PCRPolicy{Label: "image=a,rack=b", Digests: []string{good}}, "policy.label " + rulePolicyLabel},
		{"no digests", &berthv1.PCRPolicy{Label: imageLabel}, "policy.digests " + rulePolicyDigests},
		{"too many digests", &berthv1.PCRPolicy{Label: imageLabel, Digests: tooMany}, "policy.digests " + rulePolicyDigests},
		{"digest without algorithm", &berthv1.PCRPolicy{Label: imageLabel, Digests: []string{strings.Repeat("0f", 32)}}, "policy.digests " + rulePolicyDigest},
		{"upper-case digest", &berthv1.PCRPolicy{Label: imageLabel, Digests: []string{"sha256:" + strings.Repeat("0F", 32)}}, "policy.digests " + rulePolicyDigest},
		{"short digest", &berthv1.PCRPolicy{Label: imageLabel, Digests: []string{"sha256:0f0f"}}, "policy.digests " + rulePolicyDigest},
		{"sha1 digest", &berthv1.PCRPolicy{Label: imageLabel, Digests: []string{"sha1:" + strings.Repeat("0f", 20)}}, "policy.digests " + rulePolicyDigest},
		{"digest twice", &berthv1.PCRPolicy{Label: imageLabel, Digests: []string{good, good}}, "policy.digests " + rulePolicyDigestTwice},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.adminClient().SetPCRPolicy(t.Context(), &berthv1.SetPCRPolicyRequest{Policy: tt.policy})
			grpctest.WantStatus(t, err, codes.InvalidArgument, tt.wantMsg)
		})
	}
	_, err := e.adminClient().DeletePCRPolicy(t.Context(), &berthv1.DeletePCRPolicyRequest{Label: "no label"})
	grpctest.WantStatus(t, err, codes.InvalidArgument, "label "+rulePolicyLabel)
	if list, err := e.adminClient().ListPCRPolicies(t.Context(), &berthv1.ListPCRPoliciesRequest{}); err != nil || len(list.GetPolicies()) != 0 {
		t.Errorf("policies after refusals = %v, %v; want none", list, err)
	}
}

// TestEKLabelShown: the label an EK was enrolled with shows on its node.
func TestEKLabelShown(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	sim := tpmtest.Start(t)
	hash := func() string { tp := openTPM(t, sim); defer tp.Close(); return ekHashOf(t, tp) }()
	if _, err := e.adminClient().ImportEKs(t.Context(), &berthv1.ImportEKsRequest{Eks: []*berthv1.EnrolledEK{{Hash: hash, Label: "rack 7 slot 3"}}}); err != nil {
		t.Fatal(err)
	}
	r := e.bootTPMAgent(t, sim, "", uuidN(65))
	if got := e.getNode(t, r.NodeID).GetEkLabel(); got != "rack 7 slot 3" {
		t.Errorf("GetNode ek_label = %q", got)
	}
	list, err := e.adminClient().ListNodes(t.Context(), &berthv1.ListNodesRequest{})
	if err != nil || len(list.GetNodes()) != 1 || list.GetNodes()[0].GetEkLabel() != "rack 7 slot 3" {
		t.Errorf("ListNodes = %v, %v; want the node with its EK label", list, err)
	}
}
