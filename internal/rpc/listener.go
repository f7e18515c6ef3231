package rpc

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/peer"
)

// connLimiter enforces the connection limits of one server, across all
// the listeners it serves. It tracks every connection from accept to close
// and knows which are still unauthenticated.
type connLimiter struct {
	limits Limits
	// total and unauth are counting semaphores; nil means no limit.
	total, unauth chan struct{}
	metrics       *limitMetrics

	mu sync.Mutex
	// perSource counts the unauthenticated connections of each source.
	perSource map[netip.Addr]int
	// conns finds a connection by the address gRPC reports as its peer:
	// the very value its RemoteAddr returns.
	conns map[net.Addr]*trackedConn
	// unauthCount counts the unauthenticated connections, for metrics.
	unauthCount atomic.Int64
	// waiting counts Accepts waiting for room, which tests observe.
	waiting atomic.Int32
}

func newConnLimiter(l Limits, m *limitMetrics) *connLimiter {
	c := &connLimiter{
		limits:    l,
		metrics:   m,
		perSource: map[netip.Addr]int{},
		conns:     map[net.Addr]*trackedConn{},
	}
	if on(l.MaxConnections) {
		c.total = make(chan struct{}, l.MaxConnections)
	}
	if on(l.MaxUnauthenticated) {
		c.unauth = make(chan struct{}, l.MaxUnauthenticated)
	}
	return c
}

// listen wraps a listener so that it accepts within the limits.
func (c *connLimiter) listen(lis net.Listener) net.Listener {
	return &limitListener{Listener: lis, lim: c, done: make(chan struct{})}
}

// lookup returns the tracked connection whose RemoteAddr is addr.
func (c *connLimiter) lookup(addr net.Addr) *trackedConn {
	if addr == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conns[addr]
}

// unauthenticated returns how many connections are unauthenticated now.
func (c *connLimiter) unauthenticated() int64 { return c.unauthCount.Load() }

// admit registers a newly accepted connection, or refuses it when its
// source already holds its share of unauthenticated connections.
func (c *connLimiter) admit(raw net.Conn) (*trackedConn, bool) {
	tc := &trackedConn{Conn: raw, lim: c, addr: uniqueAddr(raw.RemoteAddr())}
	tc.src, tc.hasSrc = sourceOf(raw.RemoteAddr())
	c.mu.Lock()
	defer c.mu.Unlock()
	if tc.hasSrc && on(c.limits.MaxUnauthenticatedPerSource) && c.perSource[tc.src] >= c.limits.MaxUnauthenticatedPerSource {
		return nil, false
	}
	if tc.hasSrc {
		c.perSource[tc.src]++
	}
	c.conns[tc.addr] = tc
	c.unauthCount.Add(1)
	if age := c.limits.UnauthenticatedMaxAge; on(age) {
		tc.expiry.Store(time.AfterFunc(age, tc.expire))
	}
	return tc, true
}

// leaveSource is called once when a connection stops being
// unauthenticated, by authenticating or by closing.
func (c *connLimiter) leaveSource(tc *trackedConn) {
	c.unauthCount.Add(-1)
	release(c.unauth)
	if !tc.hasSrc {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.perSource[tc.src] - 1; n > 0 {
		c.perSource[tc.src] = n
	} else {
		delete(c.perSource, tc.src)
	}
}

func (c *connLimiter) forget(tc *trackedConn) {
	c.mu.Lock()
	delete(c.conns, tc.addr)
	c.mu.Unlock()
	release(c.total)
}

// sourceOf is the source a connection is counted against: its IPv4
// address, or the /64 of its IPv6 address (one host commonly holds a whole
// /64). Connections without an IP address (bufconn, unix sockets) have
// none and are counted only listener-wide.
func sourceOf(a net.Addr) (netip.Addr, bool) {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	case *net.UDPAddr:
		ip = a.AddrPort().Addr()
	case *connAddr:
		return sourceOf(a.Addr)
	default:
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, err := ip.Prefix(64)
		if err != nil {
			return netip.Addr{}, false
		}
		ip = p.Addr()
	}
	return ip, ip.IsValid()
}

// Source names the address an RPC's caller is counted against in
// per-source limits, such as the failed bootstrap tokens of the
// registration service: the caller's IPv4 address or IPv6 /64, or "" when
// the connection has no IP address.
func Source(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	if ip, ok := sourceOf(p.Addr); ok {
		return ip.String()
	}
	return ""
}

// uniqueAddr returns an address value that identifies one connection, so
// that gRPC's peer address leads back to it. Each accepted TCP connection
// holds its own *net.TCPAddr; other kinds (bufconn) may return equal
// values for every connection and are wrapped.
func uniqueAddr(a net.Addr) net.Addr {
	if tcp, ok := a.(*net.TCPAddr); ok && tcp != nil {
		return tcp
	}
	return &connAddr{Addr: a}
}

// connAddr is a non-TCP peer address made unique to its connection.
type connAddr struct{ net.Addr }

// acquire takes a slot of sem, waiting until one is free or done closes.
func acquire(sem chan struct{}, done <-chan struct{}) bool {
	if sem == nil {
		return true
	}
	select {
	case sem <- struct{}{}:
		return true
	case <-done:
		return false
	}
}

func release(sem chan struct{}) {
	if sem != nil {
		<-sem
	}
}

// limitListener accepts connections within the limits: it stops accepting
// while the listener holds MaxConnections connections or
// MaxUnauthenticated unauthenticated ones (new connections then wait in
// the kernel's backlog), and closes at once a connection from a source
// that holds MaxUnauthenticatedPerSource unauthenticated connections.
type limitListener struct {
	net.Listener
	lim       *connLimiter
	done      chan struct{}
	closeOnce sync.Once
}

// Accept waits for room, then returns the next admitted connection.
func (l *limitListener) Accept() (net.Conn, error) {
	l.lim.waiting.Add(1)
	ok := acquire(l.lim.total, l.done)
	if ok && !acquire(l.lim.unauth, l.done) {
		release(l.lim.total)
		ok = false
	}
	l.lim.waiting.Add(-1)
	if !ok {
		return nil, net.ErrClosed
	}
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			release(l.lim.unauth)
			release(l.lim.total)
			return nil, err
		}
		if tc, ok := l.lim.admit(raw); ok {
			setUserTimeout(raw, tcpUserTimeout)
			return tc, nil
		}
		l.lim.metrics.refused(reasonPerSource)
		raw.Close()
	}
}

// Close stops the listener and wakes an Accept waiting for room.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// tcpUserTimeout is gRPC's default keepalive timeout, which gRPC makes the
// TCP_USER_TIMEOUT of every TCP connection it serves directly.
const tcpUserTimeout = 20 * time.Second

// Connection states.
const (
	stateUnauthenticated int32 = iota
	stateAuthenticated
	stateClosed
)

// errTooMuchUnauthenticated ends a connection that sent more than
// MaxUnauthenticatedBytes before authenticating.
var errTooMuchUnauthenticated = errors.New("unauthenticated connection sent too much")

// trackedConn is an accepted connection under the limits.
type trackedConn struct {
	net.Conn
	lim    *connLimiter
	addr   net.Addr
	src    netip.Addr
	hasSrc bool

	// expiry closes the connection if it is still unauthenticated at
	// UnauthenticatedMaxAge; nil without that limit.
	expiry atomic.Pointer[time.Timer]

	state atomic.Int32
	// received counts bytes read while unauthenticated.
	received atomic.Int64
	// streams counts calls in flight while unauthenticated.
	streams atomic.Int32
	// refusals counts calls refused while unauthenticated.
	refusals atomic.Int32
}

// RemoteAddr returns the peer's address, the same value on every call.
func (c *trackedConn) RemoteAddr() net.Addr { return c.addr }

// Read counts what an unauthenticated peer sends and cuts it off past
// MaxUnauthenticatedBytes.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	max := c.lim.limits.MaxUnauthenticatedBytes
	if n > 0 && on(max) && c.state.Load() == stateUnauthenticated && c.received.Add(int64(n)) > max {
		c.lim.metrics.refused(reasonBytes)
		c.Close()
		return 0, errTooMuchUnauthenticated
	}
	return n, err
}

// authenticate marks the connection as a known node, service or admin:
// it stops counting against the unauthenticated limits.
func (c *trackedConn) authenticate() {
	if c.state.CompareAndSwap(stateUnauthenticated, stateAuthenticated) {
		c.stopExpiry()
		c.lim.leaveSource(c)
	}
}

// expire closes the connection if it has not authenticated in time.
func (c *trackedConn) expire() {
	if c.state.Load() == stateUnauthenticated {
		c.lim.metrics.refused(reasonAge)
		c.Close()
	}
}

func (c *trackedConn) stopExpiry() {
	if t := c.expiry.Load(); t != nil {
		t.Stop()
	}
}

func (c *trackedConn) authenticated() bool { return c.state.Load() == stateAuthenticated }

// Close closes the connection and gives its slots back, once.
func (c *trackedConn) Close() error {
	prev := c.state.Swap(stateClosed)
	if prev == stateClosed {
		return nil
	}
	c.stopExpiry()
	if prev == stateUnauthenticated {
		c.lim.leaveSource(c)
	}
	c.lim.forget(c)
	return c.Conn.Close()
}
