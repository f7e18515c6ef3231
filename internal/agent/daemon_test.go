package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"

	"github.com/berth-dev/berth/internal/sdnotify"
)

func TestRunCreatesRootAndCertDir(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	base := t.TempDir()
	h.cfg.Root = filepath.Join(base, "new", "root")
	h.cfg.CertDir = filepath.Join(base, "run", "berth")
	h.cfg.NoHeartbeat = true
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)}, nil
	}
	if err := h.run(t); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]os.FileMode{h.cfg.Root: rootDirMode, h.cfg.CertDir: certDirMode} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want a directory of mode %v", dir, fi.Mode(), want)
		}
	}
	if fi, err := os.Stat(filepath.Join(h.cfg.CertDir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node.key: %v %v, want mode 0600", fi, err)
	}
}

func TestRunRefusesUnsafeDirs(t *testing.T) {
	for _, flag := range []string{"--root", "--cert-dir"} {
		t.Run(flag, func(t *testing.T) {
			fake := &fakeRegistration{}
			h := newHarness(t, fake)
			bad := filepath.Join(t.TempDir(), "open")
			if err := os.Mkdir(bad, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(bad, 0o777); err != nil {
				t.Fatal(err)
			}
			if flag == "--root" {
				h.cfg.Root = bad
			} else {
				h.cfg.CertDir = bad
			}
			err := h.run(t)
			if ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), flag) || !strings.Contains(err.Error(), "writable by everyone") {
				t.Fatalf("err = %v (exit %d), want a configuration error naming %s", err, ExitCode(err), flag)
			}
			if calls := fake.Calls(); len(calls) != 0 {
				t.Errorf("called %v before checking its directories", calls)
			}
		})
	}
}

// TestRunRenewalRunsOnRenew: the running agent rewrites --cert-dir with
// each renewed certificate and then runs --on-renew, which sees the new
// files.
func TestRunRenewalRunsOnRenew(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	h.cfg.Once = false
	h.cfg.NoHeartbeat = true
	out := t.TempDir()
	h.cfg.OnRenew = `n=$(ls "` + out + `" | wc -l); cp "$BERTH_CERT_DIR/node.crt" "` + out + `/$n.crt"; echo "$BERTH_NODE_ID" > "` + out + `/$n.id"`
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), 3*time.Hour)}, nil
	}
	fake.renew = func(context.Context, *berthv1.RenewRequest) (*berthv1.RenewResponse, error) {
		return &berthv1.RenewResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), 3*time.Hour)}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serials []string
	h.clock.onSleep = func(n int, d time.Duration) error {
		serials = append(serials, readPEMCerts(t, filepath.Join(h.cfg.CertDir, CertFile))[0].SerialNumber.Text(16))
		if n == 3 {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	a, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// Two renewals: the hook ran after each, and saw the renewed file
	// (each run adds two files: 0.crt 0.id, then 2.crt 2.id).
	for i, want := range serials[1:] {
		got := readPEMCerts(t, filepath.Join(out, string(rune('0'+2*i))+".crt"))[0].SerialNumber.Text(16)
		if got != want {
			t.Errorf("hook run %d saw certificate %s, want the renewed %s", i, got, want)
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 4 {
		t.Errorf("hook outputs %d, want 4 (two runs)", len(entries))
	}
	if id, _ := os.ReadFile(filepath.Join(out, "2.id")); strings.TrimSpace(string(id)) != "n-0001" {
		t.Errorf("BERTH_NODE_ID = %q", id)
	}
}

// TestRunNotifiesSystemd: READY=1 once the credentials are written, then
// WATCHDOG=1 pings at half the watchdog interval.
func TestRunNotifiesSystemd(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	h.cfg.Once = false
	h.cfg.NoHeartbeat = true
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	env := map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "30000000"}
	if h.cfg.Notifier, err = sdnotify.FromEnv(func(k string) string { return env[k] }, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)}, nil
	}
	// One watchdog period passes, so that the agent pings twice, and no
	// more: the test stops reading after three notifications, and a
	// watchdog let to spin would fill the socket's queue.
	var periods atomic.Int32
	h.clock.block = func(ctx context.Context, d time.Duration) error {
		if d == 15*time.Second && periods.Add(1) == 1 {
			return nil // a watchdog period: ping again
		}
		<-ctx.Done() // the renewal, and the next period, wait for the end of the test
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	buf := make([]byte, 256)
	var got []string
	for len(got) < 3 {
		_ = l.SetReadDeadline(time.Now().Add(time.Minute))
		n, err := l.Read(buf)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, string(buf[:n]))
	}
	if got[0] != sdnotify.Ready {
		t.Errorf("first notification %q, want READY=1", got[0])
	}
	if _, err := os.Stat(filepath.Join(h.cfg.CertDir, CertFile)); err != nil {
		t.Errorf("READY before the credentials were written: %v", err)
	}
	for _, g := range got[1:] {
		if g != sdnotify.Watchdog {
			t.Errorf("then %q, want WATCHDOG=1", g)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestHeartbeaterHealthy(t *testing.T) {
	c := newFakeClock()
	h := &heartbeater{clock: c, timeout: 5 * time.Second}
	if !h.healthy() {
		t.Fatal("unhealthy before it started")
	}
	h.expect(10 * time.Second)
	c.Sleep(context.Background(), 20*time.Second)
	if !h.healthy() {
		t.Error("unhealthy within the interval and two timeouts")
	}
	c.Sleep(context.Background(), time.Second)
	if h.healthy() {
		t.Error("healthy past the interval and two timeouts without progress")
	}
	h.expect(time.Minute) // a backoff
	if !h.healthy() {
		t.Error("unhealthy while backing off as planned")
	}
}

// TestOfflineContinueOnce: with --offline continue a --once boot whose
// server stays unreachable for --wait ends with exit status 0 and action
// offline, so that the initramfs boots on; with wait it fails.
func TestOfflineContinueOnce(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	lis.Close()
	for _, offline := range []string{OfflineWait, OfflineContinue} {
		t.Run(offline, func(t *testing.T) {
			clock := newFakeClock()
			var stdout bytes.Buffer
			cfg := testConfig(t, addr, newPKI(t).caHash(), clock, &stdout)
			cfg.Wait, cfg.Offline = 20*time.Second, offline
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = a.Run(context.Background())
			if _, total := clock.Slept(); total != 20*time.Second {
				t.Errorf("waited %s, want --wait", total)
			}
			if offline == OfflineWait {
				if err == nil || ExitCode(err) != ExitFailure {
					t.Fatalf("err = %v, want a failure", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want the boot to go on", err)
			}
			var r Result
			if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.Action != ActionOffline || !strings.Contains(r.Reason, "unreachable") {
				t.Errorf("result %q (%v), want action offline with the reason", stdout.String(), err)
			}
			if _, err := os.Stat(filepath.Join(cfg.CertDir, CertFile)); !os.IsNotExist(err) {
				t.Errorf("credentials written without a server: %v", err)
			}
		})
	}
}

// TestOfflineContinueDaemon: a running agent with --offline continue tells
// systemd it is ready before it reached any server, and keeps trying past
// --wait.
func TestOfflineContinueDaemon(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	lis.Close()
	clock := newFakeClock()
	cfg := testConfig(t, addr, newPKI(t).caHash(), clock, &bytes.Buffer{})
	cfg.Once, cfg.Wait, cfg.Offline, cfg.Socket = false, 20*time.Second, OfflineContinue, ""
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if cfg.Notifier, err = sdnotify.FromEnv(func(k string) string { return map[string]string{"NOTIFY_SOCKET": sock}[k] }, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock.onSleep = func(n int, d time.Duration) error {
		if _, total := clock.Slept(); total > time.Hour {
			cancel() // far past --wait, and still trying
			return ctx.Err()
		}
		return nil
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	_ = l.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 512)
	n, err := l.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), sdnotify.Ready) {
		t.Fatalf("first notification %q, %v; want READY=1", buf[:n], err)
	}
	if err := <-done; err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want it stopped while still trying", err)
	}
}
