//go:build unix

package loadgen

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// raiseFDLimit raises RLIMIT_NOFILE so that want descriptors fit: the soft
// limit to the hard one, and the hard one too where the process may (root;
// up to fs.nr_open). It returns the soft limit in force afterwards.
func raiseFDLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Max < want {
		ceiling := want
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
				ceiling = min(want, n)
			}
		}
		raised := syscall.Rlimit{Cur: ceiling, Max: ceiling}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return ceiling, nil
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}
