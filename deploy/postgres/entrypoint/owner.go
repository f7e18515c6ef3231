package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// becomeOwner makes the data directory (recursively, when it is not the
// user's yet: a new volume is root's) and the socket directory the user's,
// then drops root for good. Go changes the credentials of every thread.
func becomeOwner(cfg config) error {
	u, err := user.Lookup(cfg.user)
	if err != nil {
		return fmt.Errorf("look up user %s: %w", cfg.user, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("user %s: uid %q: %w", cfg.user, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return fmt.Errorf("user %s: gid %q: %w", cfg.user, u.Gid, err)
	}
	for _, dir := range []string{cfg.dataDir, cfg.socketDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	fi, err := os.Stat(cfg.dataDir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
		err := filepath.WalkDir(cfg.dataDir, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			return fmt.Errorf("chown %s: %w", cfg.dataDir, err)
		}
	}
	if err := os.Chmod(cfg.dataDir, 0o700); err != nil {
		return err
	}
	if err := os.Chown(cfg.socketDir, uid, gid); err != nil {
		return err
	}
	if err := os.Chmod(cfg.socketDir, 0o2775); err != nil {
		return err
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	os.Setenv("HOME", u.HomeDir)
	os.Setenv("USER", cfg.user)
	return nil
}
