package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-dev/berth/internal/keys"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Where the machine facts come from on Linux.
const (
	DefaultHardwareUUIDFile = keys.DefaultHardwareUUIDFile
	DefaultSerialFile       = "/sys/class/dmi/id/product_serial"
	DefaultSysNetDir        = "/sys/class/net"
)

// FactOverrides replaces machine facts, for tests, containers and
// machines whose firmware reports nothing useful. Empty fields are read
// from the machine.
type FactOverrides struct {
	HardwareUUID string
	Hostname     string
	Serial       string
	MACs         []string

	// HardwareUUIDFile, SerialFile and SysNetDir move where facts are read.
	HardwareUUIDFile string
	SerialFile       string
	SysNetDir        string
	// Interfaces lists network interfaces. Default net.Interfaces.
	Interfaces func() ([]net.Interface, error)
}

// serialPlaceholders are what firmware says when nobody set a serial.
var serialPlaceholders = []string{
	"", "0", "none", "default string", "not specified", "not applicable",
	"to be filled by o.e.m.", "system serial number", "chassis serial number",
	"0123456789",
}

// CollectFacts reads the machine's facts, taking each override first. The
// hardware UUID is required; the serial is optional.
func CollectFacts(o FactOverrides) (*berthv1.MachineFacts, error) {
	f := &berthv1.MachineFacts{}
	var err error
	if o.HardwareUUID != "" {
		f.HardwareUuid, err = keys.NormalizeHardwareUUID(o.HardwareUUID)
	} else {
		f.HardwareUuid, err = keys.ReadHardwareUUID(orDefault(o.HardwareUUIDFile, DefaultHardwareUUIDFile))
	}
	if err != nil {
		return nil, ConfigError(err)
	}

	f.Hostname = o.Hostname
	if f.Hostname == "" {
		if f.Hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("read hostname: %w (pass --hostname)", err)
		}
	}
	f.Hostname = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(f.Hostname), "."))
	if f.Hostname == "" {
		return nil, configErrorf("hostname is empty; pass --hostname")
	}

	f.Serial = strings.TrimSpace(o.Serial)
	if f.Serial == "" {
		if b, err := os.ReadFile(orDefault(o.SerialFile, DefaultSerialFile)); err == nil {
			s := strings.TrimSpace(string(b))
			if !slices.Contains(serialPlaceholders, strings.ToLower(s)) {
				f.Serial = s
			}
		}
	}

	if len(o.MACs) > 0 {
		for _, m := range o.MACs {
			hw, err := net.ParseMAC(strings.TrimSpace(m))
			if err != nil {
				return nil, configErrorf("MAC address %q: %v", m, err)
			}
			f.Macs = append(f.Macs, hw.String())
		}
		slices.Sort(f.Macs)
		f.Macs = slices.Compact(f.Macs)
		return f, nil
	}
	list := o.Interfaces
	if list == nil {
		list = net.Interfaces
	}
	ifaces, err := list()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	f.Macs = HardwareMACs(ifaces, orDefault(o.SysNetDir, DefaultSysNetDir))
	return f, nil
}

// HardwareMACs returns the lower-case MAC addresses of ifaces, loopback
// and address-less interfaces left out. When sysNetDir shows which
// interfaces sit on a device (physical NICs have a "device" link there),
// only those count, so that bridges, veths and bonds, whose addresses
// change or repeat, do not; in a container, where none has one, all do.
func HardwareMACs(ifaces []net.Interface, sysNetDir string) []string {
	var all, physical []string
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) == 0 {
			continue
		}
		mac := strings.ToLower(ifc.HardwareAddr.String())
		all = append(all, mac)
		if _, err := os.Stat(filepath.Join(sysNetDir, ifc.Name, "device")); err == nil {
			physical = append(physical, mac)
		}
	}
	out := all
	if len(physical) > 0 {
		out = physical
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func orDefault(v, def string) string {
	if v != "" {
		return v
	}
	return def
}
