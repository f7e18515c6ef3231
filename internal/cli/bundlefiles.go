package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/bundle"
)

// fileFlag collects repeated --file PATH[=DEST] flags.
type fileFlag []fileSpec

// fileSpec is one file to put in a bundle: where it is read from, where the
// node writes it (relative to the agent's --root), and the argument that
// named it, for messages.
type fileSpec struct {
	local, dest, origin string
}

func (f *fileFlag) String() string {
	if f == nil {
		return ""
	}
	parts := make([]string, len(*f))
	for i, s := range *f {
		parts[i] = s.origin
	}
	return strings.Join(parts, " ")
}

// Set splits at the first '=': a destination may then hold any character
// the bundle format allows, and a local file whose name holds '=' can
// still be named with an explicit destination.
// Type names the value in help and completion.
func (f *fileFlag) Type() string { return "value" }

func (f *fileFlag) Set(v string) error {
	local, dest, hasDest := strings.Cut(v, "=")
	switch {
	case local == "":
		return errors.New("want PATH or PATH=DEST")
	case hasDest && dest == "":
		return errors.New("empty destination after '='")
	case !hasDest:
		dest = filepath.Base(local)
	}
	*f = append(*f, fileSpec{local: local, dest: dest, origin: "--file " + v})
	return nil
}

// onceFlag is a string flag that may be given only once.
type onceFlag struct {
	value string
	set   bool
}

func (f *onceFlag) String() string {
	if f == nil {
		return ""
	}
	return f.value
}

// Type names the value in help and completion.
func (f *onceFlag) Type() string { return "value" }

func (f *onceFlag) Set(v string) error {
	if f.set {
		return errors.New("given twice")
	}
	if v == "" {
		return errors.New("empty value")
	}
	f.value, f.set = v, true
	return nil
}

// fileOptions say how local files become bundle files.
type fileOptions struct {
	// keepMode keeps each file's permission, setuid, setgid and sticky
	// bits; otherwise files get 0644, or 0755 if executable by their owner.
	keepMode     bool
	owner, group string
}

// localError is a problem with local files found before anything is
// called: a usage error (exit 2) when the command line asks for a bundle
// the format does not allow, or else a read error (exit 1).
type localError struct {
	usage bool
	msg   string
}

// gatherDir lists the regular files under dir as specs whose destinations
// are their slash-separated paths relative to dir. Anything else but a
// directory (a symbolic link, a device, a socket) is refused: bundles carry
// regular files only, and following links could leave the tree. dir itself
// may be a link to a directory.
func gatherDir(dir string) ([]fileSpec, *localError) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, &localError{msg: readError(err)}
	}
	if !fi.IsDir() {
		return nil, &localError{usage: true, msg: fmt.Sprintf("--dir %s is not a directory", dir)}
	}
	var specs []fileSpec
	var bad *localError
	// The trailing separator makes WalkDir follow dir if it is a link.
	root := dir + string(filepath.Separator)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			bad = &localError{usage: true, msg: fmt.Sprintf("--dir %s: %s is %s; bundles carry regular files only", dir, p, kindOf(d.Type()))}
			return fs.SkipAll
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		specs = append(specs, fileSpec{local: p, dest: filepath.ToSlash(rel), origin: "--dir " + dir})
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	if err != nil {
		return nil, &localError{msg: readError(err)}
	}
	if len(specs) == 0 {
		return nil, &localError{usage: true, msg: fmt.Sprintf("--dir %s holds no files (bundles reset removes a node's bundle)", dir)}
	}
	return specs, nil
}

// loadFiles checks specs against the bundle format and then reads them.
// Everything the command line decides (destinations, owner, group, file
// count, total size) is checked before any content is read, so a bad
// command line fails fast and precisely.
func loadFiles(specs []fileSpec, opt fileOptions) ([]bundle.File, *localError) {
	files := make([]bundle.File, len(specs))
	sizes := make([]int64, len(specs))
	total := int64(payloadHeader)
	for i, spec := range specs {
		fi, err := os.Stat(spec.local)
		if err != nil {
			return nil, &localError{msg: readError(err)}
		}
		if t := fi.Mode().Type(); !t.IsRegular() {
			hint := ""
			if t.IsDir() {
				hint = " (--dir puts a directory's files)"
			}
			return nil, &localError{usage: true, msg: fmt.Sprintf("%s: %s is %s; bundles carry regular files only%s", spec.origin, spec.local, kindOf(t), hint)}
		}
		f := bundle.File{Path: spec.dest, Mode: bundleMode(fi.Mode(), opt.keepMode), Owner: opt.owner, Group: opt.group}
		if err := bundle.Validate([]bundle.File{f}); err != nil {
			// Validate numbers the files it is given; this one is alone.
			msg := strings.Replace(err.Error(), "file 0: ", "", 1)
			return nil, &localError{usage: true, msg: fmt.Sprintf("%s: %s", spec.origin, msg)}
		}
		files[i], sizes[i] = f, fi.Size()
		total += payloadPerFile + int64(len(f.Path)+len(f.Owner)+len(f.Group)) + fi.Size()
		if total > bundle.MaxPayload {
			return nil, &localError{usage: true, msg: tooLarge(len(specs))}
		}
	}
	if err := bundle.Validate(files); err != nil {
		return nil, &localError{usage: true, msg: err.Error()}
	}
	for i, spec := range specs {
		content, err := os.ReadFile(spec.local)
		if err != nil {
			return nil, &localError{msg: readError(err)}
		}
		// A file may have changed size since it was measured.
		total += int64(len(content)) - sizes[i]
		if total > bundle.MaxPayload {
			return nil, &localError{usage: true, msg: tooLarge(len(specs))}
		}
		files[i].Content = content
	}
	return files, nil
}

// Sizes of bundle format version 1's payload (see package bundle): a file
// count, then per file its path, mode, owner, group and content lengths.
const (
	payloadHeader  = 4
	payloadPerFile = 2 + 2 + 1 + 1 + 4
)

func tooLarge(n int) string {
	return fmt.Sprintf("%s: the %d files add up to more than the %d bytes a bundle holds", bundle.ErrTooLarge, n, bundle.MaxPayload)
}

// bundleMode is the mode a local file gets in the bundle.
func bundleMode(m fs.FileMode, keep bool) fs.FileMode {
	if keep {
		return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	}
	if m&0o100 != 0 {
		return 0o755
	}
	return 0o644
}

// kindOf names a non-regular file type for messages.
func kindOf(t fs.FileMode) string {
	switch {
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// readError describes a failure to read a local file as "read PATH:
// REASON", naming the file that failed, which under --dir may be deep in
// the tree.
func readError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("read %s: %v", pe.Path, pe.Err)
	}
	return "read files: " + err.Error()
}
