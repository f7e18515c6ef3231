package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestBootRefusesAnotherServiceAtTheRegistrationAddress: the heartbeat
// service's credentials (same deployment, same pinned root) serving on the
// registration address are refused, naming the identity found, and not
// retried: waiting does not turn one service into another.
func TestBootRefusesAnotherServiceAtTheRegistrationAddress(t *testing.T) {
	p := newPKI(t)
	fake := &fakeRegistration{}
	lis := listen(t)
	serveGRPC(t, p.root, p.servers[mtls.ServiceHeartbeat], lis, func(s *grpc.Server) { berthv1.RegisterRegistrationServiceServer(s, fake) })
	h := &harness{pki: p, fake: fake, clock: newFakeClock(), addr: lis.Addr().String()}
	h.cfg = testConfig(t, h.addr, p.caHash(), h.clock, &h.stdout)

	err := h.run(t)
	want := "expected spiffe://berth.test/service/registration, found spiffe://berth.test/service/heartbeat"
	if !errors.Is(err, ErrUntrusted) || !errors.Is(err, mtls.ErrWrongServer) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want an untrusted server saying %q", err, want)
	}
	if ExitCode(err) != ExitFailure {
		t.Errorf("exit = %d, want %d", ExitCode(err), ExitFailure)
	}
	if n, _ := h.clock.Slept(); n != 0 {
		t.Errorf("retried the wrong service %d times", n)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Errorf("the impostor saw calls %v", calls)
	}
}

// TestBootBundleStoreIsAnotherService: the registration service's
// credentials at the bundle store's address are refused.
func TestBootBundleStoreIsAnotherService(t *testing.T) {
	h := newBundleHarness(t, true)
	lis, err := net.Listen("tcp", h.bundlesAddr)
	if err != nil {
		t.Fatal(err)
	}
	serveGRPC(t, h.pki.root, h.pki.servers[mtls.ServiceRegistration], lis, func(s *grpc.Server) { berthv1.RegisterBundleServiceServer(s, h.bundles) })
	err = h.run(t)
	want := "bundle store is not trusted: " + h.bundlesAddr + ": expected spiffe://berth.test/service/bundles, found spiffe://berth.test/service/registration"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if n, _ := h.clock.Slept(); n != 0 {
		t.Errorf("retried the wrong service %d times", n)
	}
	if calls := h.bundles.Calls(); len(calls) != 0 {
		t.Errorf("the impostor saw calls %v", calls)
	}
}

// TestBootHeartbeatIsAnotherService: the bundle store's credentials at the
// heartbeat address are refused, and the boot says which identity it met.
func TestBootHeartbeatIsAnotherService(t *testing.T) {
	reg := &fakeRegistration{}
	h := newHarness(t, reg)
	fake := newFakeHeartbeat(7 * time.Second)
	lis := listen(t)
	addr := lis.Addr().String()
	serveGRPC(t, h.pki.root, h.pki.servers[mtls.ServiceBundles], lis, func(s *grpc.Server) { berthv1.RegisterHeartbeatServiceServer(s, fake) })
	reg.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		c := approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)
		c.Endpoints = &berthv1.Endpoints{Heartbeat: addr}
		return &berthv1.ResumeResponse{Credentials: c}, nil
	}
	h.cfg.BootID = "boot-1"
	err := h.run(t)
	want := "heartbeat service is not trusted: " + addr + ": expected spiffe://berth.test/service/heartbeat, found spiffe://berth.test/service/bundles"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.closed) != 0 {
		t.Errorf("the impostor had %d streams", len(fake.closed))
	}
}

// TestIdentitySourceReported: the agent tells the server how it holds its
// key, and warns at start, saying why, when that is a site secret.
func TestIdentitySourceReported(t *testing.T) {
	for _, src := range keys.Assurances() {
		if src == keys.AssuranceTPM {
			continue // a TPM source needs a TPM; its tests have one
		}
		t.Run(string(src), func(t *testing.T) {
			fake := &fakeRegistration{}
			h := newHarness(t, fake)
			h.cfg.IdentitySource = src
			var logs bytes.Buffer
			h.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			var sent string
			fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
				return nil, status.Error(codes.NotFound, "node not found")
			}
			fake.register = func(_ context.Context, r *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
				sent = r.GetIdentitySource()
				return &berthv1.RegisterResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)}, nil
			}
			if err := h.run(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if sent != string(src) {
				t.Errorf("Register sent identity_source %q, want %q", sent, src)
			}
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "site secret")
			if warned != (src == keys.AssuranceSiteSecret) {
				t.Errorf("site-secret warning logged = %v for %s; logs:\n%s", warned, src, logs.String())
			}
		})
	}
}

// TestIdentitySourceRequired: an agent that cannot say how it holds its key
// does not start.
func TestIdentitySourceRequired(t *testing.T) {
	for _, bad := range []keys.Assurance{"", "usb-stick"} {
		cfg := testConfig(t, "127.0.0.1:1", "sha256:00", newFakeClock(), &bytes.Buffer{})
		cfg.IdentitySource = bad
		if _, err := New(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "identity source") {
			t.Errorf("New with identity source %q: err = %v, want a configuration error naming the identity source", bad, err)
		}
	}
}
