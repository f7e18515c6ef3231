package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"golang.org/x/sys/unix"
)

// tree is a directory the agent writes files under, held by descriptors:
// each directory is opened once, from its parent, without following a
// symlink, and every later step names one entry of an open directory. So
// nothing is reached through a symlink, what was checked is what is
// written into however paths change meanwhile, and a boot's files cost a
// handful of system calls each. (os.Root walked every path again for each
// step, and os.File set up the poller for every regular file: about 130
// system calls a boot, a third of a millisecond of a storm's CPU.)
type tree struct {
	name string // for messages
	// dirs holds the open directories by their path under the root,
	// "." for the root itself.
	dirs map[string]int
	// written holds the directories a file was renamed into since the
	// last sync.
	written map[string]bool
}

// openTree opens the directory root, which must exist.
func openTree(root string) (*tree, error) {
	fd, err := openDirAt(unix.AT_FDCWD, root, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	return &tree{name: root, dirs: map[string]int{".": fd}, written: map[string]bool{}}, nil
}

// close closes every directory the tree opened.
func (t *tree) close() {
	for _, fd := range t.dirs {
		unix.Close(fd)
	}
	t.dirs = nil
}

func openDirAt(parent int, name string, flags int) (int, error) {
	return retryEINTR(func() (int, error) {
		return unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|flags, 0)
	})
}

// lstat describes the entry p under the root without following it, each
// directory on the way opened as above; a missing entry (or directory on
// the way) gives an error matching fs.ErrNotExist.
func (t *tree) lstat(p string) (fs.FileMode, error) {
	fd, err := t.dir(path.Dir(p), false)
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, path.Base(p), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, err
	}
	return typeOf(st.Mode), nil
}

// dir returns the open directory d ("." or a clean relative path),
// opening each element from its parent. With create, missing ones are
// made with mode dirMode, exactly; without, a missing one is an error
// matching fs.ErrNotExist. An element that is not a directory (a symlink
// included) is an unsafeFileError.
func (t *tree) dir(d string, create bool) (int, error) {
	if fd, ok := t.dirs[d]; ok {
		return fd, nil
	}
	up := path.Dir(d)
	if up == d {
		return -1, fmt.Errorf("%q is not a directory under %s", d, t.name)
	}
	parent, err := t.dir(up, create)
	if err != nil {
		return -1, err
	}
	base := path.Base(d)
	made := false
	if create {
		err := unix.Mkdirat(parent, base, uint32(dirMode))
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("create directory %s: %w", d, err)
		}
		made = err == nil
	}
	fd, err := openDirAt(parent, base, unix.O_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP):
		var st unix.Stat_t
		kind := "something else"
		if unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			kind = "a " + typeName(typeOf(st.Mode))
		}
		return -1, &unsafeFileError{path: d, reason: fmt.Sprintf("needs %q to be a directory, but it is %s", d, kind)}
	case err != nil:
		return -1, &fs.PathError{Op: "open", Path: d, Err: err}
	}
	if made {
		// The exact mode, whatever the umask.
		if err := unix.Fchmod(fd, uint32(dirMode)); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("create directory %s: %w", d, err)
		}
	}
	t.dirs[d] = fd
	return fd, nil
}

// writeFile replaces the file p under the root, making its missing
// directories: a new private temporary file in the same directory,
// written, synced, given its owner (uid, gid; -1 leaves one as created)
// and then its exact mode (owner first: chown clears setuid and setgid),
// and renamed over p. The rename is durable once sync returns.
func (t *tree) writeFile(p string, data []byte, mode fs.FileMode, uid, gid int) (err error) {
	if reason := unsafePath(p); reason != "" {
		return &unsafeFileError{path: p, reason: reason}
	}
	dir, base := path.Dir(p), path.Base(p)
	fd, err := t.dir(dir, true)
	if err != nil {
		return err
	}
	tmp, f, err := createTempAt(fd, base)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if f >= 0 {
				unix.Close(f)
			}
			unix.Unlinkat(fd, tmp, 0)
		}
	}()
	if err = writeAll(f, data); err != nil {
		return err
	}
	if err = unix.Fsync(f); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err = unix.Fchown(f, uid, gid); err != nil {
			return err
		}
	}
	if err = unix.Fchmod(f, unixMode(mode)); err != nil {
		return err
	}
	err, f = unix.Close(f), -1
	if err != nil {
		return err
	}
	if err = unix.Renameat(fd, tmp, fd, base); err != nil {
		return err
	}
	t.written[dir] = true
	return nil
}

// remove deletes the file p under the root; one already gone is fine.
func (t *tree) remove(p string) error {
	if reason := unsafePath(p); reason != "" {
		return &unsafeFileError{path: p, reason: reason}
	}
	fd, err := t.dir(path.Dir(p), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(fd, path.Base(p), 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// sync makes the renames of writeFile durable: each directory written
// into is synced once, however many files it got. Not every file system
// syncs directories; the renames are done either way.
func (t *tree) sync() {
	for d := range t.written {
		if fd, ok := t.dirs[d]; ok { // not after close
			_ = unix.Fsync(fd)
		}
	}
	clear(t.written)
}

// createTempAt makes a new, empty, private temporary file in the open
// directory dir for the file base.
func createTempAt(dir int, base string) (string, int, error) {
	// Keep the name within the 255 bytes of a path element.
	if len(base) > 64 {
		base = base[:64]
	}
	for range 16 {
		name := "." + base + ".berth-" + rand.Text()[:10]
		fd, err := retryEINTR(func() (int, error) {
			return unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		})
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		return name, fd, err
	}
	return "", -1, errors.New("no unused temporary file name")
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := retryEINTR(func() (int, error) { return unix.Write(fd, b) })
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// unixMode is m's permission bits with setuid, setgid and sticky in Unix
// terms.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}

// typeOf is the type of a Unix mode in fs.FileMode terms.
func typeOf(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
		return 0
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}
