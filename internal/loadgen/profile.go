package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
)

// maxCPUProfile bounds the CPU profile taken in the heartbeat window: the
// server's profile listener ends a response after 30 s.
const maxCPUProfile = 25 * time.Second

// profiler takes Go profiles of the heartbeat server (berthd serve
// --pprof-listen) during the heartbeat scenario's window: CPU during the
// window, heap and goroutines at its end while every node is connected.
type profiler struct {
	base string // e.g. http://127.0.0.1:6060/debug/pprof
	dir  string
	cpu  chan error
}

func newProfiler(base, dir string) *profiler {
	if base == "" || dir == "" {
		return nil
	}
	return &profiler{base: base, dir: dir}
}

// windowStart starts the CPU profile over the window, up to maxCPUProfile.
func (p *profiler) windowStart(ctx context.Context, window time.Duration) {
	if p == nil {
		return
	}
	secs := int(min(window, maxCPUProfile) / time.Second)
	if secs < 1 {
		return
	}
	p.cpu = make(chan error, 1)
	go func() { p.cpu <- p.fetch(ctx, fmt.Sprintf("profile?seconds=%d", secs), "heartbeat-cpu.pprof") }()
}

// windowEnd takes the heap (after a GC) and goroutine profiles and waits
// for the CPU profile; the notes say what failed.
func (p *profiler) windowEnd(ctx context.Context) (notes []string) {
	if p == nil {
		return nil
	}
	for _, f := range []struct{ q, file string }{
		{"heap?gc=1", "heartbeat-heap.pprof"},
		{"goroutine", "heartbeat-goroutine.pprof"},
		// The text form ends with runtime.MemStats: StackInuse is the
		// goroutines' stacks, which no profile shows.
		{"heap?debug=1", "heartbeat-heap.txt"},
	} {
		if err := p.fetch(ctx, f.q, f.file); err != nil {
			notes = append(notes, err.Error())
		}
	}
	if p.cpu != nil {
		if err := <-p.cpu; err != nil {
			notes = append(notes, err.Error())
		}
	}
	return notes
}

func (p *profiler) fetch(ctx context.Context, query, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/"+query, nil)
	if err != nil {
		return fmt.Errorf("profile %s: %w", query, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", query, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", query, resp.Status)
	}
	out, err := os.Create(filepath.Join(p.dir, file))
	if err != nil {
		return fmt.Errorf("profile %s: %w", query, err)
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return fmt.Errorf("profile %s: %w", query, err)
	}
	return out.Close()
}

// profileSelf starts this process's CPU profile over a timed phase of
// boots, into ProfileDir/SCENARIO-loadgen-cpu.pprof: what the agents
// spend, which no server profile shows and which shares the machine with
// the servers. It returns the function that stops it; a profile that
// fails is a note, not a failed run.
func (r *runner) profileSelf() (stop func()) {
	if r.cfg.ProfileDir == "" {
		return func() {}
	}
	path := filepath.Join(r.cfg.ProfileDir, r.cfg.Scenario+"-loadgen-cpu.pprof")
	note := func(err error) { r.res.Notes = append(r.res.Notes, fmt.Sprintf("no load generator profile: %v", err)) }
	if err := os.MkdirAll(r.cfg.ProfileDir, 0o755); err != nil {
		note(err)
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		note(err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		note(err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			note(err)
		}
	}
}
