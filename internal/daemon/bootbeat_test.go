package daemon

import (
	"context"
	"crypto"
	"crypto/hpke"
	"crypto/tls"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// bootNode is a node of these tests: its key, and once booted its ID and
// certificate.
type bootNode struct {
	key   crypto.Signer
	id    string
	chain [][]byte
}

func bootBeat(bootID string) *berthv1.BootBeat {
	return &berthv1.BootBeat{BootId: bootID, Sequence: 1, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP, Uptime: durationpb.New(2 * time.Second)}
}

// registerBooting registers a new node, auto-approved, with its boot at
// the registration service at addr.
func registerBooting(t *testing.T, d *deployment, addr, token, bootID string, n int) *bootNode {
	t.Helper()
	key := grpctest.NewKey(t)
	self, err := mtls.SelfSigned(key)
	if err != nil {
		t.Fatal(err)
	}
	bk, err := hpke.MLKEM768X25519().GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := berthv1.NewRegistrationServiceClient(d.dialAt(t, addr, RoleRegistration, self)).Register(context.Background(), &berthv1.RegisterRequest{
		Facts: &berthv1.MachineFacts{HardwareUuid: fmt.Sprintf("0f5f1c8e-7a7e-4c55-9d0e-6a4f3c2b1b%02d", n), Hostname: fmt.Sprintf("boot-node-%d", n),
			Macs: []string{fmt.Sprintf("02:00:00:00:01:%02x", n)}},
		Csr:            grpctest.CSR(t, key, nil),
		BundleKey:      &berthv1.BundleKey{KemId: uint32(bk.KEM().ID()), PublicKey: bk.PublicKey().Bytes()},
		Token:          token,
		IdentitySource: "seed-file",
		Boot:           bootBeat(bootID),
	})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	c := resp.GetCredentials()
	if c.GetStatus() != berthv1.NodeStatus_NODE_STATUS_APPROVED || len(c.GetCertificateChain()) == 0 {
		t.Fatalf("Register: %v", c)
	}
	return &bootNode{key: key, id: c.GetNodeId(), chain: c.GetCertificateChain()}
}

func (n *bootNode) cert() tls.Certificate {
	return tls.Certificate{Certificate: n.chain, PrivateKey: n.key}
}

// resume resumes n at the registration service at addr with a boot.
func (n *bootNode) resume(t *testing.T, d *deployment, addr, bootID string) (*berthv1.ResumeResponse, error) {
	t.Helper()
	return berthv1.NewRegistrationServiceClient(d.dialAt(t, addr, RoleRegistration, n.cert())).Resume(context.Background(),
		&berthv1.ResumeRequest{Boot: bootBeat(bootID)})
}

// dialAt is dial, to the replica of role at addr.
func (d *deployment) dialAt(t testing.TB, addr, role string, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	one := &deployment{layout: d.layout, addrs: map[string]string{role: addr}}
	return one.dial(t, role, cert)
}

// healthOf waits until the health log holds an event of node matching
// want, and returns the node's events up to it. Nothing here opens a
// heartbeat stream: the events come from the boots alone.
func healthOf(t *testing.T, h berthv1.HeartbeatAdminServiceClient, node string, want func(*berthv1.HealthEvent) bool) []*berthv1.HealthEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := h.WatchHealth(ctx, &berthv1.WatchHealthRequest{NodeIds: []string{node}})
	if err != nil {
		t.Fatal(err)
	}
	var got []*berthv1.HealthEvent
	for {
		m, err := w.Recv()
		if err != nil {
			t.Fatalf("waiting for %s's event: %v (got %v)", node, err, got)
		}
		got = append(got, m.GetEvent())
		if want(m.GetEvent()) {
			return got
		}
	}
}

// bootRecorded checks, without waiting, that the heartbeat service holds
// node healthy in boot.
func bootRecorded(t *testing.T, h berthv1.HeartbeatAdminServiceClient, node, boot string) {
	t.Helper()
	got, err := h.GetNodeHealth(context.Background(), &berthv1.GetNodeHealthRequest{NodeId: node})
	if err != nil {
		t.Fatalf("health of %s: %v", node, err)
	}
	if h := got.GetHealth(); h.GetState() != berthv1.LivenessState_LIVENESS_STATE_HEALTHY || h.GetBootId() != boot {
		t.Fatalf("health of %s right after its boot %s was answered: %v", node, boot, h)
	}
}

func isType(ty berthv1.HealthEventType) func(*berthv1.HealthEvent) bool {
	return func(e *berthv1.HealthEvent) bool { return e.GetType() == ty }
}

func types(evs []*berthv1.HealthEvent) []berthv1.HealthEventType {
	out := make([]berthv1.HealthEventType, len(evs))
	for i, e := range evs {
		out[i] = e.GetType()
	}
	return out
}

// testBootBeats: a node is healthy after its first Register and after a
// Resume without any heartbeat stream, on the registration service at
// regs[0] and at any other replica; its stream's first beat goes on
// without a transition; a revoked node's Resume records nothing.
func testBootBeats(t *testing.T, d *deployment, regs []string) {
	ctx := context.Background()
	adminCert, err := d.layout.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	admin := berthv1.NewNodeAdminServiceClient(d.dialAt(t, regs[0], RoleRegistration, adminCert))
	health := berthv1.NewHeartbeatAdminServiceClient(d.dial(t, RoleHeartbeat, adminCert))
	tok, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{TtlSeconds: 600, Uses: 2, AutoApprove: true})
	if err != nil {
		t.Fatal(err)
	}
	n := registerBooting(t, d, regs[0], tok.GetSecretToken(), "boot-1", 1)
	// The answer waited for the handoff: the boot is recorded already.
	bootRecorded(t, health, n.id, "boot-1")
	evs := healthOf(t, health, n.id, isType(berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY))
	if len(evs) != 1 || evs[0].GetPreviousState() != berthv1.LivenessState_LIVENESS_STATE_UNSPECIFIED || evs[0].GetBootId() != "boot-1" {
		t.Fatalf("after Register: %v", evs)
	}
	got, err := health.GetNodeHealth(ctx, &berthv1.GetNodeHealthRequest{NodeId: n.id})
	if err != nil {
		t.Fatal(err)
	}
	if h := got.GetHealth(); h.GetState() != berthv1.LivenessState_LIVENESS_STATE_HEALTHY || h.GetBootId() != "boot-1" || h.GetSequence() != 1 ||
		h.GetUptime().AsDuration() != 2*time.Second {
		t.Fatalf("health after Register: %v", h)
	}

	// A reboot resumes on every replica in turn: each boot is recorded.
	for i, reg := range regs {
		boot := fmt.Sprintf("boot-%d", i+2)
		resp, err := n.resume(t, d, reg, boot)
		if err != nil {
			t.Fatalf("Resume at replica %d: %v", i, err)
		}
		bootRecorded(t, health, n.id, boot)
		evs := healthOf(t, health, n.id, func(e *berthv1.HealthEvent) bool {
			return e.GetType() == berthv1.HealthEventType_HEALTH_EVENT_TYPE_REBOOTED && e.GetBootId() == boot
		})
		if last := evs[len(evs)-1]; last.GetPreviousBootId() != fmt.Sprintf("boot-%d", i+1) {
			t.Errorf("reboot at replica %d: %v", i, last)
		}
		// The handoff's answer brought the interval, even to a replica's
		// first boot.
		if iv := resp.GetCredentials().GetHeartbeatInterval(); iv.AsDuration() != 10*time.Second {
			t.Errorf("replica %d's interval %v, want 10s", i, iv)
		}
	}

	// The node's stream goes on with sequence 2 of its last boot: no
	// transition. Node b's boot, recorded after, marks how far to read.
	last := fmt.Sprintf("boot-%d", len(regs)+1)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	hb, err := berthv1.NewHeartbeatServiceClient(d.dial(t, RoleHeartbeat, n.cert())).Heartbeat(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Send(&berthv1.HeartbeatRequest{Sequence: 2, BootId: last, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := hb.Recv()
		if err != nil {
			t.Fatalf("first beat: %v", err)
		}
		if m.GetAckSequence() == 2 {
			break
		}
	}
	stop()
	b := registerBooting(t, d, regs[len(regs)-1], tok.GetSecretToken(), "b-1", 2)
	healthOf(t, health, b.id, isType(berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY))
	all := nodeEvents(t, health, n.id, b.id)
	want := []berthv1.HealthEventType{berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY}
	for range regs {
		want = append(want, berthv1.HealthEventType_HEALTH_EVENT_TYPE_REBOOTED)
	}
	if got := types(all); !slices.Equal(got, want) {
		t.Errorf("events of %s = %v, want %v", n.id, got, want)
	}

	// Revoked, the node's Resume is refused and records nothing: b's
	// boot, handed over after it, shows nothing of n came before.
	if _, err := admin.RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: n.id}); err != nil {
		t.Fatal(err)
	}
	_, err = n.resume(t, d, regs[0], "boot-revoked")
	grpctest.WantCode(t, err, codes.PermissionDenied)
	if _, err := b.resume(t, d, regs[0], "b-2"); err != nil {
		t.Fatal(err)
	}
	healthOf(t, health, b.id, func(e *berthv1.HealthEvent) bool { return e.GetBootId() == "b-2" })
	if got := types(nodeEvents(t, health, n.id, b.id)); !slices.Equal(got, want) {
		t.Errorf("after the revoked node's Resume, its events = %v, want %v", got, want)
	}
	h, err := health.GetNodeHealth(ctx, &berthv1.GetNodeHealthRequest{NodeId: n.id})
	if err != nil {
		t.Fatal(err)
	}
	if h.GetHealth().GetBootId() != last {
		t.Errorf("the revoked node's boot was recorded: %v", h.GetHealth())
	}
}

// nodeEvents reads the health log from the start up to marker's newest
// event and returns node's events.
func nodeEvents(t *testing.T, h berthv1.HeartbeatAdminServiceClient, node, marker string) []*berthv1.HealthEvent {
	t.Helper()
	ctx := context.Background()
	list, err := h.ListNodeHealth(ctx, &berthv1.ListNodeHealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	w, err := h.WatchHealth(ctx, &berthv1.WatchHealthRequest{NodeIds: []string{node, marker}})
	if err != nil {
		t.Fatal(err)
	}
	var out []*berthv1.HealthEvent
	for {
		m, err := w.Recv()
		if err != nil {
			t.Fatalf("reading the health log: %v", err)
		}
		e := m.GetEvent()
		if e.GetNodeId() == node {
			out = append(out, e)
		}
		if e.GetCursor() >= list.GetCursor() {
			return out
		}
	}
}

// TestResumeIsFirstHeartbeat: every role in one process on SQLite, and
// the services apart on PostgreSQL with two registration replicas.
func TestResumeIsFirstHeartbeat(t *testing.T) {
	t.Run("all in one process on SQLite", func(t *testing.T) {
		l := newPKI(t, "")
		addr := serve(t, Config{Role: RoleAll, PKIDir: l.Dir})
		d := &deployment{layout: l, addrs: map[string]string{RoleRegistration: addr, RoleHeartbeat: addr}}
		testBootBeats(t, d, []string{addr})
	})
	t.Run("apart on PostgreSQL, two registration replicas", func(t *testing.T) {
		dsn := pgtest.NewCluster(t).DSN()
		l := newPKI(t, "")
		d := &deployment{layout: l, addrs: map[string]string{}}
		run := func(role string, c Config) string {
			c.Role, c.PKIDir, c.DB, c.Listen = role, ownDir(t, l, role), dsn, "127.0.0.1:0"
			return start(t, c).addr
		}
		d.addrs[RoleCA] = run(RoleCA, Config{})
		d.addrs[RoleHeartbeat] = run(RoleHeartbeat, Config{CAAddr: d.addrs[RoleCA]})
		var regs []string
		for range 2 {
			regs = append(regs, run(RoleRegistration, Config{CAAddr: d.addrs[RoleCA], HeartbeatAddr: d.addrs[RoleHeartbeat]}))
		}
		d.addrs[RoleRegistration] = regs[0]
		testBootBeats(t, d, regs)
	})
}

// TestBootWhileHeartbeatDown: with the heartbeat service down, a node
// still boots; once the service is up, the handoff completes and the node
// is healthy, without a stream of its own.
func TestBootWhileHeartbeatDown(t *testing.T) {
	l := newPKI(t, "")
	d := &deployment{layout: l, addrs: map[string]string{}}
	run := func(role string, c Config) string {
		c.Role, c.PKIDir, c.DataDir = role, ownDir(t, l, role), t.TempDir()
		if c.Listen == "" {
			c.Listen = "127.0.0.1:0"
		}
		return start(t, c).addr
	}
	hold := reserveAddr(t)
	hbAddr := hold.Addr().String()
	hold.Close() // nothing listens there until the service starts
	d.addrs[RoleCA] = run(RoleCA, Config{})
	reg := run(RoleRegistration, Config{CAAddr: d.addrs[RoleCA], HeartbeatAddr: hbAddr})
	ctx := context.Background()
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	admin := berthv1.NewNodeAdminServiceClient(d.dialAt(t, reg, RoleRegistration, adminCert))
	tok, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{TtlSeconds: 600, Uses: 1, AutoApprove: true})
	if err != nil {
		t.Fatal(err)
	}
	n := registerBooting(t, d, reg, tok.GetSecretToken(), "boot-1", 3)
	if _, err := n.resume(t, d, reg, "boot-1"); err != nil {
		t.Fatalf("Resume with the heartbeat service down: %v", err)
	}
	// A long interval: the boot is a sign of life for two of them, however
	// long the service and the registration service's reconnection take.
	d.addrs[RoleHeartbeat] = run(RoleHeartbeat, Config{CAAddr: d.addrs[RoleCA], Listen: hbAddr,
		HeartbeatInterval: 5 * time.Minute, HeartbeatGrace: 20 * time.Minute})
	health := berthv1.NewHeartbeatAdminServiceClient(d.dial(t, RoleHeartbeat, adminCert))
	evs := healthOf(t, health, n.id, isType(berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY))
	if len(evs) != 1 || evs[0].GetBootId() != "boot-1" {
		t.Fatalf("events %v, want one healthy event of boot-1", evs)
	}
}
