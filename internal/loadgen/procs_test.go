package loadgen

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTreeCPUTime: the CPU time of a process tree counts the children
// that ended (reaped into the parent's) and those still running, as a
// PostgreSQL server's must count its connections' whether they are gone
// or open. The tree is a shell that ran one busy child to its end and
// keeps another, busy then asleep.
func TestTreeCPUTime(t *testing.T) {
	const burn = `i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done`
	parent := exec.Command("sh", "-c", "("+burn+"); ("+burn+"; exec sleep 60) & wait")
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		parent.Process.Kill()
		parent.Wait()
	}()
	pid := parent.Process.Pid
	live := 0
	for deadline := time.Now().Add(time.Minute); live == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second child never went to sleep")
		}
		live = sleepingChild(t, pid)
	}
	defer func() {
		if p, err := os.FindProcess(live); err == nil {
			p.Kill()
		}
	}()
	own, ok := readStat("/proc/" + strconv.Itoa(pid) + "/stat")
	if !ok {
		t.Fatal("cannot read the parent's stat")
	}
	child := cpuTime(live)
	if own.cutime+own.cstime == 0 || child == 0 {
		t.Fatalf("the children used no CPU: ended %v, live %v", own.cutime+own.cstime, child)
	}
	got := treeCPUTime(pid)
	if want := own.utime + own.stime + own.cutime + own.cstime + child; got < want {
		t.Errorf("treeCPUTime = %v; want at least %v (parent %v, ended children %v, live child %v)",
			got, want, own.utime+own.stime, own.cutime+own.cstime, child)
	}
	if got := treeCPUTime(1 << 30); got != 0 {
		t.Errorf("treeCPUTime of no process = %v; want 0", got)
	}
}

// sleepingChild is the PID of parent's child that runs sleep, 0 if none
// does yet.
func sleepingChild(t *testing.T, parent int) int {
	t.Helper()
	_, children := processes()
	for _, pid := range children[parent] {
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err == nil && strings.TrimSpace(string(comm)) == "sleep" {
			return pid
		}
	}
	return 0
}
