package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"empty", "", map[string]string{}},
		{"typical", "BOOT_IMAGE=/vmlinuz root=/dev/nfs ro quiet berth.server=reg.example:7443 berth.ca_hash=sha256:ab\n",
			map[string]string{"BOOT_IMAGE": "/vmlinuz", "root": "/dev/nfs", "ro": "", "quiet": "", "berth.server": "reg.example:7443", "berth.ca_hash": "sha256:ab"}},
		{"quoted value", `berth.token="id.sec ret" x=1`, map[string]string{"berth.token": "id.sec ret", "x": "1"}},
		{"quoted param", `"berth.domain=a b"`, map[string]string{"berth.domain": "a b"}},
		{"value with equals", "berth.token=abc.de==", map[string]string{"berth.token": "abc.de=="}},
		{"last wins", "berth.server=a:1 berth.server=b:2", map[string]string{"berth.server": "b:2"}},
		{"init args ignored", "berth.server=a:1 -- berth.server=evil:2 single", map[string]string{"berth.server": "a:1"}},
		{"tabs and runs of spaces", "a=1\t\t  b=2  ", map[string]string{"a": "1", "b": "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCmdline(tt.in); !maps.Equal(got, tt.want) {
				t.Errorf("ParseCmdline(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSearchDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nameserver 10.0.0.1\nsearch lab.example corp.example\n", "lab.example"},
		{"domain dc1.example.\n", "dc1.example"},
		{"search a.example\ndomain b.example\n", "b.example"},
		{"# search commented.example\nnameserver ::1\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := SearchDomain([]byte(tt.in)); got != tt.want {
			t.Errorf("SearchDomain(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fakeResolver answers one SRV name.
type fakeResolver struct {
	name  string
	addrs []*net.SRV
	err   error
	asked []string
}

func (r *fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	full := "_" + service + "._" + proto + "." + name
	r.asked = append(r.asked, full)
	if r.err != nil {
		return "", nil, r.err
	}
	if full != r.name {
		return "", nil, &net.DNSError{Err: "no such host", Name: full, IsNotFound: true}
	}
	return "", r.addrs, nil
}

func TestDiscover(t *testing.T) {
	const (
		hashA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		hashB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	)
	srv := &fakeResolver{name: "_berth._tcp.lab.example", addrs: []*net.SRV{
		{Target: "reg1.lab.example.", Port: 7443, Priority: 10},
		{Target: "reg2.lab.example.", Port: 7443, Priority: 20},
	}}
	tests := []struct {
		name        string
		cfg         Config
		cmdline     string
		resolvConf  string
		resolver    Resolver
		wantServer  string
		wantSource  string
		wantToken   string
		wantPin     string
		wantErr     string
		wantErrKind error
	}{
		{
			name:       "flags win over the command line",
			cfg:        Config{Server: "flag.example:1", CAHash: hashA, Token: "f.t"},
			cmdline:    "berth.server=cmd.example:2 berth.ca_hash=" + hashB + " berth.token=c.t",
			wantServer: "flag.example:1", wantSource: "flag", wantToken: "f.t", wantPin: hashA,
		},
		{
			name:       "command line fills what flags leave out",
			cfg:        Config{CAHash: hashA},
			cmdline:    "quiet berth.server=cmd.example:2 berth.ca_hash=" + hashB + " berth.token=c.t",
			wantServer: "cmd.example:2", wantSource: "cmdline", wantToken: "c.t", wantPin: hashA,
		},
		{
			name:       "command line beats DNS",
			cmdline:    "berth.server=cmd.example:2 berth.ca_hash=" + hashB + " berth.domain=lab.example",
			resolver:   srv,
			wantServer: "cmd.example:2", wantSource: "cmdline", wantPin: hashB,
		},
		{
			name:       "DNS SRV in berth.domain",
			cmdline:    "berth.ca_hash=" + hashB + " berth.domain=lab.example",
			resolver:   srv,
			wantServer: "reg1.lab.example:7443", wantSource: "dns", wantPin: hashB,
		},
		{
			name:       "DNS SRV in the resolver's search domain",
			cfg:        Config{CAHash: hashA},
			resolvConf: "nameserver 10.0.0.53\nsearch lab.example\n",
			resolver:   srv,
			wantServer: "reg1.lab.example:7443", wantSource: "dns", wantPin: hashA,
		},
		{
			name:       "--domain beats berth.domain",
			cfg:        Config{CAHash: hashA, Domain: "lab.example"},
			cmdline:    "berth.domain=other.example",
			resolver:   srv,
			wantServer: "reg1.lab.example:7443", wantSource: "dns", wantPin: hashA,
		},
		{
			name:    "no CA hash",
			cfg:     Config{Server: "flag.example:1"},
			wantErr: "--ca-hash, BERTH_CA_HASH or berth.ca_hash=", wantErrKind: ErrConfig,
		},
		{
			name:    "bad CA hash",
			cfg:     Config{Server: "flag.example:1", CAHash: "md5:abc"},
			wantErr: `CA hash "md5:abc"`, wantErrKind: ErrConfig,
		},
		{
			name:    "no server and no domain",
			cfg:     Config{CAHash: hashA},
			wantErr: "--server, BERTH_SERVER or berth.server=", wantErrKind: ErrConfig,
		},
		{
			name:     "no SRV record",
			cfg:      Config{CAHash: hashA, Domain: "elsewhere.example"},
			resolver: srv,
			wantErr:  "_berth._tcp.elsewhere.example not found", wantErrKind: ErrConfig,
		},
		{
			name:     "DNS down is worth a retry",
			cfg:      Config{CAHash: hashA, Domain: "lab.example"},
			resolver: &fakeResolver{err: &net.DNSError{Err: "i/o timeout", IsTimeout: true}},
			wantErr:  "look up DNS SRV _berth._tcp.lab.example",
		},
		{
			name:    "server without port",
			cfg:     Config{Server: "reg.example", CAHash: hashA},
			wantErr: "must be host:port", wantErrKind: ErrConfig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tt.cfg
			cfg.CmdlineFile = filepath.Join(dir, "cmdline")
			cfg.ResolvConfFile = filepath.Join(dir, "resolv.conf")
			if tt.cmdline != "" {
				writeFile(t, cfg.CmdlineFile, tt.cmdline)
			}
			if tt.resolvConf != "" {
				writeFile(t, cfg.ResolvConfFile, tt.resolvConf)
			}
			cfg.Resolver = tt.resolver
			if cfg.Resolver == nil {
				cfg.Resolver = &fakeResolver{err: errors.New("DNS must not be asked")}
			}
			got, err := Discover(context.Background(), &cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if tt.wantErrKind != nil && !errors.Is(err, tt.wantErrKind) {
					t.Errorf("err %v is not %v", err, tt.wantErrKind)
				}
				if tt.wantErrKind == nil && !isTransient(err) {
					t.Errorf("err %v is not transient", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Server != tt.wantServer || got.Source != tt.wantSource || got.Token != tt.wantToken {
				t.Errorf("Discover = %+v, want server %s from %s, token %q", got, tt.wantServer, tt.wantSource, tt.wantToken)
			}
			if pin := "sha256:" + hex.EncodeToString(got.Pin[:]); pin != tt.wantPin {
				t.Errorf("pin = %s, want %s", pin, tt.wantPin)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
