package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
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
// (see check). The caller closes the tree.
func (ap *applier) prepare(files []bundle.File) (*tree, []plannedFile, error) {
	t, err := openTree(ap.root)
	if err != nil {
		return nil, nil, fmt.Errorf("open --root: %w", err)
	}
	plan, err := ap.check(t, files)
	if err != nil {
		t.close()
		return nil, nil, fmt.Errorf("refusing to apply the bundle under %s, nothing was written: %w", ap.root, err)
	}
	return t, plan, nil
}

// apply writes files under the root, each one atomically: a temporary
// file in the same directory, written, synced, given its owner and mode,
// then renamed over the target. Missing directories are made with mode
// 0755. Nothing is written unless every file passes check first. Applying
// the same files again changes nothing but the files' inodes.
//
// Each directory is synced once, after its last file: a crash before
// apply returns may keep any of the renames, each file whole, as a crash
// part-way through the files always could. A node applies its bundle
// again on every boot.
func (ap *applier) apply(files []bundle.File) error {
	t, plan, err := ap.prepare(files)
	if err != nil {
		return err
	}
	defer t.close()
	if !ap.chown && ap.log != nil {
		for _, f := range files {
			if f.Owner != "" || f.Group != "" {
				ap.log.Warn("not running as root: bundle file owners and groups are not applied")
				break
			}
		}
	}
	for i, f := range plan {
		if err := t.writeFile(f.Path, f.Content, f.Mode, f.uid, f.gid); err != nil {
			t.sync()
			return fmt.Errorf("apply bundle under %s (%d of %d files written): write %s: %w", ap.root, i, len(plan), f.Path, err)
		}
	}
	t.sync()
	return nil
}

// check refuses files the agent must not write, whatever the bundle
// format promised: an absolute path, a ".." element, a path through a
// symlink (even one pointing inside the root) or through anything but a
// directory, and a target that exists as anything but a regular file. It
// also resolves owners and groups, so that an unknown one stops the bundle
// before any file is written.
func (ap *applier) check(t *tree, files []bundle.File) ([]plannedFile, error) {
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
		if err := checkTree(t, f.Path); err != nil {
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
func checkTree(t *tree, p string) error {
	elems := strings.Split(p, "/")
	for i := range elems {
		name := strings.Join(elems[:i+1], "/")
		mode, err := t.lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nor does anything below it
		}
		if err != nil {
			return fmt.Errorf("bundle file %q: %w", p, err)
		}
		last := i == len(elems)-1
		switch {
		case mode&fs.ModeSymlink != 0 && last:
			return &unsafeFileError{path: p, reason: "would replace a symlink"}
		case mode&fs.ModeSymlink != 0:
			return &unsafeFileError{path: p, reason: fmt.Sprintf("would be written through the symlink %q", name)}
		case !last && !mode.IsDir():
			return &unsafeFileError{path: p, reason: fmt.Sprintf("needs %q to be a directory, but it is a %s", name, typeName(mode))}
		case last && !mode.IsRegular():
			return &unsafeFileError{path: p, reason: "would replace a " + typeName(mode)}
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
