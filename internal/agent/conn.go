package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
)

// ErrUntrusted wraps a server that failed CA pinning or certificate
// verification. It is never retried: waiting does not fix a wrong pin.
var ErrUntrusted = errors.New("registration server is not trusted")

// conn is a gRPC connection of the agent, to the registration service or
// to the bundle store, with the bookkeeping that lets the agent's retry
// loops tell "not there yet" from "not who we trust" and pace reconnects
// with their own backoff.
type conn struct {
	cc    *grpc.ClientConn
	watch *connWatch
	certs *certHolder // nil for the bundle store
	// untrust is the error a failed verification of the server is
	// reported as; nil means ErrUntrusted.
	untrust error
}

// errBundleStoreUntrusted wraps a bundle store whose certificate does not
// verify against the trust bundle. Like ErrUntrusted it is never retried.
var errBundleStoreUntrusted = errors.New("bundle store is not trusted")

// dial makes the client connection. Nothing is sent until the first RPC.
//
// The agent presents a client certificate of its identity key: the issued
// node certificate while it holds a valid one, else a self-signed one,
// which proves possession of the key just as well. The server's chain must
// end in the root pinned by hash.
func dial(t Target, key crypto.Signer, clk clock.Clock, attemptTimeout time.Duration) (*conn, error) {
	host, _, err := net.SplitHostPort(t.Server)
	if err != nil {
		return nil, configErrorf("registration server %q must be host:port", t.Server)
	}
	certs := &certHolder{key: key, now: clk.Now}
	self, err := certs.get(nil)
	if err != nil {
		return nil, err
	}
	w := &connWatch{}
	// The trust domain is not known before the first certificate: the
	// pinned root stands for the deployment, and the server must be its
	// registration service, not another service holding a key of it.
	pinned := mtls.PinnedClientConfig(*self, t.Pin, host)
	pinned.VerifyConnection = func(cs tls.ConnectionState) error {
		chain, err := mtls.VerifyPinned(cs, t.Pin)
		if err == nil {
			w.verified(chain)
		}
		return err
	}
	cfg := mtls.ExpectServer(pinned, "", mtls.ServiceRegistration)
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verify(cs); err != nil {
			w.untrusted(err)
			return err
		}
		w.trusted()
		return nil
	}
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return certs.get(nil) }

	cc, err := newClient(t.Server, cfg, w, attemptTimeout)
	if err != nil {
		return nil, configErrorf("registration server %q: %v", t.Server, err)
	}
	return &conn{cc: cc, watch: w, certs: certs}, nil
}

// dialBundles makes the connection to the bundle store at addr. The agent
// presents its issued node certificate, which is how the store knows the
// node, and verifies the store's certificate against the trust bundle
// and the endpoint's host name.
func dialBundles(addr string, creds *Credentials, key crypto.Signer, attemptTimeout time.Duration) (*conn, error) {
	return dialNode(addr, mtls.ServiceBundles, "bundle store", creds, key, attemptTimeout, errBundleStoreUntrusted)
}

// dialNode makes the connection to the berth service (what, in messages)
// at addr, with the node certificate of creds, verifying the service's
// certificate against the trust bundle and the endpoint's host name, and
// that it is service's in the node's trust domain. A certificate that does
// not verify, or is another service's, is reported as untrust.
func dialNode(addr, service, what string, creds *Credentials, key crypto.Signer, attemptTimeout time.Duration, untrust error) (*conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s endpoint %q is not host:port", what, addr)
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: creds.Leaf()}
	for _, c := range creds.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	roots := x509.NewCertPool()
	for _, r := range creds.Trust {
		roots.AddCert(r)
	}
	cfg := mtls.ExpectServer(mtls.ClientConfig(cert, roots), mtls.TrustDomainOf(creds.Leaf()), service)
	cfg.ServerName = host
	if service == mtls.ServiceHeartbeat {
		// The heartbeat service may defer a new stream while the fleet
		// boots; the heartbeater retries it with backoff.
		mtls.Deferrable(cfg)
	}
	w := &connWatch{}
	// Runs only after the chain verified: a server that failed once and
	// was fixed is trusted again.
	expect := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := expect(cs); err != nil {
			w.untrusted(err)
			return err
		}
		if len(cs.VerifiedChains) > 0 {
			w.verified(cs.VerifiedChains[0])
		}
		w.trusted()
		return nil
	}
	cc, err := newClient(addr, cfg, w, attemptTimeout)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, addr, err)
	}
	return &conn{cc: cc, watch: w, untrust: untrust}, nil
}

// newClient makes a lazy client connection to addr whose failed dials and
// handshakes are reported to w.
func newClient(addr string, cfg *tls.Config, w *connWatch, attemptTimeout time.Duration) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(&watchedCreds{TransportCredentials: credentials.NewTLS(cfg), w: w}),
		grpc.WithContextDialer(w.dial),
		// The agent's retry loops pace retries and reset gRPC's own
		// reconnect backoff before each one; these values only matter in
		// between.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: DefaultBackoff.Initial, Multiplier: 2, Jitter: 0.2, MaxDelay: DefaultBackoff.Max},
			MinConnectTimeout: attemptTimeout,
		}),
		// Every call waits for the connection; a failed dial or handshake
		// ends the call at once through connWatch instead.
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
		grpc.WithUserAgent("berth-agent"),
		// Fixed windows turn off gRPC's bandwidth estimator, which would
		// answer every heartbeat acknowledgement with a PING the server
		// must answer (see internal/rpc's windowSize; 1 MiB likewise).
		grpc.WithInitialWindowSize(1<<20),
		grpc.WithInitialConnWindowSize(1<<20),
	)
}

// Close closes the connection.
func (c *conn) Close() error { return c.cc.Close() }

// attempt returns the context of one RPC: bounded by timeout and ended
// early, with a connectError cause, if the connection attempt fails. It
// also wakes gRPC's reconnect loop, so a retry really connects now rather
// than at gRPC's own backoff.
func (c *conn) attempt(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	actx, cancel := context.WithCancelCause(ctx)
	tctx, tcancel := context.WithTimeout(actx, timeout)
	c.watch.begin(cancel)
	c.cc.ResetConnectBackoff()
	c.cc.Connect()
	return tctx, func() {
		c.watch.end()
		tcancel()
		cancel(nil)
	}
}

// connectError is why a connection attempt failed.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// connWatch learns of failed dials and handshakes, which gRPC otherwise
// hides behind a channel state, and of the chain the server presented.
type connWatch struct {
	mu      sync.Mutex
	cancel  context.CancelCauseFunc // of the RPC attempt in flight
	untrust error
	// chain is the last chain a handshake verified, leaf first, the
	// pinned (or trusted) root last.
	chain []*x509.Certificate
}

func (w *connWatch) begin(cancel context.CancelCauseFunc) {
	w.mu.Lock()
	w.cancel = cancel
	w.mu.Unlock()
}

func (w *connWatch) end() {
	w.mu.Lock()
	w.cancel = nil
	w.mu.Unlock()
}

func (w *connWatch) fail(err error) {
	w.mu.Lock()
	cancel := w.cancel
	w.mu.Unlock()
	if cancel != nil {
		cancel(&connectError{err: err})
	}
}

func (w *connWatch) untrusted(err error) {
	w.mu.Lock()
	w.untrust = err
	w.mu.Unlock()
}

// trusted records a handshake that passed every check.
func (w *connWatch) trusted() {
	w.mu.Lock()
	w.untrust = nil
	w.mu.Unlock()
}

// verified records the chain a handshake verified. It is a verified chain
// even when a later check refuses the server (another service's), so
// parseCredentials may anchor at its intermediate.
func (w *connWatch) verified(chain []*x509.Certificate) {
	w.mu.Lock()
	w.chain = chain
	w.mu.Unlock()
}

// trustErr is the verification failure of the last handshake, if any.
func (w *connWatch) trustErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.untrust
}

// serverChain is the last chain a handshake verified, root last.
func (w *connWatch) serverChain() []*x509.Certificate {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.chain
}

func (w *connWatch) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		w.fail(err)
	}
	return c, err
}

// watchedCreds reports failed handshakes to the watch.
type watchedCreds struct {
	credentials.TransportCredentials
	w *connWatch
}

func (c *watchedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		// A certificate that does not verify (no VerifyConnection involved)
		// is a trust failure, not a server that is not up yet.
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) {
			c.w.untrusted(err)
		}
		c.w.fail(err)
	}
	return conn, info, err
}

func (c *watchedCreds) Clone() credentials.TransportCredentials {
	return &watchedCreds{TransportCredentials: c.TransportCredentials.Clone(), w: c.w}
}

// certHolder picks the client certificate for each handshake.
type certHolder struct {
	mu     sync.Mutex
	key    crypto.Signer
	now    func() time.Time
	self   *tls.Certificate
	issued *tls.Certificate
}

// get returns the issued certificate while it is valid, else a self-signed
// one, made again when it nears its end.
func (h *certHolder) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if h.issued != nil && now.After(h.issued.Leaf.NotBefore) && now.Add(time.Minute).Before(h.issued.Leaf.NotAfter) {
		return h.issued, nil
	}
	if h.self == nil || now.Add(time.Hour).After(h.self.Leaf.NotAfter) {
		c, err := mtls.SelfSigned(h.key)
		if err != nil {
			return nil, err
		}
		h.self = &c
	}
	return h.self, nil
}

// setIssued makes later handshakes present the node certificate.
func (h *certHolder) setIssued(c *Credentials) {
	tc := &tls.Certificate{PrivateKey: h.key, Leaf: c.Leaf()}
	for _, cert := range c.Chain {
		tc.Certificate = append(tc.Certificate, cert.Raw)
	}
	h.mu.Lock()
	h.issued = tc
	h.mu.Unlock()
}

// classify turns the outcome of an RPC attempt into what the boot loop
// needs to know. It returns err unchanged, a *transientError for a server
// that is not reachable yet, or an ErrUntrusted error.
func (c *conn) classify(ctx, actx context.Context, server string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if terr := c.watch.trustErr(); terr != nil {
		untrust := c.untrust
		if untrust == nil {
			untrust = ErrUntrusted
		}
		return fmt.Errorf("%w: %s: %w", untrust, server, terr)
	}
	var ce *connectError
	if errors.As(context.Cause(actx), &ce) {
		return &transientError{fmt.Errorf("connect to %s: %w", server, ce.err)}
	}
	return err
}
