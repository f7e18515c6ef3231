package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/bundle"
)

// dirMode is the mode of the directories the agent creates for bundle
// files.
const dirMode fs.FileMode = 0o755

// unsafeFileError is a bundle file the agent refuses to write: its path
// would leave --root, or would go through or over something that is not a
// plain directory or regular file.
type unsafeFileError struct {
	path   string
	reason string
}

func (e *unsafeFileError) Error() string { return fmt.Sprintf("bundle file %q %s", e.path, e.reason) }

// applier writes a bundle's files under a root directory.
type applier struct {
	root string
	// chown is whether files get the bundle's owner and group: only root
	// may give files away.
	chown bool
	// lookupUser and lookupGroup map a name or numeric ID to an ID.
	lookupUser, lookupGroup func(name string) (int, error)
	log                     *slog.Logger
}

func newApplier(root string, log *slog.Logger) *applier {
	return &applier{root: root, chown: os.Geteuid() == 0, lookupUser: lookupUID, lookupGroup: lookupGID, log: log}
}

// plannedFile is a checked bundle file with its owner resolved; -1 leaves
// the owner or group as the agent creates it.
type plannedFile struct {
	bundle.File
	uid, gid int
}

// prepare opens the root and checks every file before anything is written
// (see check). The caller closes the root.
func (ap *applier) prepare(files []bundle.File) (*os.Root, []plannedFile, error) {
	r, err := os.OpenRoot(ap.root)
	if err != nil {
		return nil, nil, fmt.Errorf("open --root: %w", err)
	}
	plan, err := ap.check(r, files)
	if err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("refusing to apply the bundle under %s, nothing was written: %w", ap.root, err)
	}
	return r, plan, nil
}

// apply writes files under the root, each one atomically: a temporary
// file in the same directory, written, synced, given its owner and mode,
// then renamed over the target. Missing directories are made with mode
// 0755. Nothing is written unless every file passes check first. Applying
// the same files again changes nothing but the files' inodes.
func (ap *applier) apply(files []bundle.File) error {
	r, plan, err := ap.prepare(files)
	if err != nil {
		return err
	}
	defer r.Close()
	if !ap.chown && ap.log != nil {
		for _, f := range files {
			if f.Owner != "" || f.Group != "" {
				ap.log.Warn("not running as root: bundle file owners and groups are not applied")
				break
			}
		}
	}
	for i, f := range plan {
		if err := writeBundleFile(r, f); err != nil {
			return fmt.Errorf("apply bundle under %s (%d of %d files written): %w", ap.root, i, len(plan), err)
		}
	}
	return nil
}

// check refuses files the agent must not write, whatever the bundle
// format promised: an absolute path, a ".." element, a path through a
// symlink (even one pointing inside the root) or through anything but a
// directory, and a target that exists as anything but a regular file. It
// also resolves owners and groups, so that an unknown one stops the bundle
// before any file is written.
func (ap *applier) check(r *os.Root, files []bundle.File) ([]plannedFile, error) {
	for _, f := range files {
		if reason := unsafePath(f.Path); reason != "" {
			return nil, &unsafeFileError{path: f.Path, reason: reason}
		}
	}
	if err := bundle.Validate(files); err != nil {
		return nil, err
	}
	plan := make([]plannedFile, 0, len(files))
	for _, f := range files {
		if err := checkTree(r, f.Path); err != nil {
			return nil, err
		}
		p := plannedFile{File: f, uid: -1, gid: -1}
		if ap.chown {
			var err error
			if f.Owner != "" {
				if p.uid, err = ap.lookupUser(f.Owner); err != nil {
					return nil, fmt.Errorf("bundle file %q: owner %q: %w", f.Path, f.Owner, err)
				}
			}
			if f.Group != "" {
				if p.gid, err = ap.lookupGroup(f.Group); err != nil {
					return nil, fmt.Errorf("bundle file %q: group %q: %w", f.Path, f.Group, err)
				}
			}
		}
		plan = append(plan, p)
	}
	return plan, nil
}

// unsafePath says why p cannot name a file under the root, or returns "".
func unsafePath(p string) string {
	switch {
	case p == "":
		return "has an empty path"
	case strings.HasPrefix(p, "/"):
		return "is an absolute path; bundle paths are relative to --root"
	case strings.IndexByte(p, 0) >= 0:
		return "holds a NUL byte"
	}
	for elem := range strings.SplitSeq(p, "/") {
		switch elem {
		case "..":
			return `would climb out of --root with ".."`
		case "", ".":
			return `is not a clean path (empty or "." element)`
		}
	}
	return ""
}

// checkTree checks what already exists along p under the root: every
// parent must be a real directory and the target, if there, a regular
// file.
func checkTree(r *os.Root, p string) error {
	elems := strings.Split(p, "/")
	for i := range elems {
		name := strings.Join(elems[:i+1], "/")
		fi, err := r.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nor does anything below it
		}
		if err != nil {
			return fmt.Errorf("bundle file %q: %w", p, err)
		}
		last := i == len(elems)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0 && last:
			return &unsafeFileError{path: p, reason: "would replace a symlink"}
		case fi.Mode()&fs.ModeSymlink != 0:
			return &unsafeFileError{path: p, reason: fmt.Sprintf("would be written through the symlink %q", name)}
		case !last && !fi.IsDir():
			return &unsafeFileError{path: p, reason: fmt.Sprintf("needs %q to be a directory, but it is a %s", name, typeName(fi.Mode()))}
		case last && !fi.Mode().IsRegular():
			return &unsafeFileError{path: p, reason: "would replace a " + typeName(fi.Mode())}
		}
	}
	return nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// writeBundleFile writes one checked file atomically.
func writeBundleFile(r *os.Root, f plannedFile) (err error) {
	dir := path.Dir(f.Path)
	if err := mkdirs(r, dir); err != nil {
		return err
	}
	tmp, file, err := createTemp(r, dir, path.Base(f.Path))
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	defer func() {
		if err != nil {
			file.Close()
			r.Remove(tmp)
			err = fmt.Errorf("write %s: %w", f.Path, err)
		}
	}()
	if _, err = file.Write(f.Content); err != nil {
		return err
	}
	if err = file.Sync(); err != nil {
		return err
	}
	// Owner first: chown clears setuid and setgid.
	if f.uid >= 0 || f.gid >= 0 {
		if err = file.Chown(f.uid, f.gid); err != nil {
			return err
		}
	}
	// Chmod, not the umask-subject create mode: the mode is exact.
	if err = file.Chmod(f.Mode); err != nil {
		return err
	}
	if err = file.Close(); err != nil {
		return err
	}
	if err = r.Rename(tmp, f.Path); err != nil {
		return err
	}
	if d, derr := r.Open(dir); derr == nil {
		// Not every file system syncs directories; the rename is done.
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// mkdirs makes the missing directories of dir with mode dirMode. What
// exists was checked before; it is checked again in case it changed.
func mkdirs(r *os.Root, dir string) error {
	if dir == "." {
		return nil
	}
	elems := strings.Split(dir, "/")
	for i := range elems {
		name := strings.Join(elems[:i+1], "/")
		fi, err := r.Lstat(name)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return &unsafeFileError{path: dir, reason: fmt.Sprintf("needs %q to be a directory, but it is a %s", name, typeName(fi.Mode()))}
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("create directory %s: %w", name, err)
		}
		if err := r.Mkdir(name, dirMode); err != nil {
			return fmt.Errorf("create directory %s: %w", name, err)
		}
		// The exact mode, whatever the umask.
		if err := r.Chmod(name, dirMode); err != nil {
			return fmt.Errorf("create directory %s: %w", name, err)
		}
	}
	return nil
}

// createTemp makes a new, empty, private temporary file in dir for the
// file base.
func createTemp(r *os.Root, dir, base string) (string, *os.File, error) {
	// Keep the name within the 255 bytes of a path element.
	if len(base) > 64 {
		base = base[:64]
	}
	for range 16 {
		name := path.Join(dir, "."+base+".berth-"+rand.Text()[:10])
		f, err := r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return name, f, err
	}
	return "", nil, errors.New("no unused temporary file name")
}

// lookupUID maps a user name or numeric ID to a user ID.
func lookupUID(name string) (int, error) {
	if id, err := strconv.ParseUint(name, 10, 32); err == nil {
		return int(id), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(u.Uid)
}

// lookupGID maps a group name or numeric ID to a group ID.
func lookupGID(name string) (int, error) {
	if id, err := strconv.ParseUint(name, 10, 32); err == nil {
		return int(id), nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}
