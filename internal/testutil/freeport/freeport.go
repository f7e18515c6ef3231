// Package freeport picks loopback addresses for servers that tests start,
// and restart, on a fixed address.
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

// lowest is the lowest port Addr picks: above the ports well-known
// services use.
const lowest = 10000

// Addr returns 127.0.0.1:PORT with a port nobody listens on right now,
// below the kernel's ephemeral range (Port).
func Addr(t testing.TB) string {
	t.Helper()
	port, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// Port returns a loopback port nobody listens on right now, below the
// kernel's ephemeral range. A port from 127.0.0.1:0 is in that range, so
// while the server on it is down (a restart under test) the kernel may
// give it to any outgoing connection as its local port, and the restart
// fails with "address already in use". Below the range it never does.
func Port() (int, error) {
	high, err := ephemeralLow()
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	for range 200 {
		port := lowest + rand.IntN(high-lowest)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("freeport: no free port in %d-%d", lowest, high-1)
}

// ephemeralLow is the first port of the kernel's ephemeral range
// (Linux's default when it cannot be read).
func ephemeralLow() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768, nil
	}
	f := strings.Fields(string(b))
	n, err := 0, fmt.Errorf("ephemeral port range %q: want two ports", strings.TrimSpace(string(b)))
	if len(f) == 2 {
		n, err = strconv.Atoi(f[0])
	}
	if err == nil && n <= lowest+1000 {
		err = fmt.Errorf("ephemeral port range from %d leaves no room below it above %d", n, lowest)
	}
	return n, err
}
