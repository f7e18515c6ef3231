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

// CheckDBPID checks --db-pid: 0 for none, or a running process. A PID
// that is gone would report no database CPU at all, where the operator
// asked for it.
func CheckDBPID(pid int) error {
	if pid < 0 {
		return fmt.Errorf("--db-pid %d is not a PID", pid)
	}
	if pid == 0 {
		return nil
	}
	if _, ok := readStat(filepath.Join("/proc", strconv.Itoa(pid), "stat")); !ok {
		return fmt.Errorf("--db-pid %d: no such process", pid)
	}
	return nil
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
	// db is the database server's main process (0: none), whose CPU and
	// its children's dbFrom and dbTo read at the same moments.
	db           int
	dbFrom, dbTo time.Duration
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
func (s *rssSampler) windowStart() {
	s.cpuFrom, s.selfFrom, s.dbFrom = s.cpuNow(), cpuTime(0), s.dbNow()
}

func (s *rssSampler) windowEnd() { s.cpuTo, s.selfTo, s.dbTo = s.cpuNow(), cpuTime(0), s.dbNow() }

// dbNow reads the database server's CPU time; 0 without one.
func (s *rssSampler) dbNow() time.Duration {
	if s.db <= 0 {
		return 0
	}
	return treeCPUTime(s.db)
}

const rssPeriod = 200 * time.Millisecond

// startRSS starts sampling procs, and the CPU time of the database server
// whose main process is db (0: none; its memory is not the servers').
func startRSS(procs []Proc, db int) *rssSampler {
	s := &rssSampler{procs: procs, peak: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{}),
		first: map[string]int64{}, last: map[string]int64{}, selfFrom: cpuTime(0), db: db}
	s.dbFrom = s.dbNow()
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
	if s.db > 0 && s.dbTo == 0 {
		s.dbTo = s.dbNow()
	}
	if s.dbFrom > 0 && s.dbTo >= s.dbFrom {
		v := round(float64(s.dbTo-s.dbFrom)/float64(time.Millisecond), 1)
		r.DBCPUMs = &v
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

// procStat is what the load generator reads of /proc/PID/stat.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime time.Duration
}

// readStat reads a /proc/PID/stat file; false if it is gone or unreadable.
func readStat(path string) (procStat, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, false
	}
	// The command name, in parentheses, may hold spaces and parentheses;
	// fields count from after its last ")": state is field 3, ppid 4,
	// utime 14, stime 15, cutime 16 and cstime 17.
	end := strings.LastIndexByte(string(b), ')')
	if end < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return procStat{}, false
	}
	var n [5]int64
	for i, k := range []int{1, 11, 12, 13, 14} {
		if n[i], err = strconv.ParseInt(f[k], 10, 64); err != nil {
			return procStat{}, false
		}
	}
	const clockTicks = 100 // USER_HZ, 100 on every Linux architecture Go supports
	ticks := func(v int64) time.Duration { return time.Duration(v) * time.Second / clockTicks }
	return procStat{ppid: int(n[0]), utime: ticks(n[1]), stime: ticks(n[2]), cutime: ticks(n[3]), cstime: ticks(n[4])}, true
}

// treeCPUTime is the CPU time of process pid and of every process under
// it, live or ended: a database server's, whose work is done by a process
// per connection. An ended child's time is in its parent's once reaped
// (cutime, cstime), so the sum neither loses nor counts twice a backend
// that exits between two readings. 0 when pid is gone.
func treeCPUTime(pid int) time.Duration {
	stats, children := processes()
	if _, ok := stats[pid]; !ok {
		return 0
	}
	var sum time.Duration
	for todo := []int{pid}; len(todo) > 0; {
		p := todo[len(todo)-1]
		todo = append(todo[:len(todo)-1], children[p]...)
		st := stats[p]
		sum += st.utime + st.stime + st.cutime + st.cstime
	}
	return sum
}

// processes reads every process's stat, and each process's children.
func processes() (stats map[int]procStat, children map[int][]int) {
	stats, children = map[int]procStat{}, map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(filepath.Join("/proc", e.Name(), "stat")); ok {
			stats[p] = st
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	return stats, children
}
