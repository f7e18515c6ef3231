// Package h2raw is a raw HTTP/2 client over TLS, for tests and benchmarks
// that must misbehave as no gRPC client does: open calls and never send
// their message, send oversized headers, ping too often, or send nothing
// at all.
//
//	c, _ := h2raw.Dial(ctx, nil, addr, tlsConfig)
//	id, _ := c.OpenStream("/berth.v1.RegistrationService/Resume")
//	f, _ := c.ReadFrame() // the server's SETTINGS, then its answers
package h2raw

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// maxFrame is the largest frame payload every HTTP/2 peer accepts.
const maxFrame = 16 << 10

// Conn is a client HTTP/2 connection. Writes may come from several
// goroutines; frames are read by one.
type Conn struct {
	TLS       *tls.Conn
	fr        *http2.Framer
	authority string

	mu   sync.Mutex // guards the framer's writes, enc, hbuf and next
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32
}

// Dial connects to addr with d (nil for a plain dialer), completes the TLS
// handshake offering h2, and sends the client preface and SETTINGS.
func Dial(ctx context.Context, d *net.Dialer, addr string, cfg *tls.Config) (*Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	raw, err := (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := raw.(*tls.Conn)
	c := &Conn{TLS: tc, fr: http2.NewFramer(tc, tc), authority: addr, next: 1}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := tc.Write([]byte(http2.ClientPreface)); err != nil {
		tc.Close()
		return nil, err
	}
	if err := c.fr.WriteSettings(); err != nil {
		tc.Close()
		return nil, err
	}
	return c, nil
}

// OpenStream starts a gRPC call of method (e.g. "/pkg.Service/Method")
// and sends its headers only: the call waits for a message that never
// comes. extra headers are added after gRPC's own.
func (c *Conn) OpenStream(method string, extra ...hpack.HeaderField) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next += 2
	c.hbuf.Reset()
	fields := append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "https"},
		{Name: ":path", Value: method},
		{Name: ":authority", Value: c.authority},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
	}, extra...)
	for _, f := range fields {
		if err := c.enc.WriteField(f); err != nil {
			return 0, err
		}
	}
	block := c.hbuf.Bytes()
	first := block[:min(len(block), maxFrame)]
	rest := block[len(first):]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(rest) == 0}); err != nil {
		return 0, err
	}
	for len(rest) > 0 {
		chunk := rest[:min(len(rest), maxFrame)]
		rest = rest[len(chunk):]
		if err := c.fr.WriteContinuation(id, len(rest) == 0, chunk); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// WriteMessage sends one gRPC message (length-prefixed, uncompressed) on
// stream id, ending the client's side of the call if end is set.
func (c *Conn) WriteMessage(id uint32, msg []byte, end bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	frame := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	return c.fr.WriteData(id, end, frame)
}

// Ping sends a PING.
func (c *Conn) Ping() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fr.WritePing(false, [8]byte{'b', 'e', 'r', 't', 'h'})
}

// ReadFrame reads the next frame; it is valid until the next ReadFrame.
// It acknowledges the server's SETTINGS on the way, as a client must.
func (c *Conn) ReadFrame() (http2.Frame, error) {
	f, err := c.fr.ReadFrame()
	if err != nil {
		return nil, err
	}
	if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
		c.mu.Lock()
		err = c.fr.WriteSettingsAck()
		c.mu.Unlock()
	}
	return f, err
}

// Close closes the connection.
func (c *Conn) Close() error { return c.TLS.Close() }

// Status returns the grpc-status and grpc-message of a HEADERS frame that
// ends a call (a trailers-only answer or trailers), or ok false.
func Status(f http2.Frame) (code, msg string, ok bool) {
	h, isHeaders := f.(*http2.MetaHeadersFrame)
	if !isHeaders {
		return "", "", false
	}
	for _, hf := range h.Fields {
		switch hf.Name {
		case "grpc-status":
			code, ok = hf.Value, true
		case "grpc-message":
			msg = hf.Value
		}
	}
	return code, msg, ok
}

// Describe renders a frame for test failures.
func Describe(f http2.Frame) string {
	switch f := f.(type) {
	case *http2.GoAwayFrame:
		return fmt.Sprintf("GOAWAY %v %q", f.ErrCode, f.DebugData())
	case *http2.RSTStreamFrame:
		return fmt.Sprintf("RST_STREAM %d %v", f.StreamID, f.ErrCode)
	case *http2.MetaHeadersFrame:
		var b strings.Builder
		for _, hf := range f.Fields {
			fmt.Fprintf(&b, " %s=%s", hf.Name, hf.Value)
		}
		return fmt.Sprintf("HEADERS %d%s", f.StreamID, b.String())
	}
	return fmt.Sprintf("%v", f.Header())
}
