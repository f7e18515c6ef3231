package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/bundle"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Events of the running agent's bundle applies.
const (
	EventHookFailed    = "bundle.hook_failed"
	EventBundleRefused = "bundle.refused"
)

// Environment of a post-apply hook.
const EnvBundleVersion = "BERTH_BUNDLE_VERSION"

// checkStore asks liveBundles to look at the bundle store's current
// version, as after a reconnect, when an announcement may have been missed.
const checkStore = -1

// maxHookText bounds the command and error of a hook result.
const maxHookText = 1024

// appliedBundle is what the running agent applied last.
type appliedBundle struct {
	version int64
	at      time.Time
	files   map[string]bundle.File
	hooks   []*berthv1.HookResult
}

// announceBundle tells the running agent that its current bundle version
// is v (or, with checkStore, to ask the bundle store).
func (s *nodeState) announceBundle(v int64) {
	s.mu.Lock()
	if v > s.bundleWanted || v == checkStore && s.bundleWanted == 0 {
		s.bundleWanted = v
	}
	s.mu.Unlock()
	select {
	case s.bundleKick <- struct{}{}:
	default:
	}
}

// takeWanted returns and clears the announced version.
func (s *nodeState) takeWanted() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.bundleWanted
	s.bundleWanted = 0
	return v
}

// setApplied records an applied bundle, for status and for the beats.
func (s *nodeState) setApplied(b appliedBundle) {
	s.mu.Lock()
	s.applied = b
	s.bundleVersion, s.bundleAppliedAt = b.version, b.at
	s.appliedGen++
	s.mu.Unlock()
	s.wake()
}

// appliedReport is what the beats carry of the applied bundle.
func (s *nodeState) appliedReport() *berthv1.BundleApplied {
	if s.applied.at.IsZero() {
		return nil
	}
	return &berthv1.BundleApplied{Version: s.applied.version, AppliedAt: timestamppb.New(s.applied.at), Hooks: s.applied.hooks}
}

func fileMap(files []bundle.File) map[string]bundle.File {
	m := make(map[string]bundle.File, len(files))
	for _, f := range files {
		m[f.Path] = f
	}
	return m
}

// changedPaths are the paths whose file is new, different, or gone.
func changedPaths(prev, next map[string]bundle.File) map[string]bool {
	ch := map[string]bool{}
	for p, f := range next {
		o, ok := prev[p]
		if !ok || o.Mode != f.Mode || o.Owner != f.Owner || o.Group != f.Group || !bytes.Equal(o.Content, f.Content) {
			ch[p] = true
		}
	}
	for p := range prev {
		if _, ok := next[p]; !ok {
			ch[p] = true
		}
	}
	return ch
}

// keepBundlesLive applies the bundle versions announced to the running
// agent until ctx ends: each is fetched, verified and applied, files the
// new version no longer holds are removed, and the hooks covering changed
// files run. A version that cannot be fetched now is tried again with
// backoff; one that does not verify or apply is reported as an event and
// not tried again until another is announced.
func (a *Agent) keepBundlesLive(ctx context.Context, current func() *Credentials, log *slog.Logger) {
	s := a.state
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-s.bundleKick:
		}
		want := s.takeWanted()
		if want == 0 {
			continue
		}
		err := a.liveApply(ctx, current(), want, log)
		if err == nil || ctx.Err() != nil {
			n = 0
			continue
		}
		var refused *bundleRefusedError
		if errors.As(err, &refused) {
			log.Error("new bundle not applied", logErr, err)
			if _, _, _, eerr := s.addEvent(EventBundleRefused, berthv1.EventSeverity_EVENT_SEVERITY_CRITICAL, cleanMessage(err.Error())); eerr != nil {
				log.Error("cannot report the refused bundle", logErr, eerr)
			}
			n = 0
			continue
		}
		d := a.cfg.Backoff.Delay(n)
		n++
		log.Warn("new bundle not fetched; retrying", logErr, err, logDelay, d)
		if err := a.cfg.Clock.Sleep(ctx, d); err != nil {
			return
		}
		s.announceBundle(want)
	}
}

// liveApply fetches the node's current bundle and applies it when it is
// newer than the one applied (want is its version, or checkStore).
func (a *Agent) liveApply(ctx context.Context, creds *Credentials, want int64, log *slog.Logger) error {
	st := &bundleStore{addr: creds.Endpoints.GetBundles(), creds: creds, key: a.cfg.Keys.Identity(), timeout: a.cfg.AttemptTimeout}
	if st.addr == "" {
		return nil // no bundle store known: nothing to fetch from
	}
	defer st.close()
	if err := st.connect(); err != nil {
		return err
	}
	a.state.mu.Lock()
	prev := a.state.applied
	a.state.mu.Unlock()
	if want != checkStore && want <= prev.version {
		return nil
	}
	if want == checkStore {
		// Versions only: most reconnects find nothing new.
		actx, done := st.c.attempt(ctx, a.cfg.AttemptTimeout)
		vs, err := st.client.GetBundleVersions(actx, &berthv1.GetBundleVersionsRequest{})
		err = st.c.classify(ctx, actx, st.addr, err)
		done()
		if err != nil {
			return st.fail("get bundle versions", err)
		}
		if vs.GetCurrent() <= prev.version {
			return nil
		}
	}
	actx, done := st.c.attempt(ctx, a.cfg.AttemptTimeout)
	resp, err := st.client.GetBundle(actx, &berthv1.GetBundleRequest{})
	err = st.c.classify(ctx, actx, st.addr, err)
	done()
	switch {
	case status.Code(err) == codes.NotFound:
		return nil // reset meanwhile: nothing to apply
	case err != nil:
		return st.fail("get bundle", err)
	}
	sb := resp.GetBundle()
	v := sb.GetInfo().GetVersion()
	if v <= prev.version {
		return nil
	}
	opened, err := bundle.Open(a.cfg.Keys.BundleKey(), sb.GetSealed(), a.verifier(creds, v))
	if err != nil {
		return &bundleRefusedError{version: v, err: err}
	}
	next := fileMap(opened.Files)
	var gone []string
	for p := range prev.files {
		if _, ok := next[p]; !ok {
			gone = append(gone, p)
		}
	}
	slices.Sort(gone)
	ap := newApplier(a.cfg.Root, log)
	if err := ap.apply(opened.Files); err != nil {
		return &bundleRefusedError{version: v, err: err}
	}
	if err := ap.remove(gone); err != nil {
		return &bundleRefusedError{version: v, err: err}
	}
	log.Info("new bundle applied", "version", v, "files", len(opened.Files), "removed", len(gone),
		"signed_by", opened.SignedBy.String(), "sha256", bundle.Digest(sb.GetSealed()))
	changed := changedPaths(prev.files, next)
	hooks := a.runHooks(ctx, opened.Hooks, changed, v, creds, log)
	a.state.setApplied(appliedBundle{version: v, at: a.cfg.Clock.Now(), files: next, hooks: hooks})
	return nil
}

// runHooks runs, in the bundle's order, each hook that covers a changed
// path, and reports each failure as an event.
func (a *Agent) runHooks(ctx context.Context, hooks []bundle.Hook, changed map[string]bool, v int64, creds *Credentials, log *slog.Logger) []*berthv1.HookResult {
	var out []*berthv1.HookResult
	for _, h := range hooks {
		if !slices.ContainsFunc(h.Paths, func(p string) bool { return changed[p] }) {
			continue
		}
		cmdline := truncate(strings.Join(h.Command, " "), maxHookText)
		r := runCommand(ctx, "hook", h.Command,
			[]string{EnvBundleVersion + "=" + strconv.FormatInt(v, 10), EnvNodeID + "=" + creds.NodeID}, h.Timeout, log)
		res := &berthv1.HookResult{Command: cmdline, ExitCode: int32(r.ExitCode), TimedOut: r.TimedOut, Duration: durationpb.New(r.Took)}
		if r.Err != nil {
			res.Error = truncate(r.Err.Error(), maxHookText)
			msg := cleanMessage(fmt.Sprintf("bundle version %d: hook %q: %v", v, cmdline, r.Err))
			log.Error("post-apply hook failed", "command", cmdline, logErr, r.Err)
			if _, _, _, err := a.state.addEvent(EventHookFailed, berthv1.EventSeverity_EVENT_SEVERITY_WARNING, msg); err != nil {
				log.Error("cannot report the failed hook", logErr, err)
			}
		} else {
			log.Info("post-apply hook ran", "command", cmdline, "took", r.Took.Round(time.Millisecond))
		}
		out = append(out, res)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return cleanMessage(s[:n])
}

// remove deletes bundle files a new version no longer holds. Only regular
// files are removed, never through a symlink; one already gone is fine.
// Directories the agent made stay.
func (ap *applier) remove(paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	t, err := openTree(ap.root)
	if err != nil {
		return fmt.Errorf("open --root: %w", err)
	}
	defer t.close()
	for _, p := range paths {
		if reason := unsafePath(p); reason != "" {
			return &unsafeFileError{path: p, reason: reason}
		}
		if err := checkTree(t, p); err != nil {
			return err
		}
		if err := t.remove(p); err != nil {
			return fmt.Errorf("remove %s: %w", p, err)
		}
	}
	return nil
}
