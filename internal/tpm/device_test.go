package tpm_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/tpm"
)

func TestParseDevice(t *testing.T) {
	for _, c := range []struct {
		in   string
		want tpm.Device
	}{
		{"", tpm.Device{Path: tpm.DefaultDevice}},
		{"  ", tpm.Device{Path: tpm.DefaultDevice}},
		{"/dev/tpm0", tpm.Device{Path: "/dev/tpm0"}},
		{"mssim://127.0.0.1:2321", tpm.Device{Addr: "127.0.0.1:2321"}},
		{"mssim://[::1]:2321", tpm.Device{Addr: "[::1]:2321"}},
		{"mssim://tpm.example:65534", tpm.Device{Addr: "tpm.example:65534"}},
	} {
		got, err := tpm.ParseDevice(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDevice(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{
		"tpmrm0",                  // relative path
		"mssim://127.0.0.1",       // no port
		"mssim://:2321",           // no host
		"mssim://127.0.0.1:0",     // port 0
		"mssim://127.0.0.1:65535", // no room for the platform port
		"mssim://127.0.0.1:tpm",
		"tcp://127.0.0.1:2321",
	} {
		if _, err := tpm.ParseDevice(bad); !errors.Is(err, tpm.ErrDevice) {
			t.Errorf("ParseDevice(%q) = %v, want ErrDevice", bad, err)
		}
	}
}

func TestOpenFails(t *testing.T) {
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "mssim://" + ln.Addr().String()
	ln.Close()
	file := filepath.Join(t.TempDir(), "not-a-device")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  tpm.Config
		want error
	}{
		{"nothing listening", tpm.Config{Device: closed}, tpm.ErrDevice},
		{"no such device", tpm.Config{Device: filepath.Join(t.TempDir(), "tpmrm9")}, tpm.ErrDevice},
		{"a regular file", tpm.Config{Device: file}, tpm.ErrDevice},
		{"bad device string", tpm.Config{Device: "tpm0"}, tpm.ErrDevice},
		{"unknown EK type", tpm.Config{Device: closed, EK: "dsa"}, tpm.ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp, err := tpm.Open(testCtx(t), c.cfg)
			if !errors.Is(err, c.want) {
				if tp != nil {
					tp.Close()
				}
				t.Fatalf("Open = %v, want %v", err, c.want)
			}
		})
	}
}
