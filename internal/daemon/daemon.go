// Package daemon assembles berth's services into a running process: it
// opens the stores, builds each service, serves them on one mTLS gRPC
// listener with health and reflection, serves /metrics, and shuts down
// gracefully. berthd serve and berthd dev both run through it.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/gateway"
	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/telemetry"
)

// Roles a process can take.
const (
	RoleRegistration = "registration"
	RoleCA           = "ca"
	RoleBundles      = "bundles"
	RoleHeartbeat    = "heartbeat"
	// RoleAPI is the front door of a split deployment: the whole admin
	// API, gRPC and REST on one port, forwarded to the services.
	RoleAPI = "api"
	RoleAll = "all"
)

// Roles lists the roles --role accepts.
var Roles = []string{RoleRegistration, RoleCA, RoleBundles, RoleHeartbeat, RoleAPI, RoleAll}

// Config is the typed configuration of one berthd process.
type Config struct {
	Role string
	// Listen is the gRPC address, e.g. ":8443".
	Listen string
	// MetricsListen serves /metrics over plain HTTP; empty disables it.
	MetricsListen string
	// CRLListen serves the CA's revocation list at /crl over plain HTTP
	// (CA role only); empty disables it.
	CRLListen string
	// PprofListen serves Go's profiles (net/http/pprof) at /debug/pprof/
	// over plain HTTP; empty disables it. Profiles show a process's
	// internals and cost CPU while taken: for benchmarks (make bench
	// BENCH_PPROF=1) and debugging, on loopback only.
	PprofListen string
	// Limits bound what the gRPC listener spends on its peers.
	Limits rpc.Limits
	// PKIDir is the directory written by berthd init, or the role's own
	// directory in it (DIR/<role>). Role "all" needs the whole directory.
	PKIDir string
	// DB is a PostgreSQL URL; empty means SQLite files under DataDir.
	DB      string
	DataDir string
	// CAAddr is where the registration and bundle services reach the CA;
	// BundlesAddr is where the registration service reaches the bundle
	// store. In role "all" both default to this process's own listener.
	CAAddr, BundlesAddr string
	// RegistrationAddr and HeartbeatAddr are where the front door (role
	// api) reaches those services; it reaches the others at CAAddr and
	// BundlesAddr. The registration service hands the boots it serves to
	// the heartbeat service at HeartbeatAddr (each node's Resume counts as
	// its first heartbeat); in role all it defaults to this process.
	RegistrationAddr, HeartbeatAddr string
	// Advertised addresses of the services, handed to nodes on Resume.
	// They default to the addresses above and this listener.
	AdvertiseRegistration, AdvertiseBundles, AdvertiseHeartbeat string
	// EKCA is a PEM file of TPM manufacturer CAs for the registration
	// service's EK certificate check; EKCAAutoApprove approves TPM nodes
	// whose EK certificate chains to one without a token.
	EKCA            string
	EKCAAutoApprove bool
	// HeartbeatInterval and HeartbeatGrace are the fleet defaults (10 s and
	// 40 s); an admin can change them at run time.
	HeartbeatInterval, HeartbeatGrace time.Duration
	// HeartbeatMaxRate is the beats per second the heartbeat tier should
	// receive in total; above it the fleet's timings are stretched. 0
	// never stretches them.
	HeartbeatMaxRate float64
	// HeartbeatMaxConnectRate is the new heartbeat streams per second the
	// tier should see after a mass boot; while booted nodes would open
	// theirs faster, the fleet's timings are stretched so that they
	// spread out, and while a replica records boots faster, it defers
	// nodes' new streams. 0 never stretches for boots, nor defers.
	HeartbeatMaxConnectRate float64
	// CertLifetime of node certificates.
	CertLifetime time.Duration
	// TokenFailureBurst is how many failed bootstrap-token attempts one
	// source address may make in a row (registration.Config; 0: its
	// default). Attempts in flight count until they succeed.
	TokenFailureBurst int
	// Bundle store settings.
	BundleMaxSize         int
	BundleHistory         int
	BundleRequireApproval bool
	ShutdownTimeout       time.Duration
	// NoREST turns off the REST/JSON front door that role all serves on
	// its gRPC port.
	NoREST bool
	// HealthPeriod is how often each dependency is probed for the gRPC
	// health status (depwatch.DefaultPeriod when 0).
	HealthPeriod time.Duration
	Logger       *slog.Logger
	// Ready, if set, is called with the bound gRPC address once serving.
	Ready func(addr string)

	// GaugePeriod is how often the gauges read from the stores (nodes by
	// status and health, event log heads) are refreshed: a scrape reads
	// the last values and never queries a store (DefaultGaugePeriod when 0).
	GaugePeriod time.Duration

	// self is this process's own listener, as the services dial it.
	self string
	// metrics are berth's own, registered once per process.
	metrics *metrics.Metrics
}

// DefaultGaugePeriod is Config.GaugePeriod's default.
const DefaultGaugePeriod = 15 * time.Second

// servesREST reports whether the process is the front door: REST/JSON on
// its gRPC port.
func (c *Config) servesREST() bool { return (c.Role == RoleAll || c.Role == RoleAPI) && !c.NoREST }

// upstreams are the services the front door (role api) forwards to, by
// service name, with where it reaches them and the flag that says so.
func (c *Config) upstreams() []upstream {
	return []upstream{
		{pki.ServiceRegistration, c.RegistrationAddr, "--registration-addr"},
		{pki.ServiceCA, c.CAAddr, "--ca-addr"},
		{pki.ServiceBundles, c.BundlesAddr, "--bundles-addr"},
		{pki.ServiceHeartbeat, c.HeartbeatAddr, "--heartbeat-addr"},
	}
}

type upstream struct{ service, addr, flag string }

func (c *Config) check() error {
	if !slices.Contains(Roles, c.Role) {
		return fmt.Errorf("--role must be one of %v, not %q", Roles, c.Role)
	}
	if c.PKIDir == "" {
		return errors.New("--pki-dir is required (run berthd init --dir DIR first)")
	}
	if (c.Role == RoleRegistration || c.Role == RoleBundles || c.Role == RoleHeartbeat) && c.CAAddr == "" {
		return fmt.Errorf("--ca-addr is required for the %s role", c.Role)
	}
	if c.Role == RoleAPI {
		for _, u := range c.upstreams() {
			if u.addr == "" {
				return fmt.Errorf("%s is required for the api role (the front door forwards to the %s service)", u.flag, u.service)
			}
		}
	}
	if err := c.Limits.Check(); err != nil {
		return err
	}
	if c.CRLListen != "" && !c.runs(RoleCA) {
		return fmt.Errorf("--crl-listen serves the CA's revocation list; the %s role has none", c.Role)
	}
	if c.DB == "" && c.DataDir == "" && c.Role != RoleAPI {
		return errors.New("either --db (PostgreSQL URL) or --data-dir (SQLite) is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	return nil
}

func (c *Config) runs(role string) bool { return c.Role == RoleAll || c.Role == role }

// Run serves until ctx is cancelled, then stops gracefully.
func Run(ctx context.Context, c Config) error {
	if err := c.check(); err != nil {
		return err
	}
	creds, err := openCreds(c)
	if err != nil {
		return fmt.Errorf("load PKI from %s: %w", c.PKIDir, err)
	}
	tel, err := telemetry.New(ctx, "berth-"+c.Role)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer tel.Shutdown(context.WithoutCancel(ctx))
	if c.metrics, err = metrics.New(tel.Registry); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Listen, err)
	}
	defer lis.Close()
	self := loopbackAddr(lis.Addr())
	c.self = self
	if c.Role == RoleAll {
		c.CAAddr = cmp.Or(c.CAAddr, self)
		c.BundlesAddr = cmp.Or(c.BundlesAddr, self)
		c.HeartbeatAddr = cmp.Or(c.HeartbeatAddr, self)
	}
	c.AdvertiseRegistration = cmp.Or(c.AdvertiseRegistration, self)
	c.AdvertiseBundles = cmp.Or(c.AdvertiseBundles, c.BundlesAddr)
	if c.Role == RoleAll {
		c.AdvertiseHeartbeat = cmp.Or(c.AdvertiseHeartbeat, self)
	}

	// The front door sorts gRPC from HTTPS connections on the one port.
	grpcLis, httpsLis := net.Listener(lis), net.Listener(nil)
	if c.servesREST() {
		grpcLis, httpsLis = gateway.Split(lis, gateway.SplitConfig{HelloTimeout: c.Limits.HandshakeTimeout})
		defer httpsLis.Close()
	}
	shared := newHandoff(grpcLis)
	defer shared.close()
	built, err := buildWhenReady(ctx, c, creds, tel, shared)
	if err != nil || built == nil {
		return err // nil: shut down while waiting for the database
	}
	defer built.close()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := built.server.Serve(shared.view()); err != nil {
			return fmt.Errorf("serve gRPC: %w", err)
		}
		return nil
	})
	var side []*http.Server
	for _, h := range []struct {
		addr, path, what string
		handler          http.Handler
	}{
		{c.MetricsListen, "/metrics", "metrics", tel.Metrics},
		{c.CRLListen, "/", "the revocation list", built.crl},
		{c.PprofListen, "/debug/pprof/", "profiles", pprofHandler()},
	} {
		if h.addr == "" || h.handler == nil {
			continue
		}
		srv, err := serveHTTP(g, h.addr, h.path, h.what, h.handler)
		if err != nil {
			built.server.Stop()
			closeAll(side)
			return err
		}
		side = append(side, srv)
	}
	if built.rest != nil {
		g.Go(func() error {
			if err := built.rest.Serve(httpsLis); err != nil {
				return fmt.Errorf("serve REST: %w", err)
			}
			return nil
		})
	}
	built.background(gctx, built.watch.Run)
	c.Logger.Info("berthd serving", "role", c.Role, "addr", lis.Addr().String(), "metrics", c.MetricsListen, "crl", c.CRLListen)
	if c.Ready != nil {
		c.Ready(lis.Addr().String())
	}
	g.Go(func() error {
		<-gctx.Done()
		c.Logger.Info("berthd shutting down")
		built.server.Health.Shutdown()
		var rest sync.WaitGroup
		if built.rest != nil {
			// REST streams (events) end when the services end theirs.
			rest.Go(func() {
				sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
				defer cancel()
				built.rest.Shutdown(sctx)
			})
		}
		stopGracefully(built.server, c.ShutdownTimeout)
		rest.Wait()
		closeAll(side)
		return nil
	})
	return g.Wait()
}

// stopGracefully lets in-flight calls finish, but not forever.
func stopGracefully(s *rpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
	}
}

// pprofHandler serves net/http/pprof's pages on a mux of its own, not on
// http.DefaultServeMux, where importing the package registers them.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveHTTP serves h at path on a plain HTTP listener of its own, with
// timeouts that keep a slow or idle client from holding it.
func serveHTTP(g *errgroup.Group, addr, path, what string, h http.Handler) (*http.Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for %s on %s: %w", what, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	g.Go(func() error {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve %s: %w", what, err)
		}
		return nil
	})
	return srv, nil
}

func closeAll(srvs []*http.Server) {
	for _, s := range srvs {
		s.Close()
	}
}

// loopbackAddr turns a wildcard listen address into one this host can dial.
func loopbackAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
	}
	return tcp.String()
}
