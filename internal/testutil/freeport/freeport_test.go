package freeport

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// TestAddrBelowEphemeralRange: the ports are free, consecutive, on
// loopback, and below the range the kernel gives outgoing connections;
// so is Addr's.
func TestAddrBelowEphemeralRange(t *testing.T) {
	high, err := rangeLow()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 3} {
		for range 10 {
			first, err := Find(n)
			if err != nil {
				t.Fatal(err)
			}
			if first < lowest || first+n > high {
				t.Fatalf("Find(%d) = %d, want %d ports in %d-%d", n, first, n, lowest, high-1)
			}
			for p := first; p < first+n; p++ {
				l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
				if err != nil {
					t.Fatalf("Find(%d) = %d: port %d not free: %v", n, first, p, err)
				}
				l.Close()
			}
		}
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

// TestEphemeralLow reads the kernel's range, and refuses what is not one or
// leaves no room below it.
func TestEphemeralLow(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    int
		wantErr string
	}{
		{"32768\t60999\n", 32768, ""},
		{"49152 65535", 49152, ""},
		{"", 0, "want two ports"},
		{"32768", 0, "want two ports"},
		{"1 2 3", 0, "want two ports"},
		{"low high", 0, "invalid syntax"},
		{"10500 60999", 0, "leaves no room below it"},
	} {
		got, err := ephemeralLow(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ephemeralLow(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ephemeralLow(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}
