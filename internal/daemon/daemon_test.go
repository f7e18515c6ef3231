package daemon

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
)

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"unknown role", Config{Role: "dns", PKIDir: "x", DataDir: "d"}, "--role must be one of"},
		{"heartbeat without CA", Config{Role: RoleHeartbeat, PKIDir: "x", DataDir: "d"}, "--ca-addr is required for the heartbeat role"},
		{"bundles without CA", Config{Role: RoleBundles, PKIDir: "x", DataDir: "d"}, "--ca-addr is required for the bundles role"},
		{"no pki dir", Config{Role: RoleAll, DataDir: "d"}, "--pki-dir is required"},
		{"registration without CA", Config{Role: RoleRegistration, PKIDir: "x", DataDir: "d"}, "--ca-addr is required"},
		{"no store", Config{Role: RoleCA, PKIDir: "x"}, "--db"},
		{"missing PKI", Config{Role: RoleCA, PKIDir: "/nonexistent", DataDir: "d"}, "load PKI"},
		{"CRL without the CA", Config{Role: RoleHeartbeat, PKIDir: "x", DataDir: "d", CAAddr: "ca:1", CRLListen: "127.0.0.1:0"}, "--crl-listen serves the CA's revocation list; the heartbeat role has none"},
		{"front door without the registration service", Config{Role: RoleAPI, PKIDir: "x", CAAddr: "ca:1", BundlesAddr: "b:1", HeartbeatAddr: "h:1"},
			"--registration-addr is required for the api role (the front door forwards to the registration service)"},
		{"front door without the heartbeat service", Config{Role: RoleAPI, PKIDir: "x", CAAddr: "ca:1", BundlesAddr: "b:1", RegistrationAddr: "r:1"},
			"--heartbeat-addr is required for the api role"},
		{"front door with the API's directory missing", Config{Role: RoleAPI, PKIDir: "/nonexistent", CAAddr: "ca:1", BundlesAddr: "b:1", RegistrationAddr: "r:1", HeartbeatAddr: "h:1"},
			"load PKI"},
		{"contradictory limits", Config{Role: RoleCA, PKIDir: "x", DataDir: "d", Limits: rpc.Limits{MaxUnauthenticated: 10, MaxUnauthenticatedPerSource: 20}}, "per-source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(context.Background(), tt.c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l := reserveAddr(t)
	defer l.Close()
	return l.Addr().String()
}

// reserveAddr binds a loopback port and keeps it until the test closes it.
func reserveAddr(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestRunServesAndStops runs every role on SQLite: health and reflection
// answer over mTLS, /metrics exposes gRPC server metrics, and cancelling the
// context stops the process cleanly.
func TestRunServesAndStops(t *testing.T) {
	dir := t.TempDir()
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr, crlAddr, pprofAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Role: RoleAll, Listen: "127.0.0.1:0", MetricsListen: metricsAddr, CRLListen: crlAddr, PprofListen: pprofAddr,
			PKIDir: layout.Dir, DataDir: dir, Ready: func(a string) { ready <- a }})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	}
	cert, _ := layout.AdminCertificate()
	tlsCfg := mtls.ExpectServer(mtls.ClientConfig(cert, layout.RootPool()), layout.TrustDomain, pki.ServiceRegistration)
	tlsCfg.ServerName = "127.0.0.1"
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Health turns SERVING once the dependencies have been probed (the
	// revocation list loaded from the CA).
	for _, svc := range []string{"", "berth.v1.RegistrationService", "berth.v1.NodeAdminService", "berth.v1.CertificateAuthorityService", "berth.v1.BundleService", "berth.v1.BundleAdminService", "berth.v1.HeartbeatService", "berth.v1.HeartbeatAdminService"} {
		waitHealth(t, conn, svc, healthpb.HealthCheckResponse_SERVING)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	list, err := stream.Recv()
	if err != nil || !strings.Contains(list.String(), "berth.v1.RegistrationService") {
		t.Fatalf("reflection list: %v %v", list, err)
	}
	stream.CloseSend()

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"rpc_server_call_duration_seconds", "go_goroutines", "berth_rpc_unauthenticated_connections"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The profiles are served on their own listener; the metrics listener
	// does not serve them.
	resp, err = http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
		t.Errorf("GET /debug/pprof/goroutine: %d %.200s", resp.StatusCode, body)
	}
	if resp, err := http.Get("http://" + metricsAddr + "/debug/pprof/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the metrics listener answers /debug/pprof/: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	resp, err = http.Get("http://" + crlAddr + "/crl")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET /crl: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(layout.Intermediate); err != nil {
		t.Errorf("CRL served over HTTP is not signed by the intermediate: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
}
