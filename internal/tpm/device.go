package tpm

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultDevice is the kernel's resource-managed TPM device.
const DefaultDevice = "/dev/tpmrm0"

// mssimScheme prefixes a software TPM's address: mssim://HOST:PORT.
const mssimScheme = "mssim://"

// conn is a TPM transport whose commands run under the context of the
// operation in progress.
type conn interface {
	transport.TPMCloser
	setContext(ctx context.Context)
	// broke returns why the connection became unusable, or nil.
	broke() error
}

// Device describes where a TPM is, parsed from a --tpm-device value.
type Device struct {
	// Path is a character device such as /dev/tpmrm0; empty for a simulator.
	Path string
	// Addr is a simulator's command port, HOST:PORT; its platform (control)
	// port is PORT+1. Empty for a device.
	Addr string
}

// ParseDevice parses a --tpm-device value: a device path (the empty string
// means DefaultDevice) or mssim://HOST:PORT.
func ParseDevice(s string) (Device, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Device{Path: DefaultDevice}, nil
	}
	if rest, ok := strings.CutPrefix(s, mssimScheme); ok {
		host, port, err := net.SplitHostPort(rest)
		if err != nil || host == "" {
			return Device{}, fmt.Errorf("%w: %q: want %sHOST:PORT", ErrDevice, s, mssimScheme)
		}
		// The platform port is PORT+1, so PORT stops one short of the top.
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65534 {
			return Device{}, fmt.Errorf("%w: %q: port must be a number from 1 to 65534", ErrDevice, s)
		}
		return Device{Addr: rest}, nil
	}
	if !strings.HasPrefix(s, "/") {
		return Device{}, fmt.Errorf("%w: %q: want a device path such as %s, or %sHOST:PORT", ErrDevice, s, DefaultDevice, mssimScheme)
	}
	return Device{Path: s}, nil
}

// String returns the device as ParseDevice accepts it.
func (d Device) String() string {
	if d.Addr != "" {
		return mssimScheme + d.Addr
	}
	return d.Path
}

// resourceManaged reports whether the kernel's resource manager sits in
// front of the TPM. Without one (a simulator, /dev/tpm0), this process is
// the TPM's only client: it may flush what an earlier, crashed run left
// loaded, and must itself keep within the TPM's few object slots.
func (d Device) resourceManaged() bool {
	return d.Addr == "" && strings.HasPrefix(d.Path, "/dev/tpmrm")
}

func (d Device) dial(ctx context.Context) (conn, error) {
	if d.Addr != "" {
		m, err := dialMSSIM(ctx, d.Addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrDevice, d, err)
		}
		return m, nil
	}
	t, err := linuxtpm.Open(d.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDevice, d, err)
	}
	return &devConn{TPMCloser: t, ctx: context.Background()}, nil
}

func (m *mssim) setContext(ctx context.Context) { m.ctx = ctx }
func (m *mssim) broke() error                   { return m.broken }

// devConn is a TPM character device. The kernel bounds every command with
// the TPM's own timeouts, so a context is checked before each command but
// cannot interrupt one in flight.
type devConn struct {
	transport.TPMCloser
	ctx context.Context
}

func (d *devConn) setContext(ctx context.Context) { d.ctx = ctx }
func (d *devConn) broke() error                   { return nil }

func (d *devConn) Send(cmd []byte) ([]byte, error) {
	if err := d.ctx.Err(); err != nil {
		return nil, err
	}
	return d.TPMCloser.Send(cmd)
}
