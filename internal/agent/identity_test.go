package agent

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

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
