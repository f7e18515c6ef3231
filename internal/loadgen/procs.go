package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Proc is a server process whose memory a run reports.
type Proc struct {
	// Name labels the process in reports; default its PID.
	Name string
	PID  int
}

// ParseProcs parses --server-pids: comma-separated PIDs, each optionally
// named, as in "ca=1201,registration=1202" or "1201,1202".
func ParseProcs(s string) ([]Proc, error) {
	var out []Proc
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, pidText, named := strings.Cut(f, "=")
		if !named {
			pidText, name = name, ""
		}
		pid, err := strconv.Atoi(strings.TrimSpace(pidText))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("--server-pids: %q is not a PID or NAME=PID", f)
		}
		name = strings.TrimSpace(name)
		if name == "" {
			name = strconv.Itoa(pid)
		}
		out = append(out, Proc{Name: name, PID: pid})
	}
	return out, nil
}

// procStatusKB reads a "VmRSS:"-style field of /proc/PID/status in kB.
func procStatusKB(pid int, field string) (int64, error) {
	path := filepath.Join("/proc", strconv.Itoa(pid), "status")
	if pid == 0 {
		path = "/proc/self/status"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("%s has no %s", path, field)
}

// rssSampler follows the resident memory of the server processes during a
// timed phase: VmRSS sampled every period, so that the peak belongs to the
// phase and not to whatever the process did before.
type rssSampler struct {
	procs []Proc
	mu    sync.Mutex
	peak  map[string]int64 // kB
	stop  chan struct{}
	done  chan struct{}
	// first is each process's RSS (kB) when sampling started, before the
	// phase added to it; last at the final sample.
	first, last map[string]int64
	// cpuFrom and cpuTo bound the window whose CPU time is reported
	// (startRSS and finish, unless window marks them).
	cpuFrom, cpuTo map[string]time.Duration
	// selfFrom and selfTo are the load generator's own CPU time at the
	// same moments.
	selfFrom, selfTo time.Duration
}

// cpuNow reads each process's CPU time.
func (s *rssSampler) cpuNow() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, p := range s.procs {
		if t := cpuTime(p.PID); t > 0 {
			out[p.Name] = t
		}
	}
	return out
}

// windowStart and windowEnd bound the CPU time reported to a part of the
// phase (the heartbeat scenario's steady window, without its connects).
func (s *rssSampler) windowStart() { s.cpuFrom, s.selfFrom = s.cpuNow(), cpuTime(0) }
func (s *rssSampler) windowEnd()   { s.cpuTo, s.selfTo = s.cpuNow(), cpuTime(0) }

const rssPeriod = 200 * time.Millisecond

func startRSS(procs []Proc) *rssSampler {
	s := &rssSampler{procs: procs, peak: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{}),
		first: map[string]int64{}, last: map[string]int64{}, selfFrom: cpuTime(0)}
	if len(procs) == 0 {
		close(s.done)
		return s
	}
	s.cpuFrom = s.cpuNow()
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(rssPeriod)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				s.sample()
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	for _, p := range s.procs {
		kb, err := procStatusKB(p.PID, "VmRSS")
		if err != nil {
			continue // gone; its last sample stands
		}
		s.mu.Lock()
		s.peak[p.Name] = max(s.peak[p.Name], kb)
		if _, ok := s.first[p.Name]; !ok {
			s.first[p.Name] = kb
		}
		s.last[p.Name] = kb
		s.mu.Unlock()
	}
}

// finish stops sampling and fills the result's memory fields: the peak of
// each process during the phase, their sum, and VmHWM (the peak over the
// process's whole life) for reference.
func (s *rssSampler) finish(r *Result) {
	if len(s.procs) > 0 {
		if s.cpuTo == nil {
			s.cpuTo = s.cpuNow()
		}
		close(s.stop)
	}
	<-s.done
	if self, err := procStatusKB(0, "VmHWM"); err == nil {
		r.LoadgenPeakRSSMB = mb(self)
	}
	if s.selfTo == 0 {
		s.selfTo = cpuTime(0)
	}
	if s.selfFrom > 0 && s.selfTo >= s.selfFrom {
		r.LoadgenCPUMs = round(float64(s.selfTo-s.selfFrom)/float64(time.Millisecond), 1)
	}
	if len(s.procs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum int64
	r.ServerRSSMB = map[string]float64{}
	r.ServerHWMMB = map[string]float64{}
	for _, p := range s.procs {
		kb, ok := s.peak[p.Name]
		if !ok {
			continue
		}
		sum += kb
		r.ServerRSSMB[p.Name] = mb(kb)
		if hwm, err := procStatusKB(p.PID, "VmHWM"); err == nil {
			r.ServerHWMMB[p.Name] = mb(hwm)
		}
	}
	if len(r.ServerRSSMB) > 0 {
		v := mb(sum)
		r.ServerPeakRSSMB = &v
	}
	r.ServerCPUMs = map[string]float64{}
	var cpu time.Duration
	for _, p := range s.procs {
		from, ok1 := s.cpuFrom[p.Name]
		to, ok2 := s.cpuTo[p.Name]
		if ok1 && ok2 && to >= from {
			r.ServerCPUMs[p.Name] = round(float64(to-from)/float64(time.Millisecond), 1)
			cpu += to - from
		}
	}
	if len(r.ServerCPUMs) > 0 {
		v := round(float64(cpu)/float64(time.Millisecond), 1)
		r.ServerCPUMsTotal = &v
	}
}

// growthKB is how much the resident memory of the named processes (all,
// when none is named) grew from the first sample to the last.
func (s *rssSampler) growthKB(names ...string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum int64
	found := false
	for _, p := range s.procs {
		if len(names) > 0 && !slices.Contains(names, p.Name) {
			continue
		}
		a, ok1 := s.first[p.Name]
		b, ok2 := s.last[p.Name]
		if ok1 && ok2 {
			sum += b - a
			found = true
		}
	}
	return sum, found
}

func mb(kb int64) float64 { return round(float64(kb)/1024, 1) }
