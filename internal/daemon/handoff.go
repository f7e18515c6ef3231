package daemon

import (
	"net"
	"sync"
)

// handoff lets successive gRPC servers serve one listener: the server that
// answers health while the process waits for its database, then the one
// with the services. A gRPC server closes the listener it served when it
// stops; each server gets a view of its own, whose Close ends only that
// view, so the port stays bound, and connections that arrive between the
// two wait in the backlog instead of being refused.
type handoff struct {
	lis   net.Listener
	conns chan accepted
	done  chan struct{} // closed by close: the listener is gone for good
	once  sync.Once
}

type accepted struct {
	conn net.Conn
	err  error
}

func newHandoff(lis net.Listener) *handoff {
	h := &handoff{lis: lis, conns: make(chan accepted), done: make(chan struct{})}
	go h.accept()
	return h
}

// accept hands each accepted connection to whichever view asks next.
func (h *handoff) accept() {
	for {
		c, err := h.lis.Accept()
		select {
		case h.conns <- accepted{c, err}:
		case <-h.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil {
			select {
			case <-h.done:
				return
			default:
			}
		}
	}
}

// view is a listener for one server.
func (h *handoff) view() net.Listener {
	return &view{h: h, closed: make(chan struct{})}
}

// close closes the listener itself.
func (h *handoff) close() {
	h.once.Do(func() {
		close(h.done)
		h.lis.Close()
	})
}

type view struct {
	h      *handoff
	closed chan struct{}
	once   sync.Once
}

func (v *view) Accept() (net.Conn, error) {
	select {
	case a := <-v.h.conns:
		return a.conn, a.err
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.h.done:
		return nil, net.ErrClosed
	}
}

func (v *view) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}

func (v *view) Addr() net.Addr { return v.h.lis.Addr() }
