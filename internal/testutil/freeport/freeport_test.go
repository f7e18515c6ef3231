package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestAddrBelowEphemeralRange: the address is free, on loopback, and its
// port below the range the kernel gives outgoing connections.
func TestAddrBelowEphemeralRange(t *testing.T) {
	high, err := ephemeralLow()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		addr := Addr(t)
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		if host != "127.0.0.1" || p < lowest || p >= high {
			t.Fatalf("Addr = %s, want 127.0.0.1 and a port in %d-%d", addr, lowest, high-1)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("Addr = %s, not free: %v", addr, err)
		}
		l.Close()
	}
}
