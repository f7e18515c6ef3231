package daemon

import (
	"context"
	"errors"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/telemetry"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Retry pacing while the database is unreachable at start.
const (
	firstRetry = time.Second
	maxRetry   = 5 * time.Second
)

// buildWhenReady builds the process's services. After a power cut the
// database often comes up after berth does, so a database that cannot be
// reached yet is waited for rather than fatal: meanwhile the listener
// answers gRPC health with NOT_SERVING for every service of the role (so
// orchestrators and `berthd health` see a live process that cannot serve
// yet), and the open is retried until it works or ctx ends. Any other
// error (bad settings, a schema newer than this binary) ends the process
// at once. It returns nil, nil when ctx ends while waiting.
func buildWhenReady(ctx context.Context, c Config, cr *creds, tel *telemetry.Telemetry, h *handoff) (*built, error) {
	b, err := build(ctx, c, cr, tel)
	if err == nil || !db.IsUnavailable(err) || ctx.Err() != nil {
		return b, err
	}
	waiting, werr := serveWaiting(c, cr, h)
	if werr != nil {
		return nil, errors.Join(err, werr)
	}
	defer waiting.Stop()
	start := time.Now()
	delay := firstRetry
	for attempt := 1; ; attempt++ {
		c.Logger.Warn("database unavailable at start; health answers NOT_SERVING until it can be opened",
			"role", c.Role, "error", err, "attempt", attempt, "waited", time.Since(start).Round(time.Second), "retry_in", delay)
		select {
		case <-ctx.Done():
			c.Logger.Info("berthd shutting down while waiting for the database")
			return nil, nil
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRetry)
		b, err = build(ctx, c, cr, tel)
		switch {
		case err == nil:
			c.Logger.Info("database available; starting the services", "role", c.Role, "waited", time.Since(start).Round(time.Millisecond))
			return b, nil
		case ctx.Err() != nil:
			return nil, nil
		case !db.IsUnavailable(err):
			return nil, err
		}
	}
}

// serveWaiting serves health alone on a view of h: NOT_SERVING for the
// whole server and for each of the role's services.
func serveWaiting(c Config, cr *creds, h *handoff) (*rpc.Server, error) {
	var sc *pki.SignerConfig
	if c.Role == RoleAll {
		s, err := cr.roles[RoleCA].SignerConfig()
		if err != nil {
			return nil, err
		}
		sc = &s
	}
	cert, err := cr.listenerCert(sc, time.Now())
	if err != nil {
		return nil, err
	}
	srv := rpc.NewServer(rpc.ServerConfig{
		Name: c.Role, Logger: c.Logger, TrustDomain: cr.trustDomain, Cert: cert, Roots: cr.rootPool(), Limits: c.Limits,
	})
	srv.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	for _, name := range healthNames(c.Role) {
		srv.Health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	lis := h.view()
	go func() {
		if err := srv.Serve(lis); err != nil {
			c.Logger.Error("serving health while waiting for the database", "error", err)
		}
	}()
	return srv, nil
}

// healthNames are the gRPC services a role serves, as health names them.
func healthNames(role string) []string {
	byRole := map[string][]string{
		RoleRegistration: {berthv1.RegistrationService_ServiceDesc.ServiceName, berthv1.NodeAdminService_ServiceDesc.ServiceName,
			berthv1.APITokenService_ServiceDesc.ServiceName},
		RoleCA:        {berthv1.CertificateAuthorityService_ServiceDesc.ServiceName},
		RoleBundles:   {berthv1.BundleService_ServiceDesc.ServiceName, berthv1.BundleAdminService_ServiceDesc.ServiceName},
		RoleHeartbeat: {berthv1.HeartbeatService_ServiceDesc.ServiceName, berthv1.HeartbeatAdminService_ServiceDesc.ServiceName},
	}
	var out []string
	for _, r := range servedRoles(role) {
		out = append(out, byRole[r]...)
	}
	return out
}
