package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestDeferredStreams: right after boots come in faster than
// --heartbeat-max-connect-rate (here one boot against 0.5/s), the
// heartbeat service refuses a node's new stream in its handshake, while
// an admin's connection, which does not ask to be deferrable, is served.
// Once the boots stop, the node's stream opens.
func TestDeferredStreams(t *testing.T) {
	ctx := context.Background()
	l := newPKI(t, "")
	addr := serve(t, Config{Role: RoleAll, PKIDir: l.Dir, HeartbeatMaxConnectRate: 0.5})
	d := &deployment{layout: l, addrs: map[string]string{RoleRegistration: addr, RoleHeartbeat: addr}}
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	admin := berthv1.NewNodeAdminServiceClient(d.dial(t, RoleRegistration, adminCert))
	tok, err := admin.CreateToken(ctx, &berthv1.CreateTokenRequest{TtlSeconds: 600, Uses: 1, AutoApprove: true})
	if err != nil {
		t.Fatal(err)
	}
	n := registerBooting(t, d, addr, tok.GetSecretToken(), "boot-1", 1)

	err = firstBeat(ctx, d, n, "boot-1")
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "tls: internal error") {
		t.Fatalf("node's stream right after the boot: %v, want it refused in the handshake", err)
	}
	// The admin's call is not deferrable.
	health := berthv1.NewHeartbeatAdminServiceClient(d.dial(t, RoleHeartbeat, adminCert))
	bootRecorded(t, health, n.id, "boot-1")

	// Two seconds on the boot no longer counts.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := firstBeat(ctx, d, n, "boot-1")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node's stream still refused 30 s after its boot: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// firstBeat opens n's heartbeat stream as the agent does (deferrable), on
// a new connection, and sends the beat after the boot's; it returns once
// the beat is acknowledged.
func firstBeat(ctx context.Context, d *deployment, n *bootNode, boot string) error {
	cfg := mtls.ExpectServer(mtls.ClientConfig(n.cert(), d.layout.RootPool()), d.layout.TrustDomain, RoleHeartbeat)
	cfg.ServerName = "127.0.0.1"
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: d.addrs[RoleHeartbeat], TLS: mtls.Deferrable(cfg)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hb, err := berthv1.NewHeartbeatServiceClient(conn).Heartbeat(ctx)
	if err != nil {
		return err
	}
	if err := hb.Send(&berthv1.HeartbeatRequest{Sequence: 2, BootId: boot, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}); err != nil {
		_, err = hb.Recv() // the stream's own error
		return err
	}
	for {
		m, err := hb.Recv()
		if err != nil {
			return err
		}
		if m.GetAckSequence() == 2 {
			return hb.CloseSend()
		}
	}
}
