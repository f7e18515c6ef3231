package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"sync"
	"time"
)

// The front door serves gRPC and REST on one TLS port. The two are told
// apart before the handshake, by the application protocols the client's
// ClientHello offers (ALPN): every gRPC client offers exactly "h2", while
// HTTPS clients (curl, browsers, Go's, Java's and Python's HTTP clients)
// offer "http/1.1", alone or after "h2", or offer nothing. A connection
// that offers "h2" without "http/1.1" is gRPC; every other one is HTTPS.
// gRPC's own listener, limits and handshake then see the connection as if
// nothing had read it.

// SplitConfig bounds what sorting connections may cost before either
// server has authenticated anything.
type SplitConfig struct {
	// HelloTimeout is how long a connection has to send its ClientHello
	// (10 s when 0).
	HelloTimeout time.Duration
	// MaxPending is how many connections may be sorted at once (256 when
	// 0); past it the listener stops accepting until one is done, and new
	// connections wait in the kernel's backlog.
	MaxPending int
	// HandOffTimeout is how long a sorted connection waits for its server
	// to accept it before it is closed (30 s when 0): the REST server
	// starts only once the services are built.
	HandOffTimeout time.Duration
}

// Split sorts the connections of lis into a gRPC listener and an HTTPS
// listener. Closing both, or lis, stops it.
func Split(lis net.Listener, c SplitConfig) (grpcLis, httpsLis net.Listener) {
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 256
	}
	if c.HandOffTimeout <= 0 {
		c.HandOffTimeout = 30 * time.Second
	}
	g := newSorted(lis.Addr())
	h := newSorted(lis.Addr())
	go sortConns(lis, c, g, h)
	return g, h
}

func sortConns(lis net.Listener, c SplitConfig, g, h *sorted) {
	sem := make(chan struct{}, c.MaxPending)
	for {
		conn, err := lis.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			g.fail(err)
			h.fail(err)
			return
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			protos, replay, err := readHello(conn, c.HelloTimeout)
			if err != nil {
				conn.Close()
				return
			}
			to := h
			if isGRPC(protos) {
				to = g
			}
			to.deliver(&replayConn{Conn: conn, replay: replay}, c.HandOffTimeout)
		}()
	}
}

// isGRPC tells a gRPC client by its ALPN offer.
func isGRPC(protos []string) bool {
	return slices.Contains(protos, "h2") && !slices.Contains(protos, "http/1.1")
}

// errHelloRead stops the handshake used to parse a ClientHello.
var errHelloRead = errors.New("client hello read")

// readHello reads the connection's TLS ClientHello and returns the ALPN
// protocols it offers and every byte read, to be replayed. crypto/tls
// parses the hello: its handshake stops in GetConfigForClient, and the
// alert it then sends is swallowed. A connection that is not TLS is
// handed to gRPC, whose handshake refuses it the usual way.
func readHello(conn net.Conn, timeout time.Duration) ([]string, []byte, error) {
	rec := &recorder{Conn: conn}
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, nil, err
	}
	var protos []string
	var seen bool
	err := tls.Server(rec, &tls.Config{GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		protos, seen = slices.Clone(hi.SupportedProtos), true
		return nil, errHelloRead
	}}).Handshake()
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, nil, err
	}
	var ne net.Error
	if !seen && errors.As(err, &ne) && ne.Timeout() {
		return nil, nil, err
	}
	if !seen {
		return []string{"h2"}, rec.buf.Bytes(), nil
	}
	return protos, rec.buf.Bytes(), nil
}

// recorder keeps what is read and discards what is written.
type recorder struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.buf.Write(p[:n])
	return n, err
}

func (r *recorder) Write(p []byte) (int, error) { return len(p), nil }

// replayConn returns the recorded bytes before reading on.
type replayConn struct {
	net.Conn
	replay []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the accepted connection, for socket options.
func (c *replayConn) NetConn() net.Conn { return c.Conn }

// sorted is one side of a split listener.
type sorted struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	err   error
}

func newSorted(addr net.Addr) *sorted {
	return &sorted{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (s *sorted) deliver(c net.Conn, timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case s.conns <- c:
	case <-s.done:
		c.Close()
	case <-t.C:
		c.Close()
	}
}

func (s *sorted) fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.Close()
}

func (s *sorted) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err != nil {
			return nil, s.err
		}
		return nil, net.ErrClosed
	}
}

func (s *sorted) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (s *sorted) Addr() net.Addr { return s.addr }
