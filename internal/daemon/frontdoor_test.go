package daemon

import (
	"context"
	"crypto/hpke"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/client/watch"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// splitDeployment runs the four services apart on one PostgreSQL, each
// from its own directory, and the front door before them.
type splitDeployment struct {
	*deployment
	procs map[string]*process
	front string
}

func startSplit(t testing.TB, l *pki.Layout, dsn string) *splitDeployment {
	t.Helper()
	d := &splitDeployment{deployment: &deployment{layout: l, addrs: map[string]string{}}, procs: map[string]*process{}}
	run := func(role string, c Config) {
		c.Role, c.PKIDir, c.DB, c.Listen = role, ownDir(t, l, role), dsn, "127.0.0.1:0"
		d.procs[role] = start(t, c)
		d.addrs[role] = d.procs[role].addr
	}
	run(RoleCA, Config{})
	run(RoleBundles, Config{CAAddr: d.addrs[RoleCA]})
	run(RoleHeartbeat, Config{CAAddr: d.addrs[RoleCA], BundlesAddr: d.addrs[RoleBundles]})
	run(RoleRegistration, Config{CAAddr: d.addrs[RoleCA], BundlesAddr: d.addrs[RoleBundles]})
	d.procs[RoleAPI] = start(t, Config{Role: RoleAPI, PKIDir: ownDir(t, l, pki.ServiceAPI), Listen: "127.0.0.1:0",
		RegistrationAddr: d.addrs[RoleRegistration], CAAddr: d.addrs[RoleCA],
		BundlesAddr: d.addrs[RoleBundles], HeartbeatAddr: d.addrs[RoleHeartbeat]})
	d.front = d.procs[RoleAPI].addr
	return d
}

// dialFront connects to the front door as berthctl does: expecting the
// service it wants, or the front door.
func (d *splitDeployment) dialFront(t testing.TB, service string, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := mtls.ExpectServer(mtls.ClientConfig(cert, d.layout.RootPool()), d.layout.TrustDomain, service, pki.ServiceAPI)
	cfg.ServerName = "127.0.0.1"
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: d.front, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestFrontDoorSplit runs berthd serve --role api before the four services
// run apart on PostgreSQL: the whole admin API, gRPC and REST, through one
// address, forwarded as the admin who called; watch of every service
// through it; callers it must refuse; and a service that is down answered
// Unavailable, naming it, while the others keep working.
func TestFrontDoorSplit(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	l := newPKI(t, "")
	d := startSplit(t, l, cluster.DSN())
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	front := d.dialFront(t, pki.ServiceRegistration, adminCert)
	for _, svc := range []string{"", berthv1.NodeAdminService_ServiceDesc.ServiceName, berthv1.BundleAdminService_ServiceDesc.ServiceName,
		berthv1.HeartbeatAdminService_ServiceDesc.ServiceName, berthv1.CertificateAuthorityService_ServiceDesc.ServiceName} {
		waitHealth(t, front, svc, serving)
	}
	ctx := context.Background()
	nodes := berthv1.NewNodeAdminServiceClient(front)

	// A token through the front door; the node registers with the
	// registration service itself, as nodes do.
	tok, err := nodes.CreateToken(ctx, &berthv1.CreateTokenRequest{TtlSeconds: 600, Uses: 1, Description: "front door test"})
	if err != nil {
		t.Fatalf("CreateToken through the front door: %v", err)
	}
	id := registerWith(t, d.deployment, tok.GetSecretToken())

	list, err := nodes.ListNodes(ctx, &berthv1.ListNodesRequest{})
	if err != nil || len(list.GetNodes()) != 1 || list.GetNodes()[0].GetId() != id {
		t.Fatalf("ListNodes through the front door: %v, %v; want node %s", list, err, id)
	}
	if _, err := nodes.ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: id}); err != nil {
		t.Fatalf("ApproveNode through the front door: %v", err)
	}
	// The registration service's own error, unchanged.
	_, err = nodes.GetNode(ctx, &berthv1.GetNodeRequest{Id: "no-such-node"})
	grpctest.WantCode(t, err, codes.NotFound)

	// Every other service's admin API at the same address.
	if _, err := berthv1.NewBundleAdminServiceClient(front).ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: id}); err != nil {
		t.Errorf("ListBundleHistory through the front door: %v", err)
	}
	if _, err := berthv1.NewHeartbeatAdminServiceClient(front).GetHeartbeatSettings(ctx, &berthv1.GetHeartbeatSettingsRequest{}); err != nil {
		t.Errorf("GetHeartbeatSettings through the front door: %v", err)
	}
	if _, err := berthv1.NewCertificateAuthorityServiceClient(front).GetRevocations(ctx, &berthv1.GetRevocationsRequest{}); err != nil {
		t.Errorf("GetRevocations through the front door: %v", err)
	}

	// Watch of all three services through the one address: the events
	// the approval recorded, by the admin the front door authenticated.
	w, err := watch.New(watch.Config{Registration: front, Bundles: front, Heartbeat: front, MaxFailures: 3})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var approved *watch.Event
	err = w.Run(wctx, func(e watch.Event) error {
		if e.Type == "approved" {
			approved = &e
			return errFound
		}
		return nil
	})
	if !errors.Is(err, errFound) || approved.NodeID != id || approved.Details["actor"] != "admin:admin" {
		t.Fatalf("watch through the front door: %v, %+v; want the approval of %s by admin:admin", err, approved, id)
	}
	if got := w.Services(); len(got) != 3 {
		t.Errorf("watch followed %v, want all three services", got)
	}

	// REST at the same address.
	rest := newRESTClient(t, l, d.front, adminCert)
	code, body := rest.do(t, "GET", "/v1/nodes?status=approved", "")
	if code != http.StatusOK || strings.Join(nodeIDs(body), ",") != id {
		t.Errorf("GET /v1/nodes through the front door: %d %v, want node %s", code, body, id)
	}
	code, body = rest.do(t, "GET", "/v1/nodes/"+id+"/bundle/history", "")
	if code != http.StatusOK {
		t.Errorf("GET bundle history through the front door: %d %v", code, body)
	}

	// Labels through the front door: the change, its event and its actor,
	// and the refusals of bad ones.
	code, body = rest.do(t, "POST", "/v1/nodes/"+id+":label", `{"set": {"rack": "r9", "role": "db"}}`)
	if node, _ := body["node"].(map[string]any); code != http.StatusOK || fmt.Sprint(node["labels"]) != "map[rack:r9 role:db]" {
		t.Errorf("label through the front door: %d %v", code, body)
	}
	code, body = rest.do(t, "POST", "/v1/nodes/"+id+":label", `{"remove": ["role"]}`)
	if node, _ := body["node"].(map[string]any); code != http.StatusOK || fmt.Sprint(node["labels"]) != "map[rack:r9]" {
		t.Errorf("label removal through the front door: %d %v", code, body)
	}
	code, body = rest.do(t, "POST", "/v1/nodes/"+id+":label", `{"set": {"Bad Key": "x"}}`)
	wantStatus(t, "a bad label key", code, body, http.StatusBadRequest, 3, "set must have keys of 1-63 letters")
	code, body = rest.do(t, "POST", "/v1/nodes/"+id+":label", `{"set": {"rack": "r1"}, "remove": ["rack"]}`)
	wantStatus(t, "a key set and removed", code, body, http.StatusBadRequest, 3, "remove must not name a key that set names too")
	code, body = rest.do(t, "POST", "/v1/nodes/no-such-node:label", `{"set": {"rack": "r1"}}`)
	wantStatus(t, "labels of an unknown node", code, body, http.StatusNotFound, 5, "node not found")
	code, body = rest.do(t, "GET", "/v1/events?wait=30s&service=registration&type=labeled", "")
	if evs := pollEvents(t, body); code != http.StatusOK || len(evs) != 2 || evs[0]["details"].(map[string]any)["actor"] != "admin:admin" ||
		evs[0]["details"].(map[string]any)["set"] != "rack=r9,role=db" || evs[1]["details"].(map[string]any)["removed"] != "role" {
		t.Errorf("labeled events through the front door's long poll: %d %v", code, body)
	}

	// Callers the front door refuses itself, before forwarding.
	_, err = berthv1.NewNodeAdminServiceClient(d.dialFront(t, pki.ServiceRegistration, nodeCert(t, l, id))).ListNodes(ctx, &berthv1.ListNodesRequest{})
	grpctest.WantStatus(t, err, codes.PermissionDenied, "caller is not permitted to call this method")
	// A node's own API is not the front door's: nodes speak to the services.
	_, err = berthv1.NewRegistrationServiceClient(front).Resume(ctx, &berthv1.ResumeRequest{})
	grpctest.WantStatus(t, err, codes.Unimplemented, "unknown service berth.v1.RegistrationService")
	_, err = berthv1.NewCertificateAuthorityServiceClient(front).Sign(ctx, &berthv1.SignRequest{})
	grpctest.WantStatus(t, err, codes.Unimplemented, "unknown method Sign for service berth.v1.CertificateAuthorityService")
	// A service may call the bundles service's WatchBundleEvents itself,
	// but the front door forwards only admins.
	hb, err := l.ServiceCertificate(pki.ServiceHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := berthv1.NewBundleAdminServiceClient(d.dialFront(t, pki.ServiceBundles, hb)).WatchBundleEvents(ctx, &berthv1.WatchBundleEventsRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	grpctest.WantStatus(t, err, codes.PermissionDenied, "the front door forwarded a caller it may not act for")

	// The bundles service goes down: its calls answer Unavailable naming
	// it and its address, over gRPC and REST; its health at the front door
	// follows; the other services keep answering.
	d.procs[RoleBundles].cancel()
	if err := <-d.procs[RoleBundles].done; err != nil {
		t.Fatalf("bundles service stopped with %v", err)
	}
	d.procs[RoleBundles].done <- nil // for the cleanup
	_, err = berthv1.NewBundleAdminServiceClient(front).ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: id})
	grpctest.WantCode(t, err, codes.Unavailable)
	down := "the bundles service at " + d.addrs[RoleBundles] + " cannot be reached ("
	if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, down) || !strings.HasSuffix(msg, "); retry later") ||
		!strings.Contains(msg, "connection refused") && !strings.Contains(msg, "the connection broke") {
		t.Errorf("the refusal %q does not name the service, why (connection refused) and that a retry may work", msg)
	}
	code, body = rest.do(t, "GET", "/v1/nodes/"+id+"/bundle/history", "")
	wantStatus(t, "REST with the bundles service down", code, body, http.StatusServiceUnavailable, 14, down)
	waitHealth(t, front, berthv1.BundleAdminService_ServiceDesc.ServiceName, notServing)
	if _, err := nodes.GetNode(ctx, &berthv1.GetNodeRequest{Id: id}); err != nil {
		t.Errorf("GetNode with the bundles service down: %v", err)
	}
	d.procs[RoleAPI].alive(t)
}

var errFound = errors.New("found")

// registerWith registers a new node with the registration service of d,
// with a bootstrap token, and returns its ID.
func registerWith(t *testing.T, d *deployment, token string) string {
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
	resp, err := berthv1.NewRegistrationServiceClient(d.dial(t, RoleRegistration, self)).Register(context.Background(), &berthv1.RegisterRequest{
		Facts:          &berthv1.MachineFacts{HardwareUuid: "0f5f1c8e-7a7e-4c55-9d0e-6a4f3c2b1a01", Hostname: "split-node", Macs: []string{"02:00:00:00:00:02"}},
		Csr:            grpctest.CSR(t, key, nil),
		BundleKey:      &berthv1.BundleKey{KemId: uint32(bk.KEM().ID()), PublicKey: bk.PublicKey().Bytes()},
		Token:          token,
		IdentitySource: "seed-file",
	})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return resp.GetCredentials().GetNodeId()
}
