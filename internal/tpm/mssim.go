package tpm

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The Microsoft TPM simulator's TCP protocol, command port side (the
// reference implementation's TpmTcpProtocol.h). swtpm speaks it on its
// --server port. Each command is framed as
//
//	u32 TPM_SEND_COMMAND, u8 locality, u32 length, command
//
// and answered with
//
//	u32 length, response, u32 acknowledgement (0)
//
// go-tpm ships a transport for this (tpm2/transport/tcp), but it reads the
// response with a single Read, which a TCP stream may split; this one reads
// exactly the framed lengths and honours the caller's context.
const (
	mssimSendCommand = 8
	mssimSessionEnd  = 20
	// maxResponse bounds what a peer can make us allocate. The largest TPM
	// responses are a few kilobytes (TPM_PT_MAX_RESPONSE_SIZE is 4096 on
	// every TPM we know of).
	maxResponse = 64 << 10
)

// mssim is a connection to a simulator's command port.
type mssim struct {
	conn net.Conn
	r    *bufio.Reader
	ctx  context.Context // of the operation in progress; set under TPM.mu
	// broken is set when a command failed half way: the stream may hold
	// the rest of its response, which the next command would read as its
	// own. The connection is then useless; the TPM must be reopened.
	broken error
}

func dialMSSIM(ctx context.Context, addr string) (*mssim, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &mssim{conn: conn, r: bufio.NewReader(conn), ctx: context.Background()}, nil
}

// Send implements transport.TPM.
func (m *mssim) Send(cmd []byte) ([]byte, error) {
	if m.broken != nil {
		return nil, fmt.Errorf("%w: the connection broke in an earlier command (%v); reopen the TPM", ErrDevice, m.broken)
	}
	ctx := m.ctx
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline() // zero: no deadline
	if err := m.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// A cancelled context interrupts a command blocked on the socket.
	stop := context.AfterFunc(ctx, func() { _ = m.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	rsp, err := m.roundTrip(cmd)
	if err != nil {
		m.broken = err
		_ = m.conn.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%w (%v)", ctxErr, err)
		}
		return nil, err
	}
	return rsp, nil
}

func (m *mssim) roundTrip(cmd []byte) ([]byte, error) {
	req := make([]byte, 0, 9+len(cmd))
	req = binary.BigEndian.AppendUint32(req, mssimSendCommand)
	req = append(req, 0) // locality 0
	req = binary.BigEndian.AppendUint32(req, uint32(len(cmd)))
	req = append(req, cmd...)
	if _, err := m.conn.Write(req); err != nil {
		return nil, fmt.Errorf("send command: %w", err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(m.r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read response length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, errors.New("simulator returned an empty response (is it powered on?)")
	}
	if n > maxResponse {
		return nil, fmt.Errorf("simulator response of %d bytes is larger than %d", n, maxResponse)
	}
	rsp := make([]byte, n)
	if _, err := io.ReadFull(m.r, rsp); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if _, err := io.ReadFull(m.r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read acknowledgement: %w", err)
	}
	if ack := binary.BigEndian.Uint32(hdr[:]); ack != 0 {
		return nil, fmt.Errorf("simulator acknowledged the command with %d", ack)
	}
	return rsp, nil
}

// Close ends the session politely, so the simulator accepts its next
// client at once, then closes the connection.
func (m *mssim) Close() error {
	if m.broken != nil {
		return nil // closed when it broke
	}
	_ = m.conn.SetDeadline(time.Now().Add(time.Second))
	var end [4]byte
	binary.BigEndian.PutUint32(end[:], mssimSessionEnd)
	_, _ = m.conn.Write(end[:])
	return m.conn.Close()
}
