package chaos

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy spreads TCP connections over a role's replicas, as the load
// balancer or service name in front of replicas does in a deployment: each
// new connection goes to the next replica that accepts it. TLS passes
// through untouched, so clients still check whom they reached. A replica
// that dies takes its connections with it; clients reconnect and land on
// one that lives.
type proxy struct {
	lis      net.Listener
	backends []string
	next     atomic.Uint64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func newProxy(t *testing.T, backends []string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, backends: backends, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.handle(c) })
	}
}

func (p *proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *proxy) handle(c net.Conn) {
	defer c.Close()
	first := int(p.next.Add(1))
	var b net.Conn
	for i := range p.backends {
		var err error
		b, err = net.DialTimeout("tcp", p.backends[(first+i)%len(p.backends)], 2*time.Second)
		if err == nil {
			break
		}
	}
	if b == nil {
		return // every replica is down: the client sees the connection close and retries
	}
	defer b.Close()
	p.track(c, true)
	p.track(b, true)
	defer p.track(c, false)
	defer p.track(b, false)
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, b); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	// One side ended: a dead replica or a client gone. Cut the other.
	c.Close()
	b.Close()
	<-done
}

func (p *proxy) close() {
	p.lis.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
