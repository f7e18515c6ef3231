package bundle

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
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
