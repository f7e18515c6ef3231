package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

const nodeID = "n-0001"

func approved(t *testing.T, p *testPKI, pub any, life time.Duration) *berthv1.NodeCredentials {
	t.Helper()
	return &berthv1.NodeCredentials{
		NodeId:           nodeID,
		Status:           berthv1.NodeStatus_NODE_STATUS_APPROVED,
		CertificateChain: p.issue(t, pub, nodeID, time.Now(), life),
		TrustBundle:      [][]byte{p.root.Raw},
		Renewed:          true,
	}
}

func pending() *berthv1.NodeCredentials {
	return &berthv1.NodeCredentials{NodeId: nodeID, Status: berthv1.NodeStatus_NODE_STATUS_PENDING}
}

// harness is one agent against one fake server.
type harness struct {
	pki    *testPKI
	fake   *fakeRegistration
	clock  *fakeClock
	stdout bytes.Buffer
	cfg    Config
	addr   string
}

func newHarness(t *testing.T, fake *fakeRegistration) *harness {
	t.Helper()
	h := &harness{pki: newPKI(t), fake: fake, clock: newFakeClock()}
	lis := listen(t)
	h.addr = lis.Addr().String()
	serve(t, h.pki, fake, lis)
	h.cfg = testConfig(t, h.addr, h.pki.caHash(), h.clock, &h.stdout)
	return h
}

func (h *harness) run(t *testing.T) error {
	t.Helper()
	a, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Run(ctx)
}

func (h *harness) result(t *testing.T) Result {
	t.Helper()
	var r Result
	dec := json.NewDecoder(bytes.NewReader(h.stdout.Bytes()))
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("stdout %q is not a JSON object: %v", h.stdout.String(), err)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON object: %q", h.stdout.String())
	}
	return r
}

func pubOf(src keys.Source) *ecdsa.PublicKey { return src.Identity().Public().(*ecdsa.PublicKey) }

func TestBootRegistersUnknownNode(t *testing.T) {
	var got atomic.Pointer[berthv1.RegisterRequest]
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return nil, status.Error(codes.NotFound, "node not found")
	}
	fake.register = func(_ context.Context, r *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
		got.Store(r)
		csr, err := x509.ParseCertificateRequest(r.GetCsr())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "bad CSR")
		}
		return &berthv1.RegisterResponse{Credentials: approved(t, h.pki, csr.PublicKey, 24*time.Hour)}, nil
	}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if calls := fake.Calls(); !slices.Equal(calls, []string{"Resume", "Register"}) {
		t.Errorf("calls = %v, want Resume, Register", calls)
	}

	// TLS proved the identity key, on the one connection.
	want, _ := mtls.KeyHash(pubOf(h.cfg.Keys))
	for i, p := range fake.peers {
		if p.Kind != mtls.KindBootstrap || p.KeySHA256 != want {
			t.Errorf("call %d came from %v, want the node's bootstrap key", i, p)
		}
	}

	// The request carries facts, a CSR for the identity key, the bundle key and the token.
	req := got.Load()
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CSR signature: %v", err)
	}
	if !mtls.SameKey(csr.PublicKey, pubOf(h.cfg.Keys)) || csr.Subject.CommonName != "node-1" {
		t.Errorf("CSR is for %v CN=%q, want the identity key and CN=node-1", csr.PublicKey, csr.Subject.CommonName)
	}
	f := req.GetFacts()
	if f.GetHardwareUuid() != testUUID || f.GetHostname() != "node-1" || f.GetSerial() != "SN123" ||
		!slices.Equal(f.GetMacs(), []string{"52:54:00:ab:cd:ef"}) {
		t.Errorf("facts = %v", f)
	}
	kemID, pub := keys.BundlePublic(h.cfg.Keys.BundleKey())
	if req.GetBundleKey().GetKemId() != uint32(kemID) || !bytes.Equal(req.GetBundleKey().GetPublicKey(), pub) {
		t.Errorf("bundle key = %v", req.GetBundleKey())
	}
	if req.GetToken() != "tok1.secret" {
		t.Errorf("token = %q", req.GetToken())
	}

	r := h.result(t)
	if r.NodeID != nodeID || r.Status != "approved" || r.Action != ActionRegistered || r.CertSerial == "" {
		t.Errorf("result = %+v", r)
	}
	checkCredentialFiles(t, h)
	if n, _ := h.clock.Slept(); n != 0 {
		t.Errorf("slept %d times, want 0", n)
	}
}

// checkCredentialFiles checks node.crt, node.key and ca.crt.
func checkCredentialFiles(t *testing.T, h *harness) {
	t.Helper()
	dir := h.cfg.CertDir
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("cert dir mode = %04o, want 0755", st.Mode().Perm())
	}
	for name, mode := range map[string]os.FileMode{CertFile: 0o644, KeyFile: 0o600, CAFile: 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode = %04o, want %04o", name, st.Mode().Perm(), mode)
		}
	}
	chain := readPEMCerts(t, filepath.Join(dir, CertFile))
	if len(chain) != 2 || !mtls.SameKey(chain[0].PublicKey, pubOf(h.cfg.Keys)) || !chain[1].Equal(h.pki.inter) {
		t.Errorf("node.crt does not hold leaf then intermediate")
	}
	if ca := readPEMCerts(t, filepath.Join(dir, CAFile)); len(ca) != 1 || !ca[0].Equal(h.pki.root) {
		t.Errorf("ca.crt does not hold the root")
	}
	kb, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatal("node.key is not a PEM PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !k.(*ecdsa.PrivateKey).Equal(h.cfg.Keys.Identity()) {
		t.Error("node.key is not the identity key")
	}
	r := h.result(t)
	if r.CertSerial != chain[0].SerialNumber.Text(16) {
		t.Errorf("cert_serial = %q, want %q", r.CertSerial, chain[0].SerialNumber.Text(16))
	}
	if r.CertNotAfter != chain[0].NotAfter.UTC().Format(time.RFC3339) {
		t.Errorf("cert_not_after = %q", r.CertNotAfter)
	}
}

func readPEMCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func TestBootResumesKnownNode(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		c := approved(t, h.pki, pubOf(h.cfg.Keys), 24*time.Hour)
		c.Renewed = false
		return &berthv1.ResumeResponse{Credentials: c}, nil
	}
	// Resume needs no machine facts: a container without a UUID resumes.
	h.cfg.Facts = FactOverrides{HardwareUUIDFile: "/nonexistent"}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if calls := fake.Calls(); !slices.Equal(calls, []string{"Resume"}) {
		t.Errorf("calls = %v, want Resume only", calls)
	}
	if r := h.result(t); r.Action != ActionResumed || r.Status != "approved" || r.Renewed {
		t.Errorf("result = %+v", r)
	}
	checkCredentialFiles(t, h)
}

func TestBootWaitsWhilePending(t *testing.T) {
	tests := []struct {
		name       string
		resumeErr  error
		wantAction string
	}{
		{"known pending node", status.Error(codes.FailedPrecondition, "node is pending approval"), ActionResumed},
		{"new node", status.Error(codes.NotFound, "node not found"), ActionRegistered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRegistration{}
			h := newHarness(t, fake)
			var registers atomic.Int32
			fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
				return nil, tt.resumeErr
			}
			fake.register = func(context.Context, *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
				if registers.Add(1) < 3 {
					return &berthv1.RegisterResponse{Credentials: pending()}, nil
				}
				return &berthv1.RegisterResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)}, nil
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if calls := fake.Calls(); !slices.Equal(calls, []string{"Resume", "Register", "Register", "Register"}) {
				t.Errorf("calls = %v", calls)
			}
			if n, _ := h.clock.Slept(); n != 2 {
				t.Errorf("slept %d times, want 2 (one per pending answer)", n)
			}
			if r := h.result(t); r.Action != tt.wantAction || r.Status != "approved" {
				t.Errorf("result = %+v", r)
			}
		})
	}
}

func TestBootPendingTooLong(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return nil, status.Error(codes.NotFound, "node not found")
	}
	fake.register = func(context.Context, *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
		return &berthv1.RegisterResponse{Credentials: pending()}, nil
	}
	h.cfg.Wait = 30 * time.Second
	err := h.run(t)
	if !errors.Is(err, ErrPending) || ExitCode(err) != ExitPending {
		t.Fatalf("err = %v (exit %d), want ErrPending", err, ExitCode(err))
	}
	if !strings.Contains(err.Error(), nodeID) {
		t.Errorf("error %q does not name the node", err)
	}
	if _, total := h.clock.Slept(); total != 30*time.Second {
		t.Errorf("waited %s, want exactly --wait (30s)", total)
	}
	if r := h.result(t); r.Status != "pending" || r.NodeID != nodeID || r.Action != ActionRegistered || r.CertSerial != "" {
		t.Errorf("result = %+v", r)
	}
	if _, err := os.Stat(h.cfg.CertDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cert dir written for a pending node: %v", err)
	}
}

func TestBootPinMismatchIsFatal(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	h.cfg.CAHash = newPKI(t).caHash() // some other deployment's root
	err := h.run(t)
	if !errors.Is(err, ErrUntrusted) || !errors.Is(err, mtls.ErrCAPinMismatch) {
		t.Fatalf("err = %v, want a CA pin mismatch", err)
	}
	if ExitCode(err) != ExitFailure {
		t.Errorf("exit = %d, want %d", ExitCode(err), ExitFailure)
	}
	if n, _ := h.clock.Slept(); n != 0 {
		t.Errorf("retried a pin mismatch %d times", n)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Errorf("server saw calls %v", calls)
	}
	if h.stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", h.stdout.String())
	}
}

func TestBootUnreachableThenReachable(t *testing.T) {
	p := newPKI(t)
	fake := &fakeRegistration{}
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return &berthv1.ResumeResponse{Credentials: approved(t, p, pubOf(testKeys(t)), time.Hour)}, nil
	}
	// Take a port and let it go: connections are refused until the
	// server starts on it during the agent's third backoff.
	lis := listen(t)
	addr := lis.Addr().String()
	lis.Close()
	clock := newFakeClock()
	clock.onSleep = func(n int, _ time.Duration) error {
		if n == 3 {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			serve(t, p, fake, l)
		}
		return nil
	}
	var stdout bytes.Buffer
	cfg := testConfig(t, addr, p.caHash(), clock, &stdout)
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	n, _ := clock.Slept()
	if n != 3 {
		t.Errorf("slept %d times, want 3", n)
	}
	// Full jitter drawn at its ceiling: 250ms, 500ms, 1s.
	if want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second}; !slices.Equal(clock.sleeps, want) {
		t.Errorf("sleeps = %v, want %v", clock.sleeps, want)
	}
	if calls := fake.Calls(); !slices.Equal(calls, []string{"Resume"}) {
		t.Errorf("calls = %v", calls)
	}
}

func TestBootUnreachableGivesUp(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	lis.Close()
	clock := newFakeClock()
	var stdout bytes.Buffer
	cfg := testConfig(t, addr, newPKI(t).caHash(), clock, &stdout)
	cfg.Wait = 20 * time.Second
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v, want unreachable: connection refused", err)
	}
	if ExitCode(err) != ExitFailure {
		t.Errorf("exit = %d", ExitCode(err))
	}
	n, total := clock.Slept()
	if total != 20*time.Second {
		t.Errorf("waited %s in %d sleeps, want exactly 20s", total, n)
	}
	for _, d := range clock.sleeps {
		if d > DefaultBackoff.Max {
			t.Errorf("slept %s, above the cap", d)
		}
	}
}

func TestBootRetriesUnavailable(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	var n atomic.Int32
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		switch n.Add(1) {
		case 1:
			return nil, status.Error(codes.Unavailable, "store is down")
		case 2:
			return nil, status.Error(codes.DeadlineExceeded, "ca timed out")
		}
		return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)}, nil
	}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, _ := h.clock.Slept(); got != 2 {
		t.Errorf("slept %d times, want 2", got)
	}
}

func TestBootDenied(t *testing.T) {
	tests := []struct {
		name       string
		resume     func() (*berthv1.ResumeResponse, error)
		register   func() (*berthv1.RegisterResponse, error)
		wantStatus string // in JSON; "" when the server named none
		wantMsg    string
		wantExit   int
	}{
		{
			name: "revoked on resume",
			resume: func() (*berthv1.ResumeResponse, error) {
				return nil, status.Error(codes.PermissionDenied, "node n-0001 is revoked")
			},
			wantStatus: "revoked", wantMsg: "node n-0001 is revoked", wantExit: ExitDenied,
		},
		{
			name:   "rejected on register",
			resume: func() (*berthv1.ResumeResponse, error) { return nil, status.Error(codes.FailedPrecondition, "pending") },
			register: func() (*berthv1.RegisterResponse, error) {
				c := pending()
				c.Status = berthv1.NodeStatus_NODE_STATUS_REJECTED
				return &berthv1.RegisterResponse{Credentials: c}, nil
			},
			wantStatus: "rejected", wantMsg: "rejected", wantExit: ExitDenied,
		},
		{
			name:   "bad token",
			resume: func() (*berthv1.ResumeResponse, error) { return nil, status.Error(codes.NotFound, "node not found") },
			register: func() (*berthv1.RegisterResponse, error) {
				return nil, status.Error(codes.PermissionDenied, "token is not valid")
			},
			wantMsg: "token is not valid", wantExit: ExitDenied,
		},
		{
			name:   "hardware conflict",
			resume: func() (*berthv1.ResumeResponse, error) { return nil, status.Error(codes.NotFound, "node not found") },
			register: func() (*berthv1.RegisterResponse, error) {
				return nil, status.Error(codes.FailedPrecondition, "hardware belongs to node n-9")
			},
			wantMsg: "register: hardware belongs to node n-9 (FailedPrecondition)", wantExit: ExitFailure,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRegistration{}
			fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) { return tt.resume() }
			fake.register = func(context.Context, *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
				return tt.register()
			}
			h := newHarness(t, fake)
			err := h.run(t)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantMsg)
			}
			if got := ExitCode(err); got != tt.wantExit {
				t.Errorf("exit = %d, want %d", got, tt.wantExit)
			}
			if n, _ := h.clock.Slept(); n != 0 {
				t.Errorf("retried %d times", n)
			}
			// The JSON contract: action "refused" with the reason.
			if r := h.result(t); r.Status != tt.wantStatus || r.Action != ActionRefused || !strings.Contains(r.Reason, tt.wantMsg) {
				t.Errorf("result = %+v, want status %q, action refused, a reason containing %q", r, tt.wantStatus, tt.wantMsg)
			}
		})
	}
}

func TestBootRefusesCertificateForAnotherKey(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, newKey(t).Public(), time.Hour)}, nil
	}
	if err := h.run(t); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("err = %v, want a key mismatch", err)
	}
}

// TestBootRefusesTrustBundleNotPinned: the trust bundle Resume returns
// must hold the pinned root and nothing else, or the registration service
// could make the node trust (and write out for local consumers, and accept
// bundle signers from) a CA of its choosing.
func TestBootRefusesTrustBundleNotPinned(t *testing.T) {
	other := newPKI(t)
	tests := []struct {
		name  string
		trust func(h *harness) [][]byte
	}{
		{"another root", func(*harness) [][]byte { return [][]byte{other.root.Raw} }},
		{"the pinned root and another", func(h *harness) [][]byte { return [][]byte{h.pki.root.Raw, other.root.Raw} }},
		{"the intermediate", func(h *harness) [][]byte { return [][]byte{h.pki.inter.Raw} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRegistration{}
			h := newHarness(t, fake)
			fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
				c := approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)
				c.TrustBundle = tt.trust(h)
				return &berthv1.ResumeResponse{Credentials: c}, nil
			}
			err := h.run(t)
			if err == nil || !strings.Contains(err.Error(), "its trust bundle does not match the pinned --ca-hash") ||
				!strings.Contains(err.Error(), "the pin is "+h.pki.caHash()) || !errors.Is(err, ErrUntrusted) {
				t.Fatalf("err = %v, want a trust bundle mismatch", err)
			}
			if n, _ := h.clock.Slept(); n != 0 {
				t.Errorf("retried %d times; a wrong trust bundle is final", n)
			}
			if _, err := os.Stat(h.cfg.CertDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("credentials were written: %v", err)
			}
		})
	}
}

func TestRunRenews(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	h.cfg.Once = false
	h.cfg.Output = OutputText
	const life = 3 * time.Hour
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), life)}, nil
	}
	fake.renew = func(context.Context, *berthv1.RenewRequest) (*berthv1.RenewResponse, error) {
		return &berthv1.RenewResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), life)}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serials []string
	h.clock.onSleep = func(n int, d time.Duration) error {
		// Each sleep waits for the next renewal; record the certificate
		// in place before it, and stop after two renewals.
		chain := readPEMCerts(t, filepath.Join(h.cfg.CertDir, CertFile))
		serials = append(serials, chain[0].SerialNumber.Text(16))
		if n == 3 {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	a, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if calls := fake.Calls(); !slices.Equal(calls, []string{"Resume", "Renew", "Renew"}) {
		t.Errorf("calls = %v", calls)
	}
	if len(serials) != 3 || serials[0] == serials[1] || serials[1] == serials[2] {
		t.Errorf("node.crt serials before each renewal = %v, want three different", serials)
	}
	// The first wait ends at two thirds of the lifetime counted from
	// issuance (not from the backdated NotBefore): 2h from now.
	if got, want := h.clock.sleeps[0], 2*time.Hour; got < want-5*time.Second || got > want+5*time.Second {
		t.Errorf("first renewal after %s, want about %s", got, want)
	}
	if !strings.HasPrefix(h.stdout.String(), "node n-0001 approved (resumed)") {
		t.Errorf("stdout = %q", h.stdout.String())
	}
}

func TestRunRenewRevoked(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	h.cfg.Once = false
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)}, nil
	}
	var n atomic.Int32
	fake.renew = func(context.Context, *berthv1.RenewRequest) (*berthv1.RenewResponse, error) {
		if n.Add(1) == 1 {
			return nil, status.Error(codes.Unavailable, "restarting")
		}
		return nil, status.Error(codes.PermissionDenied, "node is revoked")
	}
	err := h.run(t)
	if !errors.Is(err, ErrDenied) || ExitCode(err) != ExitDenied {
		t.Fatalf("err = %v, want ErrDenied", err)
	}
}

func TestBootStopsWithContext(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	lis.Close()
	clock := newFakeClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock.onSleep = func(int, time.Duration) error {
		cancel()
		return ctx.Err()
	}
	var stdout bytes.Buffer
	a, err := New(testConfig(t, addr, newPKI(t).caHash(), clock, &stdout))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped before the node was ready") {
		t.Fatalf("err = %v, want a clean stop", err)
	}
	if ExitCode(err) != ExitFailure {
		t.Errorf("exit = %d", ExitCode(err))
	}
}
