package rpc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/berth-dev/berth/internal/buildinfo"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestAuthenticatedRule(t *testing.T) {
	for _, tt := range []struct {
		id   mtls.Identity
		want bool
	}{
		{mtls.Identity{Kind: mtls.KindAdmin, Name: "admin"}, true},
		{mtls.Identity{Kind: mtls.KindNode, Name: "n1"}, true},
		{mtls.Identity{Kind: mtls.KindService, Name: "bundles"}, true},
		{mtls.Identity{Kind: mtls.KindBootstrap}, false},
		{mtls.Identity{Kind: mtls.KindUnknown}, false},
	} {
		if got := Authenticated(tt.id); got != tt.want {
			t.Errorf("Authenticated(%v) = %v, want %v", tt.id.Kind, got, tt.want)
		}
		if got := FromAuthenticated.Allows(tt.id); got != tt.want {
			t.Errorf("FromAuthenticated.Allows(%v) = %v, want %v", tt.id.Kind, got, tt.want)
		}
	}
	if allowsBootstrap(Authenticated) || allowsBootstrap(FromAuthenticated.Rule()) {
		t.Error("Authenticated lets a bare key through")
	}
}

// TestVersionService calls GetVersion on a server built by NewServer, with
// no policy of its own, as the callers berthctl version and others are.
func TestVersionService(t *testing.T) {
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := layout.ServiceCertificate(pki.ServiceRegistration)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerConfig{Name: "t", TrustDomain: layout.TrustDomain, Cert: srvCert, Roots: layout.RootPool()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	admin, err := layout.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	service, err := layout.ServiceCertificate(pki.ServiceBundles)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := mtls.SelfSigned(key)
	if err != nil {
		t.Fatal(err)
	}
	info := buildinfo.Get()
	want := &berthv1.GetVersionResponse{Version: info.Version, Commit: info.Commit, BuildDate: info.Date, GoVersion: info.GoVersion, Platform: info.Platform}
	for _, tt := range []struct {
		name     string
		cert     tls.Certificate
		wantCode codes.Code
	}{
		{"admin", admin, codes.OK},
		{"service", service, codes.OK},
		{"bare key", bare, codes.Unauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mtls.ClientConfig(tt.cert, layout.RootPool())
			cfg.ServerName = "127.0.0.1"
			conn, err := Dial(ClientConfig{Addr: lis.Addr().String(), TLS: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			got, err := berthv1.NewVersionServiceClient(conn).GetVersion(context.Background(), &berthv1.GetVersionRequest{})
			if status.Code(err) != tt.wantCode {
				t.Fatalf("GetVersion: %v, want code %v", err, tt.wantCode)
			}
			if tt.wantCode != codes.OK {
				return
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("GetVersion (-want +got):\n%s", diff)
			}
			if got.GetGoVersion() == "" || got.GetPlatform() == "" {
				t.Errorf("GetVersion = %v: Go version and platform must be known", got)
			}
		})
	}
}
