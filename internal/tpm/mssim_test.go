package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
)

// TestMSSIMCancelMidCommand: a command cancelled after it was sent leaves
// its response in flight. The connection must refuse further commands
// rather than hand that response to the next one.
func TestMSSIMCancelMidCommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan []byte, 1)
	release := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		hdr := make([]byte, 9)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		cmd := make([]byte, binary.BigEndian.Uint32(hdr[5:]))
		if _, err := io.ReadFull(c, cmd); err != nil {
			return
		}
		received <- cmd
		<-release // a slow TPM: the answer comes after the caller gave up
		rsp := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}
		out := binary.BigEndian.AppendUint32(nil, uint32(len(rsp)))
		out = append(append(out, rsp...), 0, 0, 0, 0)
		c.Write(out)
	}()
	defer close(release)

	m, err := dialMSSIM(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	m.setContext(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := m.Send([]byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8})
		done <- err
	}()
	<-received // the command is with the TPM
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled command = %v, want context.Canceled", err)
	}
	m.setContext(context.Background())
	if _, err := m.Send([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x44}); !errors.Is(err, ErrDevice) {
		t.Fatalf("command after a broken one = %v, want ErrDevice", err)
	}
	if m.broke() == nil {
		t.Fatal("connection not marked broken")
	}
}
