// Package gateway is berth's REST/JSON front door: the admin API over
// HTTPS through grpc-gateway, with the OpenAPI document at
// /v1/openapi.json. It authenticates each request and forwards it over
// gRPC, as the front door's own service identity naming the caller (see
// rpc.ForwardedCallerKey), to the services, whose interceptors apply the
// same authorisation matrix as to a gRPC caller. It shares its port with
// gRPC (Split).
package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/internal/lifecycle"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// OpenAPI is the generated OpenAPI document of the REST API (buf.gen.yaml
// writes it; make generate refreshes it).
//
//go:embed openapi.swagger.json
var OpenAPI []byte

// OpenAPIPath is where the document is served.
const OpenAPIPath = "/v1/openapi.json"

// Limits of the HTTPS server; gRPC has its own (rpc.Limits).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// maxBodyBytes admits the largest gRPC request (rpc.DefaultMaxRecvMsgSize)
	// with its bytes in base64, as JSON carries them.
	maxBodyBytes         = rpc.DefaultMaxRecvMsgSize*4/3 + 64<<10
	maxConcurrentStreams = 100
)

// Config is what the front door needs.
type Config struct {
	// The connections to the services whose admin API it serves, each
	// made with the front door's own (api) service certificate. One
	// connection may serve several when one process runs them.
	Registration, Bundles, Heartbeat *grpc.ClientConn
	// Cert is the certificate HTTPS clients see.
	Cert tls.Certificate
	// TrustDomain and Roots verify client certificates.
	TrustDomain string
	Roots       *x509.CertPool
	// Bearer checks the API tokens of requests that present one
	// ("Authorization: Bearer TOKEN"); nil refuses them.
	Bearer rpc.BearerAuth
	// UI, when set, serves the web console under UIPath; it signs its
	// own users in (internal/console), so no client certificate is asked
	// of a browser there.
	UI     http.Handler
	Logger *slog.Logger
}

// UIPath is where the front door serves the web console.
const UIPath = "/ui/"

// Gateway serves the REST API.
type Gateway struct {
	c       Config
	mux     *runtime.ServeMux
	handler http.Handler
	srv     *http.Server
}

// New builds the front door.
func New(c Config) (*Gateway, error) {
	if c.Registration == nil || c.Bundles == nil || c.Heartbeat == nil {
		return nil, errors.New("gateway: a connection to every service is required")
	}
	if c.Roots == nil || c.TrustDomain == "" || len(c.Cert.Certificate) == 0 {
		return nil, errors.New("gateway: certificate, trust domain and roots are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{c: c}
	g.mux = runtime.NewServeMux(
		// Field names as in the protos and in berthctl's JSON (snake_case);
		// every field present, so that clients need no proto3 defaults.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{},
		}),
		// No HTTP header becomes gRPC metadata: the caller is named by the
		// front door alone (WithMetadata below), never by a header a
		// client could send itself.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		// A 401 says how to authenticate (RFC 6750).
		runtime.WithErrorHandler(func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
			runtime.DefaultHTTPErrorHandler(ctx, mux, m, bearerChallenge{w}, r, err)
		}),
		runtime.WithMetadata(func(ctx context.Context, _ *http.Request) metadata.MD {
			id, _ := callerFrom(ctx)
			return metadata.Pairs(rpc.ForwardedCallerKey, rpc.ForwardedCaller(id))
		}),
		runtime.WithForwardResponseOption(startStream),
	)
	ctx := context.Background()
	for _, reg := range []error{
		berthv1.RegisterNodeAdminServiceHandlerClient(ctx, g.mux, berthv1.NewNodeAdminServiceClient(c.Registration)),
		berthv1.RegisterAPITokenServiceHandlerClient(ctx, g.mux, berthv1.NewAPITokenServiceClient(c.Registration)),
		berthv1.RegisterBundleAdminServiceHandlerClient(ctx, g.mux, berthv1.NewBundleAdminServiceClient(c.Bundles)),
		berthv1.RegisterHeartbeatAdminServiceHandlerClient(ctx, g.mux, berthv1.NewHeartbeatAdminServiceClient(c.Heartbeat)),
		berthv1.RegisterVersionServiceHandlerClient(ctx, g.mux, berthv1.NewVersionServiceClient(c.Registration)),
	} {
		if reg != nil {
			return nil, reg
		}
	}
	top := http.NewServeMux()
	top.HandleFunc("GET "+OpenAPIPath, serveOpenAPI)
	if c.UI != nil {
		top.Handle(UIPath, http.MaxBytesHandler(c.UI, maxBodyBytes))
		top.Handle("GET /ui", http.RedirectHandler(UIPath, http.StatusMovedPermanently))
	}
	top.Handle("/", g.authenticated(shortQuery(g.mux)))
	top.Handle("GET /v1/events", g.authenticated(g.events(shortQuery(g.mux))))
	g.handler = withPeer(top)
	g.srv = &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxConcurrentStreams},
		ErrorLog:          slog.NewLogLogger(c.Logger.Handler(), slog.LevelDebug),
	}
	return g, nil
}

// Handler is the front door's HTTP handler; it expects requests that
// came over TLS.
func (g *Gateway) Handler() http.Handler { return g.handler }

// TLSConfig is the HTTPS server's: TLS 1.3, HTTP/2 or HTTP/1.1, and a
// client certificate asked for but not required, so that a request
// without one gets a JSON answer (401) rather than a failed handshake.
func (g *Gateway) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{g.c.Cert},
		ClientAuth:   tls.RequestClientCert,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// Serve serves HTTPS on lis until Shutdown.
func (g *Gateway) Serve(lis net.Listener) error {
	err := g.srv.Serve(tls.NewListener(lis, g.TLSConfig()))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops serving, letting requests in flight finish until ctx ends.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.srv.Shutdown(ctx)
	if err != nil {
		g.srv.Close()
	}
	return err
}

// serveOpenAPI serves the document to anyone who reached the port: it
// describes the API and holds nothing secret, and tools fetch it before
// they have credentials.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(OpenAPI)
}

// writeError answers with err as a google.rpc.Status, as the gateway
// answers a service's error.
func (g *Gateway) writeError(w http.ResponseWriter, r *http.Request, err error) {
	_, m := runtime.MarshalerForRequest(g.mux, r)
	runtime.HTTPError(r.Context(), g.mux, m, w, r, err)
}

// Public messages of the front door's own refusals.
const (
	msgNoCredentials    = "a client certificate or an API token (Authorization: Bearer TOKEN) is required"
	msgUnverified       = "client certificate is not issued by this deployment's CA"
	msgBadAuthorization = `the Authorization header must be one "Bearer TOKEN"`
	msgNoBearer         = "this front door does not accept API tokens"
)

// authenticated lets through requests whose caller it can name, with the
// caller in the context; the services' authorisation decides the rest.
func (g *Gateway) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := g.authenticate(r)
		if err != nil {
			g.writeError(w, r, err)
			return
		}
		r = r.WithContext(withCaller(r.Context(), id))
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// authenticate names the caller: the principal of the request's API token
// if it presents one (whatever certificate the connection has: the token
// is what the client chose), else the client certificate's identity.
func (g *Gateway) authenticate(r *http.Request) (mtls.Identity, error) {
	if vals := r.Header.Values("Authorization"); len(vals) > 0 {
		tok, ok := rpc.BearerToken(vals[0])
		switch {
		case len(vals) != 1 || !ok:
			return mtls.Identity{}, status.Error(codes.Unauthenticated, msgBadAuthorization)
		case g.c.Bearer == nil:
			return mtls.Identity{}, status.Error(codes.Unauthenticated, msgNoBearer)
		}
		return g.c.Bearer(r.Context(), tok)
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return mtls.Identity{}, status.Error(codes.Unauthenticated, msgNoCredentials)
	}
	id, err := mtls.VerifyPeer(g.c.TrustDomain, g.c.Roots, r.TLS.PeerCertificates)
	if err != nil {
		return mtls.Identity{}, status.Error(codes.Unauthenticated, msgUnverified)
	}
	return id, nil
}

// startStream sends a stream's response headers as soon as the watch
// behind it is in place, before its first event: grpc-gateway would send
// them with the first event, and a client that bounds the wait for
// headers (Go's ResponseHeaderTimeout, many HTTP libraries' read timeout)
// would give up on a quiet log. grpc-gateway calls it with no message
// when a stream starts, after the service answered the call's headers:
// every watch sends lifecycle.StartHeader once it is in place. A watch
// refused at the start (a bad cursor) sends no headers, only its status,
// which stays the answer's HTTP status; an error after the start is the
// stream's last line, {"error": Status}.
func startStream(ctx context.Context, w http.ResponseWriter, m proto.Message) error {
	if m != nil {
		return nil
	}
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok || len(md.HeaderMD.Get(lifecycle.StartHeader)) == 0 {
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w).Flush()
}

// withPeer puts the HTTP client's address in every request's context as
// gRPC's peer, so that per-source limits (apitoken.Limited) count REST
// and web console clients as gRPC ones.
func withPeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if addr, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
			r = r.WithContext(peer.NewContext(r.Context(), &peer.Peer{Addr: addr}))
		}
		next.ServeHTTP(w, r)
	})
}

// bearerChallenge answers a 401 with the challenge of RFC 6750:
// grpc-gateway's own WWW-Authenticate carries the status message instead.
type bearerChallenge struct{ http.ResponseWriter }

func (w bearerChallenge) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="berth"`)
	}
	w.ResponseWriter.WriteHeader(code)
}

type callerKey struct{}

func withCaller(ctx context.Context, id mtls.Identity) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

func callerFrom(ctx context.Context) (mtls.Identity, bool) {
	id, ok := ctx.Value(callerKey{}).(mtls.Identity)
	return id, ok
}
