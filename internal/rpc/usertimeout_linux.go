package rpc

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout gives an accepted TCP connection the TCP_USER_TIMEOUT
// that gRPC sets itself on the connections it sees as TCP, so that a peer
// that vanished is dropped once its unacknowledged data is that old. The
// limit listener's wrapper hides the *net.TCPConn from gRPC.
func setUserTimeout(c net.Conn, d time.Duration) {
	// A connection the front door sorted (internal/gateway) wraps it.
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = w.NetConn()
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
	})
}
