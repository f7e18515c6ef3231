package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/apitoken"
	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/console"
	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/depwatch"
	"github.com/berth-dev/berth/internal/gateway"
	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/revocation"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/store/castore"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/telemetry"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/services/bundles"
	"github.com/berth-dev/berth/services/ca"
	"github.com/berth-dev/berth/services/heartbeat"
	"github.com/berth-dev/berth/services/registration"
)

// built is a server with its services registered, and what to close after.
type built struct {
	server  *rpc.Server
	closers []func()
	// needs is every role's dependencies; watch sets health from them.
	needs []needs
	watch *depwatch.Watch
	// probes are the database handles health checks use, by DSN or file.
	probes map[string]*db.DB
	// crl serves the CA's revocation list over HTTP; nil without the CA.
	crl http.Handler
	// bearer checks API tokens on the front door's port (role all: the
	// registration service here; role api: through it); nil elsewhere.
	bearer rpc.BearerAuth
	// tokens checks API tokens on the front door: the one check, under
	// the one limit on refused tokens, that bearer and the web console's
	// sign-in share.
	tokens *apitoken.Limited
	// rest is the REST/JSON front door; nil unless the process serves it.
	rest *gateway.Gateway
	// upstream are the front door's connections to the services it
	// forwards to, by service name (role api only).
	upstream map[string]*grpc.ClientConn
	// gauges refresh the metrics read from the stores; see gauges.go.
	gauges []gauge
}

func (b *built) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

func build(ctx context.Context, c Config, cr *creds, tel *telemetry.Telemetry) (b *built, err error) {
	b = &built{}
	// Every error return sets b to nil; what was opened is closed all
	// the same.
	opened := b
	defer func() {
		if err != nil {
			opened.close()
		}
	}()
	var policies []rpc.Policy
	var registers []func(*rpc.Server)
	var sc *pki.SignerConfig
	// deferStreams is the heartbeat service's, where it runs.
	var deferStreams func() bool
	if c.runs(RoleCA) {
		svc, signer, err := buildCA(ctx, c, cr, b)
		if err != nil {
			return nil, err
		}
		sc = signer
		policies = append(policies, svc.Policy())
		registers = append(registers, func(s *rpc.Server) { svc.Register(s.Server) })
		b.crl = svc.CRLHandler()
	}
	if c.runs(RoleBundles) {
		svc, err := buildBundles(ctx, c, cr, tel, b)
		if err != nil {
			return nil, err
		}
		policies = append(policies, svc.Policy())
		registers = append(registers, func(s *rpc.Server) { svc.Register(s) })
	}
	if c.runs(RoleHeartbeat) {
		svc, err := buildHeartbeat(ctx, c, cr, tel, b)
		if err != nil {
			return nil, err
		}
		deferStreams = svc.DeferStream
		policies = append(policies, svc.Policy())
		registers = append(registers, func(s *rpc.Server) { svc.Register(s) })
	}
	if c.Role == RoleAPI {
		p, err := buildFrontDoor(c, cr, tel, b)
		if err != nil {
			return nil, err
		}
		policies = append(policies, p)
	}
	if c.runs(RoleRegistration) {
		svc, err := buildRegistration(ctx, c, cr, tel, b)
		if err != nil {
			return nil, err
		}
		policies = append(policies, svc.Policy())
		registers = append(registers, func(s *rpc.Server) { svc.Register(s) })
		if c.Role == RoleAll {
			// One limit on refused tokens for gRPC, REST and the console.
			b.tokens = apitoken.NewLimited(svc.APITokens())
			b.bearer = apitoken.BearerAuth(b.tokens, svc.TokenError)
		}
	}
	if c.servesREST() {
		// The web console's own service, served where the console is.
		policies = append(policies, rpc.PolicyFor(berthv1.ConsoleAdminService_ServiceDesc.ServiceName))
	}
	cert, err := cr.listenerCert(sc, time.Now())
	if err != nil {
		return nil, err
	}
	b.server = rpc.NewServer(rpc.ServerConfig{
		Name:           c.Role,
		Logger:         c.Logger,
		TrustDomain:    cr.trustDomain,
		Cert:           cert,
		Roots:          cr.rootPool(),
		Policy:         rpc.Merge(policies...),
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
		Propagator:     tel.Propagator,
		Limits:         c.Limits,
		// A call answered Unavailable has seen a dependency fail: probe
		// now. b.watch is set below, before anything is served.
		OnUnavailable: func() { b.watch.Kick() },
		Bearer:        b.bearer,
		DeferStreams:  deferStreams,
	})
	for _, r := range registers {
		r(b.server)
	}
	if c.Role == RoleAPI {
		if err := b.registerProxies(); err != nil {
			return nil, err
		}
	}
	if c.servesREST() {
		if b.rest, err = buildGateway(c, cr, tel, b, cert); err != nil {
			return nil, err
		}
	}
	// Health is NOT_SERVING until the first probe, and then follows the
	// dependencies; see internal/depwatch.
	b.watch, err = depwatch.New(depwatch.Config{Health: b.server.Health, Period: c.HealthPeriod, Logger: c.Logger})
	if err != nil {
		return nil, err
	}
	for _, n := range b.needs {
		b.watch.Add(n.services, n.deps...)
	}
	if len(b.gauges) > 0 {
		b.background(ctx, func(ctx context.Context) { refreshGauges(ctx, c, b.gauges) })
	}
	return b, nil
}

// buildGateway builds the REST front door of a process serving every
// role, with the web console: both reach the services on this process's
// own listener, as the api service, so that each call meets the same
// interceptors as a gRPC caller's.
func buildGateway(c Config, cr *creds, tel *telemetry.Telemetry, b *built, cert tls.Certificate) (*gateway.Gateway, error) {
	// The front door of a split deployment shares its connections to the
	// services with its gRPC side.
	conns := b.upstream
	if conns == nil {
		conns = map[string]*grpc.ClientConn{}
		for _, svc := range []string{pki.ServiceRegistration, pki.ServiceBundles, pki.ServiceHeartbeat} {
			conn, err := dialService(c, cr.api, tel, b, svc, c.self)
			if err != nil {
				return nil, err
			}
			conns[svc] = conn
		}
	}
	var tokens apitoken.Authenticator
	if b.tokens != nil {
		tokens = b.tokens
	}
	ui, err := console.New(console.Config{
		Registration: conns[pki.ServiceRegistration],
		Bundles:      conns[pki.ServiceBundles],
		Heartbeat:    conns[pki.ServiceHeartbeat],
		Tokens:       tokens,
		Logger:       c.Logger,
	})
	if err != nil {
		return nil, err
	}
	ui.Service().Register(b.server)
	return gateway.New(gateway.Config{
		Registration: conns[pki.ServiceRegistration],
		Bundles:      conns[pki.ServiceBundles],
		Heartbeat:    conns[pki.ServiceHeartbeat],
		Cert:         cert,
		TrustDomain:  cr.trustDomain,
		Roots:        cr.rootPool(),
		Bearer:       b.bearer,
		UI:           ui.Handler(),
		Logger:       c.Logger,
	})
}

// need records that services cannot work without deps.
func (b *built) need(deps []depwatch.Dependency, services ...string) {
	b.needs = append(b.needs, needs{services: services, deps: deps})
}

func buildCA(ctx context.Context, c Config, cr *creds, b *built) (*ca.Service, *pki.SignerConfig, error) {
	var store castore.Store
	var err error
	if c.DB != "" {
		store, err = castore.Open(ctx, db.Postgres, c.DB)
	} else {
		store, err = castore.Open(ctx, db.SQLite, filepath.Join(c.DataDir, "ca.db"))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open CA store: %w", err)
	}
	b.closers = append(b.closers, store.Close)
	// The one place a running berth opens the intermediate key.
	sc, err := cr.roles[RoleCA].SignerConfig()
	if err != nil {
		return nil, nil, err
	}
	sc.Lifetime = c.CertLifetime
	signer, err := pki.NewSigner(sc)
	if err != nil {
		return nil, nil, fmt.Errorf("CA signer: %w", err)
	}
	storeDep, err := b.storeDependency(ctx, c, RoleCA, "ca.db")
	if err != nil {
		return nil, nil, err
	}
	b.need([]depwatch.Dependency{storeDep}, berthv1.CertificateAuthorityService_ServiceDesc.ServiceName)
	svc, err := ca.New(ca.Config{
		Signer: signer, Store: store, Roots: []*x509.Certificate{cr.root}, Logger: c.Logger,
		CRLIssuer: sc.Intermediate, CRLKey: sc.Key,
	})
	if err != nil {
		return nil, nil, err
	}
	b.runService(ctx, c, "ca", svc.Run)
	return svc, &sc, nil
}

func buildRegistration(ctx context.Context, c Config, cr *creds, tel *telemetry.Telemetry, b *built) (*registration.Service, error) {
	var store regstore.Store
	var err error
	if c.DB != "" {
		store, err = regstore.Open(ctx, db.Postgres, c.DB)
	} else {
		store, err = regstore.Open(ctx, db.SQLite, filepath.Join(c.DataDir, "registration.db"))
	}
	if err != nil {
		return nil, fmt.Errorf("open registration store: %w", err)
	}
	b.closers = append(b.closers, store.Close)
	caConn, err := dialService(c, cr.roles[RoleRegistration], tel, b, pki.ServiceCA, c.CAAddr)
	if err != nil {
		return nil, err
	}
	b.gauges = append(b.gauges, registrationGauges(c.metrics, store))
	cfg := registration.Config{
		Metrics:     c.metrics,
		Store:       store,
		CA:          registration.NewGRPCCA(caConn),
		TrustBundle: [][]byte{cr.root.Raw},
		Endpoints: &berthv1.Endpoints{
			Registration: c.AdvertiseRegistration,
			Bundles:      c.AdvertiseBundles,
			Heartbeat:    c.AdvertiseHeartbeat,
		},
		Logger:            c.Logger,
		TokenFailureBurst: c.TokenFailureBurst,

		AutoApproveTrustedEK: c.EKCAAutoApprove,
	}
	if c.EKCA != "" {
		pemData, err := os.ReadFile(c.EKCA)
		if err != nil {
			return nil, fmt.Errorf("--ek-ca: %w", err)
		}
		if cfg.EKRoots, err = attest.ParseEKRoots(pemData); err != nil {
			return nil, fmt.Errorf("--ek-ca %s: %w", c.EKCA, err)
		}
	} else if c.EKCAAutoApprove {
		return nil, errors.New("--ek-ca-auto-approve needs --ek-ca")
	}
	if c.BundlesAddr != "" {
		conn, err := dialService(c, cr.roles[RoleRegistration], tel, b, pki.ServiceBundles, c.BundlesAddr)
		if err != nil {
			return nil, err
		}
		// Resume answers bundles from memory, filled when the watch of
		// the bundle store's events starts, dropped by its events and
		// read back in batches after them, instead of a call per boot.
		cache, err := registration.NewBundleCache(registration.BundleCacheConfig{
			Source: registration.NewGRPCBundles(conn),
			Watch:  berthv1.NewBundleAdminServiceClient(conn),
			Nodes:  store,
			Logger: c.Logger,
		})
		if err != nil {
			return nil, err
		}
		b.runService(ctx, c, "bundle cache", cache.Run)
		cfg.Bundles = cache
	}
	if c.HeartbeatAddr != "" {
		conn, err := dialService(c, cr.roles[RoleRegistration], tel, b, pki.ServiceHeartbeat, c.HeartbeatAddr)
		if err != nil {
			return nil, err
		}
		// A node's Resume counts as its first heartbeat: the boots go to
		// the heartbeat service in batches over this one connection.
		sender, err := registration.NewBootSender(registration.BootSenderConfig{Sink: registration.NewGRPCBootSink(conn), Logger: c.Logger})
		if err != nil {
			return nil, err
		}
		b.background(ctx, sender.Run)
		cfg.Boots = sender
	}
	svc, err := registration.New(cfg)
	if err != nil {
		return nil, err
	}
	storeDep, err := b.storeDependency(ctx, c, RoleRegistration, "registration.db")
	if err != nil {
		return nil, err
	}
	b.need([]depwatch.Dependency{storeDep, caDependency(caConn)},
		berthv1.RegistrationService_ServiceDesc.ServiceName, berthv1.NodeAdminService_ServiceDesc.ServiceName,
		berthv1.APITokenService_ServiceDesc.ServiceName)
	b.runService(ctx, c, "registration", svc.Run)
	return svc, nil
}

func buildBundles(ctx context.Context, c Config, cr *creds, tel *telemetry.Telemetry, b *built) (*bundles.Service, error) {
	var store bundlestore.Store
	var err error
	if c.DB != "" {
		store, err = bundlestore.Open(ctx, db.Postgres, c.DB)
	} else {
		store, err = bundlestore.Open(ctx, db.SQLite, filepath.Join(c.DataDir, "bundles.db"))
	}
	if err != nil {
		return nil, fmt.Errorf("open bundle store: %w", err)
	}
	b.closers = append(b.closers, store.Close)
	caConn, err := dialService(c, cr.roles[RoleBundles], tel, b, pki.ServiceCA, c.CAAddr)
	if err != nil {
		return nil, err
	}
	revoked := revocation.New(revocation.Config{Source: berthv1.NewCertificateAuthorityServiceClient(caConn), Logger: c.Logger})
	b.background(ctx, revoked.Run)
	b.gauges = append(b.gauges, headGauge(c.metrics, "bundles", store.Events()))
	svc, err := bundles.New(bundles.Config{
		Metrics:          c.metrics,
		Store:            store,
		TrustDomain:      cr.trustDomain,
		Roots:            cr.rootPool(),
		MaxBundleSize:    c.BundleMaxSize,
		Keep:             c.BundleHistory,
		RequireApproval:  c.BundleRequireApproval,
		Revoked:          revoked.Revoked,
		NodeRevoked:      revoked.NodeRevoked,
		RevocationsKnown: revoked.Known,
		Logger:           c.Logger,
	})
	if err != nil {
		return nil, err
	}
	storeDep, err := b.storeDependency(ctx, c, RoleBundles, "bundles.db")
	if err != nil {
		return nil, err
	}
	b.need([]depwatch.Dependency{storeDep, revocationDependency(revoked.Known)},
		berthv1.BundleService_ServiceDesc.ServiceName, berthv1.BundleAdminService_ServiceDesc.ServiceName)
	b.runService(ctx, c, "bundles", svc.Run)
	return svc, nil
}

func buildHeartbeat(ctx context.Context, c Config, cr *creds, tel *telemetry.Telemetry, b *built) (*heartbeat.Service, error) {
	var store heartbeatstore.Store
	var err error
	if c.DB != "" {
		store, err = heartbeatstore.Open(ctx, db.Postgres, c.DB)
	} else {
		store, err = heartbeatstore.Open(ctx, db.SQLite, filepath.Join(c.DataDir, "heartbeat.db"))
	}
	if err != nil {
		return nil, fmt.Errorf("open heartbeat store: %w", err)
	}
	b.closers = append(b.closers, store.Close)
	caConn, err := dialService(c, cr.roles[RoleHeartbeat], tel, b, pki.ServiceCA, c.CAAddr)
	if err != nil {
		return nil, err
	}
	revoked := revocation.New(revocation.Config{Source: berthv1.NewCertificateAuthorityServiceClient(caConn), Logger: c.Logger})
	b.background(ctx, revoked.Run)
	interval := cmp.Or(c.HeartbeatInterval, liveness.DefaultInterval)
	b.gauges = append(b.gauges, heartbeatGauges(c.metrics, store))
	svc, err := heartbeat.New(heartbeat.Config{
		Metrics:  c.metrics,
		Store:    store,
		Interval: interval,
		Grace:    c.HeartbeatGrace,
		// Flushes must come at least twice per interval so that the single
		// decider, reading last-seen times from the store, is never fooled.
		FlushPeriod:      min(liveness.DefaultFlushPeriod, interval/2),
		MaxBeatRate:      c.HeartbeatMaxRate,
		MaxConnectRate:   c.HeartbeatMaxConnectRate,
		IsRevoked:        revoked.NodeRevoked,
		CertRevoked:      revoked.Revoked,
		RevocationsKnown: revoked.Known,
		Logger:           c.Logger,
	})
	if err != nil {
		return nil, err
	}
	storeDep, err := b.storeDependency(ctx, c, RoleHeartbeat, "heartbeat.db")
	if err != nil {
		return nil, err
	}
	b.need([]depwatch.Dependency{storeDep, revocationDependency(revoked.Known)},
		berthv1.HeartbeatService_ServiceDesc.ServiceName, berthv1.HeartbeatAdminService_ServiceDesc.ServiceName)
	if c.BundlesAddr != "" {
		conn, err := dialService(c, cr.roles[RoleHeartbeat], tel, b, pki.ServiceBundles, c.BundlesAddr)
		if err != nil {
			return nil, err
		}
		b.background(ctx, func(ctx context.Context) {
			watchBundles(ctx, berthv1.NewBundleAdminServiceClient(conn), svc, c.Logger)
		})
	}
	b.runService(ctx, c, "heartbeat", svc.Run)
	return svc, nil
}

// dialService opens a long-lived connection to the berth service want at
// addr, presenting the certificate of the role self and refusing a server
// that is not want.
func dialService(c Config, self *pki.Role, tel *telemetry.Telemetry, b *built, want, addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("service address %q: %w", addr, err)
	}
	tlsCfg := mtls.ExpectServer(mtls.ClientConfig(self.Cert, self.RootPool()), self.TrustDomain, want)
	tlsCfg.ServerName = host
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: tlsCfg, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagator: tel.Propagator, Options: opts})
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, func() { conn.Close() })
	return conn, nil
}

// runService runs a service's background work (event retention, flushes,
// the decider); at shutdown it also ends the service's open streams, so
// that GracefulStop is not left waiting on them.
func (b *built) runService(ctx context.Context, c Config, name string, run func(context.Context) error) {
	b.background(ctx, func(ctx context.Context) {
		if err := run(ctx); err != nil && ctx.Err() == nil {
			c.Logger.Error("service background work stopped", "service", name, "error", err)
		}
	})
}

// background runs f until the process shuts down, and waits for it on
// close. Background work is untraced: its polling would otherwise send a
// trace every few seconds (telemetry.Untraced).
func (b *built) background(ctx context.Context, f func(context.Context)) {
	ctx, cancel := context.WithCancel(telemetry.Untraced(ctx))
	done := make(chan struct{})
	go func() { defer close(done); f(ctx) }()
	b.closers = append(b.closers, func() { cancel(); <-done })
}
