package gateway

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

func TestIsGRPC(t *testing.T) {
	tests := []struct {
		protos []string
		want   bool
	}{
		{[]string{"h2"}, true},
		{[]string{"h2", "http/1.1"}, false},
		{[]string{"http/1.1"}, false},
		{nil, false},
		{[]string{"acme-tls/1"}, false},
	}
	for _, tt := range tests {
		if got := isGRPC(tt.protos); got != tt.want {
			t.Errorf("isGRPC(%q) = %v, want %v", tt.protos, got, tt.want)
		}
	}
}

// TestSplitReplaysHello sends real ClientHellos through Split: each lands
// on the side its ALPN offer names, with every byte the sorting read still
// there for the server to read.
func TestSplitReplaysHello(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	g, h := Split(lis, SplitConfig{})
	defer g.Close()
	defer h.Close()
	for _, tt := range []struct {
		protos []string
		want   net.Listener
	}{{[]string{"h2"}, g}, {[]string{"h2", "http/1.1"}, h}, {nil, h}} {
		c, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// The client's handshake writes its hello and waits for an answer
		// that never comes; the test reads what the server side receives.
		go tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: tt.protos}).Handshake()
		got, err := tt.want.Accept()
		if err != nil {
			t.Fatal(err)
		}
		hdr := make([]byte, 5)
		got.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := io.ReadFull(got, hdr); err != nil {
			t.Fatalf("%q: reading the replayed hello: %v", tt.protos, err)
		}
		// A TLS handshake record: content type 22.
		if hdr[0] != 22 {
			t.Errorf("%q: the sorted connection starts with % x, not the ClientHello's record", tt.protos, hdr)
		}
		c.Close()
		got.Close()
	}
}
