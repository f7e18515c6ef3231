package sdnotify

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen is a service manager's end: a unixgram socket that receives the
// notifications.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	// Generous: the datagram was sent before receive is called.
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNotifyPathAndAbstract(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	abstract := "@berth-sdnotify-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, sock := range []string{path, abstract} {
		t.Run(sock[:1], func(t *testing.T) {
			c := listen(t, sock)
			n, err := FromEnv(envOf(map[string]string{"NOTIFY_SOCKET": sock}), 1)
			if err != nil {
				t.Fatal(err)
			}
			if !n.Enabled() {
				t.Fatal("not enabled with NOTIFY_SOCKET set")
			}
			for _, want := range []string{Ready, "STATUS=serving\n" + Watchdog} {
				if err := n.Notify(want); err != nil {
					t.Fatal(err)
				}
				if got := receive(t, c); got != want {
					t.Errorf("received %q, want %q", got, want)
				}
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name         string
		env          map[string]string
		wantErr      string
		wantEnabled  bool
		wantWatchdog time.Duration
	}{
		{name: "outside systemd", env: map[string]string{}},
		{name: "socket", env: map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify"}, wantEnabled: true},
		{name: "watchdog", env: map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"}, wantEnabled: true, wantWatchdog: 30 * time.Second},
		{name: "watchdog of this pid", env: map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "42"}, wantEnabled: true, wantWatchdog: time.Millisecond},
		{name: "watchdog of another pid", env: map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "7"}, wantEnabled: true},
		{name: "bad watchdog", env: map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "soon"}, wantErr: "WATCHDOG_USEC"},
		{name: "zero watchdog", env: map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "0"}, wantErr: "WATCHDOG_USEC"},
		{name: "vsock", env: map[string]string{"NOTIFY_SOCKET": "vsock:2:1234"}, wantErr: "NOTIFY_SOCKET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := FromEnv(envOf(tt.env), 42)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Enabled() != tt.wantEnabled || n.WatchdogInterval() != tt.wantWatchdog {
				t.Errorf("enabled %v watchdog %v, want %v %v", n.Enabled(), n.WatchdogInterval(), tt.wantEnabled, tt.wantWatchdog)
			}
		})
	}
}

// TestNotifyOutsideSystemd: nothing to send to is not an error.
func TestNotifyOutsideSystemd(t *testing.T) {
	var n *Notifier
	if err := n.Notify(Ready); err != nil {
		t.Fatal(err)
	}
	if err := (&Notifier{}).Notify(Ready); err != nil {
		t.Fatal(err)
	}
}

// TestNotifyNoListener: a socket that is gone is an error the caller can
// log.
func TestNotifyNoListener(t *testing.T) {
	n, err := FromEnv(envOf(map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "gone")}), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err == nil {
		t.Fatal("no error sending to a socket nobody listens on")
	}
}

// TestNotifyFullQueue: a manager that stops reading fills the socket's
// queue; a notification then fails after the timeout instead of blocking
// its caller for good.
func TestNotifyFullQueue(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	listen(t, sock) // never read
	n, err := FromEnv(envOf(map[string]string{"NOTIFY_SOCKET": sock}), 1)
	if err != nil {
		t.Fatal(err)
	}
	n.timeout = 50 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		// The queue holds a few datagrams (net.unix.max_dgram_qlen, 10 by
		// default), however large: sending on must end in an error.
		for {
			if err := n.Notify(Watchdog); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Notify to a full queue: %v, want a timeout", err)
		}
	case <-time.After(time.Minute): // a hang guard, far above the timeouts
		t.Fatal("Notify blocked on a reader that does not read")
	}
}
