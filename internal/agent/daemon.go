package agent

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/berth-dev/berth/internal/sdnotify"
)

// Directory modes the agent creates --root and --cert-dir with: both are
// read by the host's services, and only the agent (root) writes them. The
// key inside --cert-dir is 0600 of its own.
const (
	rootDirMode fs.FileMode = 0o755
	certDirMode fs.FileMode = 0o755
)

// DefaultOnRenewTimeout bounds the --on-renew command.
const DefaultOnRenewTimeout = 2 * time.Minute

// Environment of the --on-renew command.
const EnvCertDir = "BERTH_CERT_DIR"

// ensureDir makes dir with exactly mode, parents included, when it is
// missing (see checkDir).
func ensureDir(flag, dir string, mode fs.FileMode) error { return checkDir(flag, dir, mode, true) }

// checkDir refuses an existing dir that is not a directory or that anybody
// may write to, since the agent writes there what others trust; an
// existing directory keeps its mode. With create, a missing dir is made,
// with exactly mode.
func checkDir(flag, dir string, mode fs.FileMode, create bool) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return configErrorf("%s %s is not a directory", flag, dir)
	case err == nil && fi.Mode().Perm()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0:
		return configErrorf("%s %s is writable by everyone (mode %04o); the agent refuses to write there", flag, dir, fi.Mode().Perm())
	case err == nil:
		return nil
	case !os.IsNotExist(err):
		return fmt.Errorf("%s: %w", flag, err)
	case !create:
		return nil
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("create %s %s: %w", flag, dir, err)
	}
	// The exact mode, whatever the umask.
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("create %s %s: %w", flag, dir, err)
	}
	return nil
}

// notify tells systemd something; outside systemd it does nothing. A
// failure is logged: the agent's work does not depend on it.
func (a *Agent) notify(state string) {
	if err := a.cfg.Notifier.Notify(state); err != nil {
		a.log.Warn("cannot notify systemd", logErr, err)
	}
}

// watchdog pings systemd's watchdog at half its interval while healthy
// says so, until ctx ends. When healthy stops saying so the pings stop and
// systemd restarts the agent (Restart=on-failure).
func (a *Agent) watchdog(ctx context.Context, healthy func() bool, log *slog.Logger) {
	iv := a.cfg.Notifier.WatchdogInterval()
	if iv <= 0 {
		return
	}
	warned := false
	for {
		if healthy() {
			a.notify(sdnotify.Watchdog)
			warned = false
		} else if !warned {
			log.Error("heartbeats are not making progress; no longer pinging the systemd watchdog")
			warned = true
		}
		if err := a.cfg.Clock.Sleep(ctx, iv/2); err != nil {
			return
		}
	}
}

// onRenew runs the --on-renew command after renewed credentials were
// written, so that the services reading them reload. A failure is logged
// and does not stop the agent: the new credentials are in place.
func (a *Agent) onRenew(ctx context.Context, creds *Credentials, log *slog.Logger) {
	if a.cfg.OnRenew == "" {
		return
	}
	r := runCommand(ctx, "on-renew", []string{"/bin/sh", "-c", a.cfg.OnRenew, "berth-on-renew"},
		[]string{EnvCertDir + "=" + a.cfg.CertDir, EnvNodeID + "=" + creds.NodeID}, a.cfg.OnRenewTimeout, log)
	if r.Err != nil {
		if ctx.Err() == nil {
			log.Error("the --on-renew command failed; the renewed credentials are in place", logErr, r.Err)
		}
		return
	}
	log.Info("the --on-renew command ran", "took", r.Took.Round(time.Millisecond))
}
