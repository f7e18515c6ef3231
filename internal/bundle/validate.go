package bundle

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Validate checks files against the rules of the format (see the package
// documentation): paths, modes, owners and groups, no path given twice or
// used both as a file and as a directory, and the file count. Seal and
// Open call it; tools may call it first for an early, precise error.
func Validate(files []File) error {
	if len(files) > MaxFiles {
		return fmt.Errorf("%w: %d files, the limit is %d", ErrTooLarge, len(files), MaxFiles)
	}
	paths := make(map[string]bool, len(files))
	for i, f := range files {
		if err := validatePath(f.Path); err != nil {
			return fmt.Errorf("%w: file %d: path %q %s", ErrInvalidFile, i, f.Path, err)
		}
		if f.Mode&^allowedModes != 0 {
			return fmt.Errorf("%w: %s: mode %v is not permission bits with setuid, setgid or sticky", ErrInvalidFile, f.Path, f.Mode)
		}
		if !validName(f.Owner) {
			return fmt.Errorf("%w: %s: owner %q is not a user name or numeric ID", ErrInvalidFile, f.Path, f.Owner)
		}
		if !validName(f.Group) {
			return fmt.Errorf("%w: %s: group %q is not a group name or numeric ID", ErrInvalidFile, f.Path, f.Group)
		}
		if paths[f.Path] {
			return fmt.Errorf("%w: %s appears twice", ErrInvalidFile, f.Path)
		}
		paths[f.Path] = true
	}
	// A path that is also another file's directory cannot be applied.
	for p := range paths {
		for i := strings.IndexByte(p, '/'); i >= 0; i = nextSlash(p, i) {
			if paths[p[:i]] {
				return fmt.Errorf("%w: %s is a file and also the directory of %s", ErrInvalidFile, p[:i], p)
			}
		}
	}
	return nil
}

func nextSlash(p string, i int) int {
	j := strings.IndexByte(p[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// validatePath says what is wrong with p, or returns nil.
func validatePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("is empty")
	case len(p) > MaxPathLen:
		return fmt.Errorf("is longer than %d bytes", MaxPathLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("is not valid UTF-8")
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return fmt.Errorf("holds a NUL or control character")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("is absolute; paths are relative to the root the bundle is applied under")
	case p == "." || !fs.ValidPath(p):
		return fmt.Errorf("is not clean: it must not hold empty, '.' or '..' elements or end in '/'")
	}
	for elem := range strings.SplitSeq(p, "/") {
		if len(elem) > maxElemSize {
			return fmt.Errorf("has an element longer than %d bytes", maxElemSize)
		}
	}
	return nil
}

// validName accepts an empty owner or group, a numeric ID other than
// 4294967295 ((uid_t)-1, which means "unchanged" to chown), or a name of up
// to MaxNameLen letters, digits, '.', '_' and '-' not starting with '.'
// or '-'.
func validName(s string) bool {
	if s == "" {
		return true
	}
	if len(s) > MaxNameLen {
		return false
	}
	if strings.Trim(s, "0123456789") == "" {
		id, err := strconv.ParseUint(s, 10, 32)
		return err == nil && id != 1<<32-1 && (s == "0" || s[0] != '0')
	}
	if s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Validate checks the files (see the package-level Validate) and the
// hooks: their count, each one's command, paths (files of the bundle,
// each named once) and timeout.
func (c Contents) Validate() error {
	if err := Validate(c.Files); err != nil {
		return err
	}
	if len(c.Hooks) > MaxHooks {
		return fmt.Errorf("%w: %d hooks, the limit is %d", ErrTooLarge, len(c.Hooks), MaxHooks)
	}
	if len(c.Hooks) == 0 {
		return nil
	}
	files := make(map[string]bool, len(c.Files))
	for _, f := range c.Files {
		files[f.Path] = true
	}
	for i, h := range c.Hooks {
		if err := validateHook(h, files); err != nil {
			return fmt.Errorf("%w: hook %d: %s", ErrInvalidHook, i, err)
		}
	}
	return nil
}

// validateHook says what is wrong with a hook, or returns nil.
func validateHook(h Hook, files map[string]bool) error {
	switch {
	case len(h.Command) == 0:
		return fmt.Errorf("has no command")
	case len(h.Command) > MaxHookArgs:
		return fmt.Errorf("has %d arguments, the limit is %d", len(h.Command), MaxHookArgs)
	case len(h.Paths) == 0:
		return fmt.Errorf("covers no file")
	case len(h.Paths) > MaxFiles:
		return fmt.Errorf("covers %d paths, the limit is %d", len(h.Paths), MaxFiles)
	case h.Timeout < time.Millisecond || h.Timeout > MaxHookTimeout:
		return fmt.Errorf("timeout %v is not between 1ms and %v", h.Timeout, MaxHookTimeout)
	case h.Timeout%time.Millisecond != 0:
		return fmt.Errorf("timeout %v is not a whole number of milliseconds", h.Timeout)
	}
	for j, a := range h.Command {
		switch {
		case len(a) > MaxHookArgLen:
			return fmt.Errorf("argument %d is longer than %d bytes", j, MaxHookArgLen)
		case !utf8.ValidString(a):
			return fmt.Errorf("argument %d is not valid UTF-8", j)
		case strings.IndexByte(a, 0) >= 0:
			return fmt.Errorf("argument %d holds a NUL", j)
		}
	}
	prog := h.Command[0]
	if !strings.HasPrefix(prog, "/") || path.Clean(prog) != prog || prog == "/" {
		return fmt.Errorf("program %q is not an absolute, clean path (hooks run without a shell or PATH search)", prog)
	}
	seen := make(map[string]bool, len(h.Paths))
	for _, p := range h.Paths {
		switch {
		case seen[p]:
			return fmt.Errorf("names %q twice", p)
		case !files[p]:
			return fmt.Errorf("covers %q, which is not a file of the bundle", p)
		}
		seen[p] = true
	}
	return nil
}
