package daemon

import (
	"fmt"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/apitoken"
	"github.com/berth-dev/berth/internal/depwatch"
	"github.com/berth-dev/berth/internal/gateway"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/telemetry"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The front door of a split deployment (role api) serves the admin API of
// every service, gRPC and REST on one port, and forwards each call to the
// service over one long-lived mTLS connection per service (gRPC
// multiplexes every call on it), made with the front door's own api
// identity.

// frontDoorServices are the gRPC services the front door forwards, by the
// berth service that serves them.
var frontDoorServices = []struct{ service, grpcService string }{
	{pki.ServiceRegistration, berthv1.NodeAdminService_ServiceDesc.ServiceName},
	{pki.ServiceRegistration, berthv1.APITokenService_ServiceDesc.ServiceName},
	{pki.ServiceCA, berthv1.CertificateAuthorityService_ServiceDesc.ServiceName},
	{pki.ServiceBundles, berthv1.BundleAdminService_ServiceDesc.ServiceName},
	{pki.ServiceHeartbeat, berthv1.HeartbeatAdminService_ServiceDesc.ServiceName},
}

// forwarded reports whether the front door forwards method: those an
// admin may call. A node or a service speaks to the services itself.
func forwarded(method string) bool {
	return rpc.Matrix()[method]&rpc.FromAdmin != 0
}

// buildFrontDoor dials the services and returns the front door's policy:
// the rows of the matrix of the methods it forwards, so that it refuses
// what the service would, before forwarding.
func buildFrontDoor(c Config, cr *creds, tel *telemetry.Telemetry, b *built) (rpc.Policy, error) {
	b.upstream = map[string]*grpc.ClientConn{}
	for _, u := range c.upstreams() {
		conn, err := dialService(c, cr.api, tel, b, u.service, u.addr, rpc.UpstreamOptions(u.service, u.addr)...)
		if err != nil {
			return nil, err
		}
		b.upstream[u.service] = conn
	}
	// API tokens are checked by the registration service, which keeps
	// them, under the front door's one limit on refused tokens.
	b.tokens = apitoken.NewLimited(apitoken.NewClient(b.upstream[pki.ServiceRegistration]))
	b.bearer = apitoken.BearerAuth(b.tokens, nil)
	p := rpc.Policy{}
	for method, callers := range rpc.Matrix() {
		if forwarded(method) {
			p[method] = callers.Rule()
		}
	}
	for _, s := range frontDoorServices {
		// A forwarded service is SERVING while the service behind it is.
		conn := b.upstream[s.service]
		b.need([]depwatch.Dependency{{
			Name:  s.service + " service",
			Check: depwatch.Serving(healthpb.NewHealthClient(conn), s.grpcService),
		}}, s.grpcService)
	}
	return p, nil
}

// registerProxies serves the forwarded services on the front door's server.
func (b *built) registerProxies() error {
	for _, s := range frontDoorServices {
		if err := gateway.ProxyService(b.server.Server, b.upstream[s.service], s.grpcService, forwarded); err != nil {
			return fmt.Errorf("front door: %w", err)
		}
	}
	return nil
}
