// Package freeport picks loopback ports for servers that tests start,
// and restart, on a fixed address: below the kernel's ephemeral range. A
// port from 127.0.0.1:0 is in that range, so while the server on it is
// down (a restart under test) the kernel may give it to any outgoing
// connection as its local port, and the restart fails with "address
// already in use". Below the range it never does, and a machine busy with
// thousands of loopback connections (a load test) has those ports free.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// lowest is the lowest port picked: above the ports well-known services
// use.
const lowest = 10000

// rangeFile holds the kernel's ephemeral range, "low high".
const rangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// Addr returns 127.0.0.1:PORT with a port nobody listens on right now
// (Port).
func Addr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(Port(t))
}

// Port returns a loopback port nobody listens on right now, below the
// kernel's ephemeral range.
func Port(t testing.TB) int {
	t.Helper()
	port, err := Find(1)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Find returns the first of n consecutive loopback ports nobody listens
// on right now, below the kernel's ephemeral range (swtpm takes two), for
// helpers that have no testing.TB.
func Find(n int) (int, error) {
	high, err := rangeLow()
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	for range 500 {
		port := lowest + rand.IntN(high-lowest-n+1)
		if allFree(port, n) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("freeport: no %d consecutive free ports in %d-%d", n, lowest, high-1)
}

// allFree reports whether ports port to port+n-1 can be listened on now.
func allFree(port, n int) bool {
	for p := port; p < port+n; p++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// rangeLow is the first port of this machine's ephemeral range (Linux's
// default when rangeFile cannot be read).
func rangeLow() (int, error) {
	b, err := os.ReadFile(rangeFile)
	if err != nil {
		b = []byte("32768 60999")
	}
	return ephemeralLow(string(b))
}

// ephemeralLow is the first port of the ephemeral range rangeFile says.
func ephemeralLow(s string) (int, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, fmt.Errorf("ephemeral port range %q: want two ports", strings.TrimSpace(s))
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, fmt.Errorf("ephemeral port range %q: %w", strings.TrimSpace(s), err)
	}
	if n <= lowest+1000 {
		return 0, fmt.Errorf("ephemeral port range from %d leaves no room below it above %d", n, lowest)
	}
	return n, nil
}
