package registration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/tpm"
	"github.com/berth-dev/berth/internal/tpm/tpmtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// tpmNode is a node whose keys are in a software TPM, talking to the env
// over a TLS session its TPM signs.
type tpmNode struct {
	tpm   *tpm.TPM
	conn  *grpc.ClientConn
	facts *berthv1.MachineFacts
}

func openTPM(t testing.TB, sim *tpmtest.Sim) *tpm.TPM {
	t.Helper()
	tp, err := tpm.Open(t.Context(), tpm.Config{Device: sim.Device()})
	if err != nil {
		t.Fatalf("open %s: %v", sim.Device(), err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

func (e *env) tpmNode(t testing.TB, sim *tpmtest.Sim, uuid string) *tpmNode {
	t.Helper()
	tp := openTPM(t, sim)
	return &tpmNode{tpm: tp, conn: e.srv.Bootstrap(t, tp.Identity()), facts: &berthv1.MachineFacts{
		HardwareUuid: uuid, Hostname: "tpm-node", Macs: []string{"52:54:00:7e:00:" + uuid[len(uuid)-2:]},
	}}
}

// request is the node's RegisterRequest, with its TPM's evidence.
func (n *tpmNode) request(t testing.TB, token string) *berthv1.RegisterRequest {
	t.Helper()
	ek, err := n.tpm.Endorsement(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kem, pub := keys.BundlePublic(n.tpm.BundleKey())
	return &berthv1.RegisterRequest{
		Facts:          n.facts,
		Csr:            csrFor(t, n.tpm.Identity(), nil),
		BundleKey:      &berthv1.BundleKey{KemId: uint32(kem), PublicKey: pub},
		Token:          token,
		IdentitySource: "tpm",
		Tpm: &berthv1.TPMEvidence{
			EkPublic: ek.Public, EkCertificate: ek.Cert, IdentityKeyPublic: n.tpm.PublicArea(tpm.KeyIdentity),
		},
	}
}

// register runs both calls of a TPM registration: the challenge, then the
// answer with the secret this node's TPM releases.
func (n *tpmNode) register(t testing.TB, req *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
	t.Helper()
	c := berthv1.NewRegistrationServiceClient(n.conn)
	resp, err := c.Register(t.Context(), req)
	if err != nil {
		return nil, err
	}
	ch := resp.GetTpmChallenge()
	if ch == nil || resp.GetCredentials() != nil {
		t.Fatalf("first TPM registration call = %v, want a challenge and no credentials", resp)
	}
	secret, err := n.tpm.ActivateCredential(t.Context(), tpm.KeyIdentity, attest.Challenge{
		CredentialBlob: ch.GetCredentialBlob(), EncryptedSecret: ch.GetEncryptedSecret()})
	if err != nil {
		t.Fatalf("the node's own TPM did not activate the credential: %v", err)
	}
	req.Tpm.ActivatedSecret = secret
	return c.Register(t.Context(), req)
}

func ekHashOf(t testing.TB, tp *tpm.TPM) string {
	t.Helper()
	e, err := tp.Endorsement(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ek, err := attest.ParseEK(e.Public)
	if err != nil {
		t.Fatal(err)
	}
	return ek.Hash()
}

func (e *env) getNode(t *testing.T, id string) *berthv1.Node {
	t.Helper()
	resp, err := e.adminClient().GetNode(context.Background(), &berthv1.GetNodeRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetNode()
}

// TestTPMRegisterThenReboots: a real agent with --identity tpm registers,
// then boots 20 more times, each a new agent on a new connection to the
// TPM with an empty certificate directory: the same node and certificate
// every time, one certificate issued, no private key on disk.
func TestTPMRegisterThenReboots(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		sim := tpmtest.Start(t)
		tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
		first := e.bootTPMAgent(t, sim, tok, uuidN(50))
		if first.Action != agent.ActionRegistered || first.Status != "approved" || first.CertSerial == "" {
			t.Fatalf("first boot = %+v, want registered and approved with a certificate", first)
		}
		for i := range 20 {
			r := e.bootTPMAgent(t, sim, "", uuidN(50))
			if r.NodeID != first.NodeID || r.CertSerial != first.CertSerial || r.Action != agent.ActionResumed {
				t.Fatalf("reboot %d = %+v, want node %s resumed with serial %s", i+1, r, first.NodeID, first.CertSerial)
			}
		}
		if n := e.issuedCount(t); n != 1 {
			t.Errorf("certificates issued = %d, want 1", n)
		}
		n := e.getNode(t, first.NodeID)
		if n.GetIdentitySource() != "tpm" || !strings.HasPrefix(n.GetEkHash(), "sha256:") || n.GetEkCertificate() != ekCertNone {
			t.Errorf("node = identity_source %q ek_hash %q ek_certificate %q; want tpm, a sha256 hash, none",
				n.GetIdentitySource(), n.GetEkHash(), n.GetEkCertificate())
		}
	})
}

// bootTPMAgent runs berth-agent --once --identity tpm against the env with
// a fresh certificate directory and checks that no key reached the disk.
func (e *env) bootTPMAgent(t testing.TB, sim *tpmtest.Sim, token, uuid string) agent.Result {
	t.Helper()
	src, err := keys.Open(t.Context(), keys.Config{Kind: keys.KindTPM, TPMDevice: sim.Device()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	certDir := t.TempDir()
	r := e.bootWith(t, src, keys.AssuranceTPM, certDir, token, uuid)
	_ = filepath.WalkDir(certDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("PRIVATE KEY")) {
				t.Errorf("%s holds a private key", p)
			}
		}
		return nil
	})
	return r
}

// bootWith runs berth-agent --once with keys src into certDir.
func (e *env) bootWith(t testing.TB, src keys.Source, source keys.Assurance, certDir, token, uuid string) agent.Result {
	t.Helper()
	var stdout, logs bytes.Buffer
	a, err := agent.New(agent.Config{
		Server: e.addr, CAHash: e.layout.CAHash(), Token: token, Keys: src, IdentitySource: source,
		CertDir: certDir, Root: t.TempDir(), CmdlineFile: t.TempDir() + "/none",
		Wait: time.Minute, Once: true, Output: agent.OutputJSON, NoHeartbeat: true,
		Facts:  agent.FactOverrides{HardwareUUID: uuid, Hostname: "tpm-node", Serial: "SN-TPM", MACs: []string{"52:54:00:7e:00:01"}},
		Stdout: &stdout, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(t.Context()); err != nil {
		t.Fatalf("agent: %v\n%s", err, logs.String())
	}
	var r agent.Result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("agent output %q: %v", stdout.String(), err)
	}
	if _, err := os.Stat(filepath.Join(certDir, agent.CertFile)); err != nil {
		t.Errorf("no certificate written: %v", err)
	}
	return r
}

// TestTPMSecondTPMSameUUID: another TPM claiming a registered machine's
// hardware UUID is the replacement conflict.
func TestTPMSecondTPMSameUUID(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	a := e.tpmNode(t, tpmtest.Start(t), uuidN(60))
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true, Uses: 2})
	if _, err := a.register(t, a.request(t, tok)); err != nil {
		t.Fatal(err)
	}
	b := e.tpmNode(t, tpmtest.Start(t), uuidN(60))
	_, err := b.register(t, b.request(t, tok))
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(status.Convert(err).Message(), "allow its replacement") {
		t.Errorf("message %q does not say what to do", status.Convert(err).Message())
	}
	if e.nodeCount(t) != 1 {
		t.Errorf("nodes = %d, want 1", e.nodeCount(t))
	}
}

// TestTPMActivationRefused: evidence naming the EK of another TPM (or an
// identity key that is not the TLS key) cannot be activated, and the node is
// refused without a trace.
func TestTPMActivationRefused(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	n := e.tpmNode(t, tpmtest.Start(t), uuidN(70))
	other := openTPM(t, tpmtest.Start(t))
	tok := e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})
	c := berthv1.NewRegistrationServiceClient(n.conn)

	// The other TPM's EK: the credential is for an EK this TPM lacks.
	req := n.request(t, tok)
	otherEK, err := other.Endorsement(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	req.Tpm.EkPublic = otherEK.Public
	resp, err := c.Register(t.Context(), req)
	if err != nil || resp.GetTpmChallenge() == nil {
		t.Fatalf("Register = %v, %v; want a challenge", resp, err)
	}
	ch := attest.Challenge{CredentialBlob: resp.GetTpmChallenge().GetCredentialBlob(), EncryptedSecret: resp.GetTpmChallenge().GetEncryptedSecret()}
	if _, err := n.tpm.ActivateCredential(t.Context(), tpm.KeyIdentity, ch); !errors.Is(err, tpm.ErrActivation) {
		t.Fatalf("this TPM activated a credential for another TPM's EK: %v", err)
	}
	guess := make([]byte, attest.SecretSize)
	if _, err := rand.Read(guess); err != nil {
		t.Fatal(err)
	}
	req.Tpm.ActivatedSecret = guess
	_, err = c.Register(t.Context(), req)
	wantCode(t, err, codes.PermissionDenied)
	if !strings.Contains(status.Convert(err).Message(), "activation failed") {
		t.Errorf("message %q does not say the activation failed", status.Convert(err).Message())
	}
	// The challenge is spent: answering again finds none.
	_, err = c.Register(t.Context(), req)
	wantCode(t, err, codes.FailedPrecondition)

	// An identity key public area that is not the TLS key's.
	req = n.request(t, tok)
	req.Tpm.IdentityKeyPublic = other.PublicArea(tpm.KeyIdentity)
	_, err = c.Register(t.Context(), req)
	wantCode(t, err, codes.PermissionDenied)

	if e.nodeCount(t) != 0 || e.issuedCount(t) != 0 {
		t.Fatalf("refused TPM registrations left %d nodes, %d certificates", e.nodeCount(t), e.issuedCount(t))
	}
	if uses := e.onlyTokenUses(t); uses != 1 {
		t.Fatalf("the token was used by refused registrations: %d uses left, want 1", uses)
	}
}

// TestTPMEnrolledEK: an enrolled EK registers without a token, approved;
// an unknown one needs a token, and with one that does not auto-approve
// waits pending with its evidence shown.
func TestTPMEnrolledEK(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		enrolled := e.tpmNode(t, tpmtest.Start(t), uuidN(80))
		stranger := e.tpmNode(t, tpmtest.Start(t), uuidN(81))
		if _, err := e.adminClient().ImportEKs(t.Context(), &berthv1.ImportEKsRequest{
			Eks: []*berthv1.EnrolledEK{{Hash: ekHashOf(t, enrolled.tpm), Label: "rack 1, slot 80"}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := enrolled.register(t, enrolled.request(t, ""))
		if err != nil {
			t.Fatalf("enrolled EK without a token: %v", err)
		}
		if resp.GetCredentials().GetStatus() != berthv1.NodeStatus_NODE_STATUS_APPROVED || len(resp.GetCredentials().GetCertificateChain()) == 0 {
			t.Errorf("enrolled EK: %v, want approved with a certificate", resp.GetCredentials())
		}

		_, err = stranger.register(t, stranger.request(t, ""))
		wantCode(t, err, codes.InvalidArgument)
		if !strings.Contains(status.Convert(err).Message(), "not enrolled") {
			t.Errorf("message %q does not say the EK is not enrolled", status.Convert(err).Message())
		}
		resp, err = stranger.register(t, stranger.request(t, e.token(t, &berthv1.CreateTokenRequest{})))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCredentials().GetStatus() != berthv1.NodeStatus_NODE_STATUS_PENDING {
			t.Errorf("unknown EK with a plain token: %v, want pending", resp.GetCredentials().GetStatus())
		}
		n := e.getNode(t, resp.GetCredentials().GetNodeId())
		if n.GetEkHash() != ekHashOf(t, stranger.tpm) || n.GetIdentitySource() != "tpm" || n.GetEkCertificate() != ekCertNone {
			t.Errorf("pending node evidence = %q %q %q, want its EK hash, tpm, none", n.GetEkHash(), n.GetIdentitySource(), n.GetEkCertificate())
		}
	})
}

// TestTPMEKCertificate: an EK certificate from the configured manufacturer
// is trusted (and, when the policy says so, approves without a token);
// one from another manufacturer is not.
func TestTPMEKCertificate(t *testing.T) {
	maker, other := tpmtest.NewManufacturer(t, "Trusted TPMs"), tpmtest.NewManufacturer(t, "Other TPMs")
	roots, err := attest.ParseEKRoots(maker.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvConfig(t, sqliteBackend, func(c *Config) { c.EKRoots, c.AutoApproveTrustedEK = roots, true })

	good := e.tpmNode(t, tpmtest.StartProvisioned(t, maker), uuidN(90))
	foreign := e.tpmNode(t, tpmtest.StartProvisioned(t, other), uuidN(91))
	// The env's fake clock started before swtpm_setup made the EK
	// certificates, which are valid from then on.
	e.clock.Advance(time.Minute)
	resp, err := good.register(t, good.request(t, ""))
	if err != nil {
		t.Fatalf("EK certificate from the trusted manufacturer, no token: %v", err)
	}
	if resp.GetCredentials().GetStatus() != berthv1.NodeStatus_NODE_STATUS_APPROVED {
		t.Errorf("status %v, want approved", resp.GetCredentials().GetStatus())
	}
	if got := e.getNode(t, resp.GetCredentials().GetNodeId()).GetEkCertificate(); got != ekCertTrusted {
		t.Errorf("ek_certificate = %q, want trusted", got)
	}

	_, err = foreign.register(t, foreign.request(t, ""))
	wantCode(t, err, codes.InvalidArgument)
	resp, err = foreign.register(t, foreign.request(t, e.token(t, &berthv1.CreateTokenRequest{})))
	if err != nil {
		t.Fatal(err)
	}
	n := e.getNode(t, resp.GetCredentials().GetNodeId())
	if n.GetEkCertificate() != ekCertUntrusted || n.GetStatus() != berthv1.NodeStatus_NODE_STATUS_PENDING {
		t.Errorf("foreign EK certificate: ek_certificate %q status %v, want untrusted, pending", n.GetEkCertificate(), n.GetStatus())
	}
}

// TestImportEKsBadInput: malformed enrolments are refused and change nothing.
func TestImportEKsBadInput(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	good := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		eks  []*berthv1.EnrolledEK
	}{
		{"none", nil},
		{"no prefix", []*berthv1.EnrolledEK{{Hash: strings.Repeat("ab", 32)}}},
		{"upper case", []*berthv1.EnrolledEK{{Hash: strings.ToUpper(good)}}},
		{"short", []*berthv1.EnrolledEK{{Hash: "sha256:abcd"}}},
		{"twice", []*berthv1.EnrolledEK{{Hash: good}, {Hash: good}}},
		{"label with control characters", []*berthv1.EnrolledEK{{Hash: good, Label: "a\x00b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.adminClient().ImportEKs(t.Context(), &berthv1.ImportEKsRequest{Eks: tc.eks})
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	if _, err := e.reg.GetEK(t.Context(), good); err == nil {
		t.Error("a refused import enrolled an EK")
	}
}
