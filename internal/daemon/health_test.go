package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// process is a berthd process run by a test.
type process struct {
	addr   string
	done   chan error
	cancel context.CancelFunc
}

// start runs c until the test ends, and waits until it serves.
func start(t testing.TB, c Config) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{done: make(chan error, 1), cancel: cancel}
	ready := make(chan string, 1)
	c.Ready = func(a string) { ready <- a }
	go func() { p.done <- Run(ctx, c) }()
	select {
	case p.addr = <-ready:
	case err := <-p.done:
		cancel()
		t.Fatalf("Run(%s) ended early: %v", c.Role, err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-p.done; err != nil {
			t.Errorf("Run(%s) after cancel: %v", c.Role, err)
		}
	})
	return p
}

// alive fails the test if the process has stopped.
func (p *process) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("the process stopped: %v", err)
	default:
	}
}

// dialAs connects to addr presenting cert.
func dialAs(t *testing.T, layout *pki.Layout, addr string, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := mtls.ClientConfig(cert, layout.RootPool())
	cfg.ServerName = "127.0.0.1"
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitHealth waits, on a health Watch stream, until service's status is
// want; it fails the test after a generous minute.
func waitHealth(t *testing.T, conn *grpc.ClientConn, service string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var last healthpb.HealthCheckResponse_ServingStatus
	for ctx.Err() == nil {
		stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			continue
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				break // the server restarted, or ctx ended
			}
			if last = resp.GetStatus(); last == want {
				return
			}
		}
	}
	t.Fatalf("health of %q stayed %v for a minute, want %v", service, last, want)
}

var (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

// allServices are the gRPC services of a process with every role.
var allServices = []string{"",
	berthv1.RegistrationService_ServiceDesc.ServiceName, berthv1.NodeAdminService_ServiceDesc.ServiceName,
	berthv1.APITokenService_ServiceDesc.ServiceName,
	berthv1.CertificateAuthorityService_ServiceDesc.ServiceName,
	berthv1.BundleService_ServiceDesc.ServiceName, berthv1.BundleAdminService_ServiceDesc.ServiceName,
	berthv1.HeartbeatService_ServiceDesc.ServiceName, berthv1.HeartbeatAdminService_ServiceDesc.ServiceName,
}

// TestHealthFollowsDatabase: every service of a process is NOT_SERVING
// while its PostgreSQL is down, and SERVING again when it is back, while
// the process stays up; meanwhile calls that need the database answer
// Unavailable, which clients retry.
func TestHealthFollowsDatabase(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	layout := grpctest.NewPKI(t)
	p := start(t, Config{Role: RoleAll, Listen: "127.0.0.1:0", PKIDir: layout.Dir, DB: cluster.DSN(), HealthPeriod: 100 * time.Millisecond})
	admin, _ := layout.AdminCertificate()
	conn := dialAs(t, layout, p.addr, admin)
	for _, svc := range allServices {
		waitHealth(t, conn, svc, serving)
	}

	cluster.Stop(t)
	for _, svc := range allServices {
		waitHealth(t, conn, svc, notServing)
	}
	_, err := berthv1.NewNodeAdminServiceClient(conn).ListNodes(context.Background(), &berthv1.ListNodesRequest{})
	grpctest.WantCode(t, err, codes.Unavailable)
	p.alive(t)

	cluster.Start(t)
	for _, svc := range allServices {
		waitHealth(t, conn, svc, serving)
	}
	if _, err := berthv1.NewNodeAdminServiceClient(conn).ListNodes(context.Background(), &berthv1.ListNodesRequest{}); err != nil {
		t.Fatalf("ListNodes once the database is back: %v", err)
	}
	p.alive(t)
}

// TestHealthFollowsFailedCalls: a call answered Unavailable makes health
// look at the dependencies at once, not at its next probe (an hour away
// here).
func TestHealthFollowsFailedCalls(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	layout := grpctest.NewPKI(t)
	p := start(t, Config{Role: RoleCA, Listen: "127.0.0.1:0", PKIDir: layout.Dir, DB: cluster.DSN(), HealthPeriod: time.Hour})
	admin, _ := layout.AdminCertificate()
	conn := dialAs(t, layout, p.addr, admin)
	waitHealth(t, conn, "", serving)

	cluster.Stop(t)
	_, err := berthv1.NewCertificateAuthorityServiceClient(conn).ListIssued(context.Background(), &berthv1.ListIssuedRequest{})
	grpctest.WantCode(t, err, codes.Unavailable)
	waitHealth(t, conn, "", notServing)
	waitHealth(t, conn, berthv1.CertificateAuthorityService_ServiceDesc.ServiceName, notServing)
}

// TestRevocationUnknownUntilCA: a bundle store or heartbeat service that
// starts while the CA is down does not know the revocation list: it is
// NOT_SERVING and refuses node calls with Unavailable until the CA is up,
// then serves without a restart.
func TestRevocationUnknownUntilCA(t *testing.T) {
	srv := grpctest.New(t, grpctest.Config{})
	layout := srv.Layout
	dir := t.TempDir()
	// The CA's port stays bound until the CA starts, so that no other
	// test (or outgoing connection) takes it meanwhile; bound and never
	// accepting, it is as unreachable as a CA that is down.
	caLis := reserveAddr(t)
	caAddr := caLis.Addr().String()
	bundles := start(t, Config{Role: RoleBundles, Listen: "127.0.0.1:0", PKIDir: layout.Dir, DataDir: dir, CAAddr: caAddr, HealthPeriod: 100 * time.Millisecond})
	hb := start(t, Config{Role: RoleHeartbeat, Listen: "127.0.0.1:0", PKIDir: layout.Dir, DataDir: dir, CAAddr: caAddr, HealthPeriod: 100 * time.Millisecond})
	node := srv.NodeCert(t, "node-1")
	bundleConn := dialAs(t, layout, bundles.addr, node.TLS)
	hbConn := dialAs(t, layout, hb.addr, node.TLS)

	// The first probe has run once the whole server's status is known.
	waitHealth(t, bundleConn, berthv1.BundleService_ServiceDesc.ServiceName, notServing)
	waitHealth(t, hbConn, berthv1.HeartbeatService_ServiceDesc.ServiceName, notServing)
	_, err := berthv1.NewBundleServiceClient(bundleConn).GetBundle(context.Background(), &berthv1.GetBundleRequest{})
	grpctest.WantStatus(t, err, codes.Unavailable, "revocation state not yet known; retry later")
	stream, err := berthv1.NewHeartbeatServiceClient(hbConn).Heartbeat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	grpctest.WantStatus(t, err, codes.Unavailable, "revocation state not yet known; retry later")

	caLis.Close()
	start(t, Config{Role: RoleCA, Listen: caAddr, PKIDir: layout.Dir, DataDir: dir})
	waitHealth(t, bundleConn, "", serving)
	waitHealth(t, hbConn, "", serving)
	_, err = berthv1.NewBundleServiceClient(bundleConn).GetBundle(context.Background(), &berthv1.GetBundleRequest{})
	grpctest.WantCode(t, err, codes.NotFound) // served: the node has no bundle
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err = berthv1.NewHeartbeatServiceClient(hbConn).Heartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("heartbeat stream once the CA is up: %v", err)
	}
	bundles.alive(t)
	hb.alive(t)
}

// syncBuffer is a log destination the process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStartWaitsForDatabase starts processes while their PostgreSQL is
// down, as after a power cut when berth comes up first: each stays up,
// answers health NOT_SERVING for each of its services, says in its log
// that it waits for the database, and serves once the database is up,
// without a restart.
func TestStartWaitsForDatabase(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	cluster.Stop(t)
	layout := grpctest.NewPKI(t)
	admin, _ := layout.AdminCertificate()
	tests := []struct {
		role     string
		services []string
	}{
		{RoleAll, allServices},
		{RoleCA, []string{"", berthv1.CertificateAuthorityService_ServiceDesc.ServiceName}},
	}
	type waiting struct {
		p    *process
		conn *grpc.ClientConn
		log  *syncBuffer
	}
	var ps []waiting
	for _, tt := range tests {
		log := &syncBuffer{}
		addr := freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		p := &process{addr: addr, done: make(chan error, 1), cancel: cancel}
		go func() {
			p.done <- Run(ctx, Config{Role: tt.role, Listen: addr, PKIDir: layout.Dir, DB: cluster.DSN(),
				HealthPeriod: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(log, nil))})
		}()
		t.Cleanup(func() {
			cancel()
			if err := <-p.done; err != nil {
				t.Errorf("Run(%s) after cancel: %v", tt.role, err)
			}
		})
		conn := dialAs(t, layout, addr, admin)
		for _, svc := range tt.services {
			waitHealth(t, conn, svc, notServing)
		}
		p.alive(t)
		ps = append(ps, waiting{p, conn, log})
	}
	for i, w := range ps {
		if got := w.log.String(); !strings.Contains(got, "database unavailable at start") {
			t.Errorf("%s: the log does not say it waits for the database:\n%s", tests[i].role, got)
		}
	}

	cluster.Start(t)
	for i, w := range ps {
		for _, svc := range tests[i].services {
			waitHealth(t, w.conn, svc, serving)
		}
		w.p.alive(t)
	}
	if _, err := berthv1.NewNodeAdminServiceClient(ps[0].conn).ListNodes(context.Background(), &berthv1.ListNodesRequest{}); err != nil {
		t.Errorf("ListNodes once the database is up: %v", err)
	}
	if _, err := berthv1.NewCertificateAuthorityServiceClient(ps[1].conn).ListIssued(context.Background(), &berthv1.ListIssuedRequest{}); err != nil {
		t.Errorf("ListIssued once the database is up: %v", err)
	}
	if got := ps[1].log.String(); !strings.Contains(got, "database available; starting the services") {
		t.Errorf("the log does not say the database came:\n%s", got)
	}
}

// TestStartFailsOnBadDatabase: a database that answers but refuses berth
// (here: a database that does not exist) is a setting to fix, not an
// outage to wait out, so the process ends at once and says why.
func TestStartFailsOnBadDatabase(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	layout := grpctest.NewPKI(t)
	dsn := strings.Replace(cluster.DSN(), "/postgres?", "/no_such_db?", 1)
	err := Run(context.Background(), Config{Role: RoleCA, Listen: "127.0.0.1:0", PKIDir: layout.Dir, DB: dsn})
	if err == nil || !strings.Contains(err.Error(), "no_such_db") {
		t.Fatalf("Run with a database that does not exist = %v, want an error naming it", err)
	}
}
