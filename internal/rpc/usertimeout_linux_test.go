package rpc

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

// TestUserTimeout: accepted connections keep the TCP_USER_TIMEOUT gRPC
// would have set on them.
func TestUserTimeout(t *testing.T) {
	e := newLimitsEnv(t, Limits{})
	wantCode(t, "admin", call(e.dial(t, e.admin, "127.0.0.1"), methodEcho, 1), codes.OK)
	e.srv.limits.mu.Lock()
	var tcp *net.TCPConn
	for _, tc := range e.srv.limits.conns {
		tcp, _ = tc.Conn.(*net.TCPConn)
	}
	e.srv.limits.mu.Unlock()
	if tcp == nil {
		t.Fatal("no TCP connection tracked")
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if time.Duration(got)*time.Millisecond != tcpUserTimeout {
		t.Errorf("TCP_USER_TIMEOUT = %d ms, want %v", got, tcpUserTimeout)
	}
}
