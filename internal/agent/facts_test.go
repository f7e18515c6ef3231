package agent

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCollectFacts(t *testing.T) {
	dir := t.TempDir()
	uuidFile := filepath.Join(dir, "product_uuid")
	writeFile(t, uuidFile, "4C4C4544-0043-3310-8052-B4C04F4E4B32\n")
	serialFile := filepath.Join(dir, "product_serial")
	writeFile(t, serialFile, "CZ1234567\n")
	junkSerial := filepath.Join(dir, "junk_serial")
	writeFile(t, junkSerial, "To Be Filled By O.E.M.\n")
	ifaces := func() ([]net.Interface, error) {
		return []net.Interface{
			{Name: "lo", Flags: net.FlagLoopback | net.FlagUp},
			{Name: "eth1", HardwareAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}},
			{Name: "eth0", HardwareAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}},
			{Name: "wg0"},
		}, nil
	}
	tests := []struct {
		name     string
		o        FactOverrides
		wantUUID string
		wantHost string
		wantSer  string
		wantMACs []string
		wantErr  error
	}{
		{
			name:     "read from the machine",
			o:        FactOverrides{HardwareUUIDFile: uuidFile, SerialFile: serialFile, Hostname: "Node-7.", Interfaces: ifaces, SysNetDir: dir},
			wantUUID: "4c4c4544-0043-3310-8052-b4c04f4e4b32", wantHost: "node-7", wantSer: "CZ1234567",
			wantMACs: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"},
		},
		{
			name:     "overrides win",
			o:        FactOverrides{HardwareUUID: "12345678-0000-0000-0000-00000000abcd", Hostname: "h", Serial: "S", MACs: []string{"AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff", "02:00:00:00:00:01"}, HardwareUUIDFile: "/nonexistent", SerialFile: serialFile},
			wantUUID: "12345678-0000-0000-0000-00000000abcd", wantHost: "h", wantSer: "S",
			wantMACs: []string{"02:00:00:00:00:01", "aa:bb:cc:dd:ee:ff"},
		},
		{
			name:     "placeholder serial dropped",
			o:        FactOverrides{HardwareUUIDFile: uuidFile, SerialFile: junkSerial, Hostname: "h", Interfaces: ifaces, SysNetDir: dir},
			wantUUID: "4c4c4544-0043-3310-8052-b4c04f4e4b32", wantHost: "h", wantSer: "",
			wantMACs: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"},
		},
		{
			name:    "no hardware UUID",
			o:       FactOverrides{HardwareUUIDFile: filepath.Join(dir, "missing"), Hostname: "h"},
			wantErr: ErrConfig,
		},
		{
			name:    "placeholder hardware UUID",
			o:       FactOverrides{HardwareUUID: "00000000-0000-0000-0000-000000000000", Hostname: "h"},
			wantErr: ErrConfig,
		},
		{
			name:    "bad MAC override",
			o:       FactOverrides{HardwareUUID: "12345678-0000-0000-0000-00000000abcd", Hostname: "h", MACs: []string{"nope"}},
			wantErr: ErrConfig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := CollectFacts(tt.o)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.GetHardwareUuid() != tt.wantUUID || f.GetHostname() != tt.wantHost || f.GetSerial() != tt.wantSer || !slices.Equal(f.GetMacs(), tt.wantMACs) {
				t.Errorf("facts = %v, want uuid %s host %s serial %q macs %v", f, tt.wantUUID, tt.wantHost, tt.wantSer, tt.wantMACs)
			}
		})
	}
}

func TestHardwareMACsPrefersDevices(t *testing.T) {
	sys := t.TempDir()
	// eth0 is a PCI NIC; br0 and veth0 are software interfaces.
	if err := os.MkdirAll(filepath.Join(sys, "eth0", "device"), 0o755); err != nil {
		t.Fatal(err)
	}
	ifaces := []net.Interface{
		{Name: "lo", Flags: net.FlagLoopback, HardwareAddr: net.HardwareAddr{0, 0, 0, 0, 0, 0}},
		{Name: "eth0", HardwareAddr: net.HardwareAddr{0x3c, 0xfd, 0xfe, 0, 0, 1}},
		{Name: "br0", HardwareAddr: net.HardwareAddr{0x3c, 0xfd, 0xfe, 0, 0, 1}},
		{Name: "veth0", HardwareAddr: net.HardwareAddr{0xfe, 0x11, 0x22, 0x33, 0x44, 0x55}},
	}
	if got, want := HardwareMACs(ifaces, sys), []string{"3c:fd:fe:00:00:01"}; !slices.Equal(got, want) {
		t.Errorf("with sysfs: %v, want %v", got, want)
	}
	// In a container no interface has a device: all but loopback count.
	if got, want := HardwareMACs(ifaces, t.TempDir()), []string{"3c:fd:fe:00:00:01", "fe:11:22:33:44:55"}; !slices.Equal(got, want) {
		t.Errorf("without sysfs: %v, want %v", got, want)
	}
}
