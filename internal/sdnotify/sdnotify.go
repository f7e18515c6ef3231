// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) without cgo: one datagram per state change to the unix
// socket named by NOTIFY_SOCKET. A service of Type=notify says READY=1
// when it is up, and WATCHDOG=1 at least every WATCHDOG_USEC while it is
// healthy.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Messages a service sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// sendTimeout bounds one notification. A datagram socket whose reader
// has stopped reading blocks the sender once its queue is full (ten
// datagrams by default); the service manager hung, or a stale socket,
// must not hang the service with it (its shutdown waits for the watchdog).
const sendTimeout = 2 * time.Second

// Notifier sends notifications to the service manager. The zero value,
// and a nil *Notifier, send nothing: outside systemd every call is a
// no-op.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
	timeout  time.Duration // sendTimeout, or shorter in tests
}

// FromEnv returns the notifier that getenv describes: NOTIFY_SOCKET (a
// path, or "@name" for an abstract socket) and, when the watchdog is on
// for this process, WATCHDOG_USEC (and WATCHDOG_PID, which must be pid
// when set). Without NOTIFY_SOCKET it returns a notifier that sends
// nothing.
func FromEnv(getenv func(string) string, pid int) (*Notifier, error) {
	sock := getenv("NOTIFY_SOCKET")
	if sock == "" {
		return &Notifier{}, nil
	}
	if !strings.HasPrefix(sock, "/") && !strings.HasPrefix(sock, "@") {
		// vsock: addresses are for VMs talking to their host; not ours.
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: only unix socket paths and abstract names are supported", sock)
	}
	n := &Notifier{addr: &net.UnixAddr{Name: sock, Net: "unixgram"}, timeout: sendTimeout}
	if us := getenv("WATCHDOG_USEC"); us != "" {
		if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
			return n, nil // the watchdog is some other process's
		}
		v, err := strconv.ParseUint(us, 10, 63)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("WATCHDOG_USEC %q: want a positive number of microseconds", us)
		}
		n.watchdog = time.Duration(v) * time.Microsecond
	}
	return n, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// WatchdogInterval is the service manager's watchdog timeout, 0 when the
// watchdog is off. Ping at half of it.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Notify sends state, newline-separated assignments such as Ready or
// "STATUS=waiting for approval". It does nothing outside systemd. A
// notification the manager does not take within sendTimeout is dropped
// with an error.
func (n *Notifier) Notify(state string) error {
	if !n.Enabled() {
		return nil
	}
	if state == "" {
		return errors.New("sd_notify: empty state")
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(n.timeout)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
