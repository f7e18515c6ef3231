// Package agent is berth-agent: it finds the registration service, proves
// the node's identity key over a CA-pinned TLS session, registers or
// resumes the node, writes its credentials for local consumers, applies
// its encrypted configuration bundle under --root and reports heartbeats;
// when left running, it renews its certificate and keeps the heartbeats
// going.
//
// The package holds all of the agent's transport code; cmd/berth-agent only
// turns flags and environment into a Config.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/sdnotify"
)

// Defaults for Config.
const (
	DefaultCertDir        = "/run/berth"
	DefaultRoot           = "/"
	DefaultWait           = 5 * time.Minute
	DefaultCmdlineFile    = "/proc/cmdline"
	DefaultResolvConf     = "/etc/resolv.conf"
	DefaultAttemptTimeout = 15 * time.Second
	DefaultBootIDFile     = "/proc/sys/kernel/random/boot_id"
	DefaultUptimeFile     = "/proc/uptime"
)

// Offline policies (Config.Offline).
const (
	OfflineWait     = "wait"
	OfflineContinue = "continue"
)

// Output is the format of what the agent prints on stdout.
type Output string

// Output formats.
const (
	OutputText Output = "text"
	OutputJSON Output = "json"
)

// ParseOutput parses an --output value.
func ParseOutput(s string) (Output, error) {
	switch o := Output(strings.ToLower(strings.TrimSpace(s))); o {
	case OutputText, OutputJSON:
		return o, nil
	case "":
		return OutputText, nil
	}
	return "", fmt.Errorf("unknown output format %q (want text or json)", s)
}

// Resolver looks up DNS SRV records; *net.Resolver is one.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Heartbeater sends a long-running agent's heartbeats. Once the node holds
// its certificate and its bundle is applied, the agent starts Run and
// cancels its context when the agent stops. creds returns the node's
// current credentials, which change when the certificate is renewed.
//
// Run returns nil when ctx ends or when it gave up heartbeating without
// the node being at fault (another stream replaced its own); the agent
// then keeps renewing. An error ends the agent with that error: a revoked
// node (ErrDenied) must not keep running.
type Heartbeater interface {
	Run(ctx context.Context, creds func() *Credentials) error
}

// Config is everything the agent needs. Explicit values (from flags or the
// environment) win over the kernel command line, which wins over DNS.
type Config struct {
	// Server is the registration service's host:port.
	Server string
	// CAHash pins berth's root CA: "sha256:" and the hex SHA-256 of its
	// SubjectPublicKeyInfo.
	CAHash string
	// Token is the bootstrap token "id.secret"; needed only on first boot.
	Token string
	// Domain is searched for DNS SRV _berth._tcp.<Domain> when no server
	// is given. Defaults to berth.domain= or the resolver's search domain.
	Domain string

	// Keys is the node's identity and bundle keys. Required.
	Keys keys.Source
	// IdentitySource says how Keys are held (keys.Config.Assurance); it
	// is reported at registration and decides, with the token, whether
	// the node is auto-approved; the local API's status shows it.
	// Required.
	IdentitySource keys.Assurance

	// CertDir receives node.crt, node.key and ca.crt. Default DefaultCertDir.
	CertDir string
	// Root is the directory the bundle's files are applied under; no file
	// is ever written outside it. Default "/".
	Root string
	// Configure is a shell command run (with /bin/sh -c) when the node has
	// no bundle yet. It writes the node's files into the staging directory
	// given as $1, in BERTH_STAGING_DIR and as its working directory (with
	// BERTH_NODE_ID and BERTH_HOSTNAME set); the agent seals the regular
	// files it finds there, with their modes, to the node's bundle key,
	// uploads them as its first bundle and applies them.
	// Empty means the node boots without a bundle until the engine
	// supplies one.
	Configure string
	// Wait bounds each stage of the boot: waiting for an unreachable
	// registration server and for approval of a pending node, then for an
	// unreachable bundle store, the Configure command and, with Once, an
	// unreachable heartbeat service. Zero means a single attempt (and a
	// Configure command bounded by AttemptTimeout); cmd gives DefaultWait
	// unless told otherwise.
	Wait time.Duration
	// Offline is what a boot does while the registration server cannot be
	// reached: OfflineWait (default) retries with backoff until Wait and
	// says so in the log; OfflineContinue lets the node boot on: a running
	// agent tells systemd it is ready at once and keeps trying without a
	// deadline, a --once boot gives up after Wait with action "offline"
	// and exit status 0.
	Offline string
	// Once makes Run return after the credentials are written, the bundle
	// is applied and a heartbeat was acknowledged, instead of staying up to
	// renew the certificate and send heartbeats.
	Once bool
	// Output is the stdout format. Default OutputText.
	Output Output

	// CmdlineFile is read for berth.* keys. Default DefaultCmdlineFile; a
	// missing file counts as an empty command line.
	CmdlineFile string
	// ResolvConfFile gives the search domain for DNS SRV discovery.
	// Default DefaultResolvConf.
	ResolvConfFile string
	// Resolver looks up DNS SRV records. Default net.DefaultResolver.
	Resolver Resolver

	// Facts overrides what the agent would read from the machine.
	Facts FactOverrides

	// Stdout receives the result. Default io.Discard.
	Stdout io.Writer
	// Logger receives progress logs. Default discards them.
	Logger *slog.Logger
	// Clock tells the time and sleeps. Default the system clock.
	Clock clock.Clock
	// Backoff paces retries; its Rand also jitters the heartbeat interval.
	// Zero fields get DefaultBackoff's.
	Backoff Backoff
	// AttemptTimeout bounds one RPC, connection included. Default
	// DefaultAttemptTimeout.
	AttemptTimeout time.Duration

	// NoHeartbeat sends no heartbeats, for boot-only tools.
	NoHeartbeat bool
	// NoBootBeat leaves the boot out of Resume and Register, so that the
	// heartbeat stream, opened at once, brings the node's first beat: for
	// load generators whose nodes all beat at once by design, which the
	// heartbeat service must not take for a mass boot.
	NoBootBeat bool
	// BootID identifies this boot to the heartbeat service; a new one is a
	// reboot. Default: the content of BootIDFile.
	BootID string
	// BootIDFile is read for the boot ID when BootID is empty. Default
	// DefaultBootIDFile; if it cannot be read the agent makes up a boot ID
	// for the life of the process.
	BootIDFile string
	// UptimeFile gives the node's uptime (its first field, in seconds).
	// Default DefaultUptimeFile; without it the agent reports the time
	// since it started.
	UptimeFile string
	// HeartbeatStatus is the status the heartbeats report: StatusUp,
	// StatusDegraded or StatusMaintenance. Default StatusUp.
	HeartbeatStatus string
	// Notifier tells systemd the agent is ready (READY=1 once the
	// credentials are written and the bundle applied) and pings its
	// watchdog while heartbeats make progress. nil sends nothing.
	Notifier *sdnotify.Notifier
	// OnRenew is a shell command run (with /bin/sh -c) after a renewed
	// certificate was written to CertDir, with BERTH_CERT_DIR and
	// BERTH_NODE_ID set, e.g. "systemctl reload libvirtd". Empty runs
	// nothing.
	OnRenew string
	// OnRenewTimeout bounds OnRenew. Default DefaultOnRenewTimeout.
	OnRenewTimeout time.Duration

	// Socket is where a long-running agent serves its local API for the
	// host's daemons (report set/unset/event, status). Empty serves none.
	Socket string
	// SocketGroup is the group (name or ID) given the socket, whose mode
	// is 0660; empty keeps the agent's own.
	SocketGroup string
	// EventQueue bounds the node events waiting for the heartbeat
	// service; the oldest are dropped beyond it. Default DefaultEventQueue.
	EventQueue int
	// Kmsg is the kernel log read for hardware errors (DefaultKmsg, or a
	// file for tests); empty reads none.
	Kmsg string

	// Heartbeater replaces the built-in heartbeats of a long-running
	// agent, which beat to the Endpoints.Heartbeat the registration
	// service names. nil means the built-in ones.
	Heartbeater Heartbeater
}

// ErrConfig marks errors in the agent's configuration: missing or
// malformed server, CA hash, key source or machine facts.
var ErrConfig = errors.New("configuration error")

// configError is an ErrConfig with a message of its own.
type configError struct{ msg string }

func (e *configError) Error() string        { return e.msg }
func (e *configError) Is(target error) bool { return target == ErrConfig }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// ConfigError marks err as a configuration error (ErrConfig), for callers
// that check configuration before building a Config.
func ConfigError(err error) error {
	if err == nil {
		return nil
	}
	return &configError{msg: err.Error()}
}

func (c *Config) setDefaults() error {
	if c.Keys == nil {
		return configErrorf("agent: no key source")
	}
	if _, err := keys.ParseAssurance(string(c.IdentitySource)); err != nil {
		return configErrorf("agent: %v", err)
	}
	if c.Wait < 0 {
		return configErrorf("--wait must not be negative")
	}
	out, err := ParseOutput(string(c.Output))
	if err != nil {
		return ConfigError(err)
	}
	c.Output = out
	if c.CertDir == "" {
		c.CertDir = DefaultCertDir
	}
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.CmdlineFile == "" {
		c.CmdlineFile = DefaultCmdlineFile
	}
	if c.ResolvConfFile == "" {
		c.ResolvConfFile = DefaultResolvConf
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Clock = clock.Or(c.Clock)
	c.Backoff = c.Backoff.withDefaults()
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.BootID != "" && !ident.BootID(c.BootID) {
		return configErrorf("--boot-id %q: want 1 to 64 letters, digits, '.', '_', ':' or '-'", c.BootID)
	}
	if c.BootIDFile == "" {
		c.BootIDFile = DefaultBootIDFile
	}
	if c.UptimeFile == "" {
		c.UptimeFile = DefaultUptimeFile
	}
	switch c.Offline {
	case "":
		c.Offline = OfflineWait
	case OfflineWait, OfflineContinue:
	default:
		return configErrorf("--offline %q: want wait or continue", c.Offline)
	}
	if c.OnRenewTimeout <= 0 {
		c.OnRenewTimeout = DefaultOnRenewTimeout
	}
	if c.HeartbeatStatus == "" {
		c.HeartbeatStatus = StatusUp
	}
	if _, err := ParseHeartbeatStatus(c.HeartbeatStatus); err != nil {
		return ConfigError(err)
	}
	return nil
}

// Log attribute keys.
const (
	logServer         = "server"
	logNodeID         = "node_id"
	logKey            = "key_sha256"
	logIdentitySource = "identity_source"
	logErr            = "err"
	logDelay          = "delay"
	logAttempt        = "attempt"
	logSource         = "source"
	logSerial         = "cert_serial"
	logExpires        = "cert_not_after"
	logBootID         = "boot_id"
	logHBAddr         = "heartbeat"
	logIntv           = "interval"
)
