package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-dev/berth/internal/bundle"
)

// snapshot describes every entry under dir, symlinks not followed: type,
// mode, owner, and content or link target.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		desc := fi.Mode().String()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			desc += fmt.Sprintf(" %d:%d", st.Uid, st.Gid)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(b)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkUnchanged(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if !maps.Equal(before, after) {
		t.Errorf("%s changed:\nbefore %v\nafter  %v", what, before, after)
	}
}

func testApplier(root string) *applier { return newApplier(root, slog.New(slog.DiscardHandler)) }

func TestApplyWritesFiles(t *testing.T) {
	old := syscall.Umask(0o077) // modes must not depend on the umask
	defer syscall.Umask(old)
	root := t.TempDir()
	// An existing directory keeps its mode; an existing file is replaced.
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "motd"), []byte("old motd, longer than the new one"), 0o666); err != nil {
		t.Fatal(err)
	}
	oldMotd, _ := os.Stat(filepath.Join(root, "motd"))

	files := []bundle.File{
		{Path: "etc/app/app.conf", Mode: 0o640, Content: []byte("listen = 0.0.0.0:80\n")},
		{Path: "etc/app/secret", Mode: 0o400, Owner: "1234", Group: "5678", Content: []byte("s3cret")},
		{Path: "motd", Mode: 0o644, Content: []byte("welcome\n")},
		{Path: "usr/local/bin/tool", Mode: 0o755 | fs.ModeSetuid, Content: []byte("\x7fELF\x00\x01\x02binary")},
		{Path: "var/empty", Mode: 0o600},
	}
	ap := testApplier(root)
	if err := ap.apply(files); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for _, f := range files {
		p := filepath.Join(root, f.Path)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != string(f.Content) {
			t.Errorf("%s = %q, want %q", f.Path, b, f.Content)
		}
		st, _ := os.Lstat(p)
		if got := st.Mode(); got != f.Mode {
			t.Errorf("%s mode = %v, want %v", f.Path, got, f.Mode)
		}
	}
	for dir, want := range map[string]fs.FileMode{"etc": 0o700, "etc/app": 0o755, "usr": 0o755, "usr/local/bin": 0o755, "var": 0o755} {
		st, err := os.Lstat(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		if !st.IsDir() || st.Mode().Perm() != want {
			t.Errorf("%s = %v, want a directory of mode %04o", dir, st.Mode(), want)
		}
	}
	st, _ := os.Stat(filepath.Join(root, "etc/app/secret"))
	sys := st.Sys().(*syscall.Stat_t)
	if ap.chown {
		if sys.Uid != 1234 || sys.Gid != 5678 {
			t.Errorf("secret owned by %d:%d, want 1234:5678", sys.Uid, sys.Gid)
		}
	} else if int(sys.Uid) != os.Geteuid() {
		t.Errorf("secret owned by %d, want the agent's user when not root", sys.Uid)
	}
	// Replaced by rename, not rewritten in place.
	newMotd, _ := os.Stat(filepath.Join(root, "motd"))
	if os.SameFile(oldMotd, newMotd) {
		t.Error("motd was rewritten in place, not replaced by a new file")
	}

	before := snapshot(t, root)
	if err := ap.apply(files); err != nil {
		t.Fatalf("apply again: %v", err)
	}
	checkUnchanged(t, "root after applying the same bundle again", before, snapshot(t, root))
	for p := range before {
		if strings.Contains(p, ".berth-") {
			t.Errorf("temporary file %s left behind", p)
		}
	}
}

func TestApplyOwnerNames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root sets owners")
	}
	root := t.TempDir()
	if err := testApplier(root).apply([]bundle.File{{Path: "f", Mode: 0o750 | fs.ModeSetuid, Owner: "root", Group: "0", Content: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(root, "f"))
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 0 || sys.Gid != 0 {
		t.Errorf("owned by %d:%d, want 0:0", sys.Uid, sys.Gid)
	}
	// Owner before mode: chown would clear setuid.
	if st.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("mode = %v, setuid lost", st.Mode())
	}
}

func TestApplyRefusesUnsafeFiles(t *testing.T) {
	good := bundle.File{Path: "aaa/first", Mode: 0o644, Content: []byte("would be written first")}
	tests := []struct {
		name    string
		setup   func(t *testing.T, root, outside string)
		files   []bundle.File
		chown   bool
		wantErr string
	}{
		{
			name:    "dot-dot",
			files:   []bundle.File{good, {Path: "../etc/passwd", Mode: 0o644}},
			wantErr: `bundle file "../etc/passwd" would climb out of --root with ".."`,
		},
		{
			name:    "dot-dot inside the path",
			files:   []bundle.File{good, {Path: "etc/../../passwd", Mode: 0o644}},
			wantErr: `bundle file "etc/../../passwd" would climb out of --root`,
		},
		{
			name:    "absolute",
			files:   []bundle.File{good, {Path: "/etc/passwd", Mode: 0o644}},
			wantErr: `bundle file "/etc/passwd" is an absolute path`,
		},
		{
			name:    "unclean",
			files:   []bundle.File{good, {Path: "etc//passwd", Mode: 0o644}},
			wantErr: `bundle file "etc//passwd" is not a clean path`,
		},
		{
			name: "symlink out of the root as a directory",
			setup: func(t *testing.T, root, outside string) {
				symlink(t, outside, filepath.Join(root, "etc")) // like root/etc -> /etc
			},
			files:   []bundle.File{good, {Path: "etc/passwd", Mode: 0o644}},
			wantErr: `bundle file "etc/passwd" would be written through the symlink "etc"`,
		},
		{
			name: "relative symlink out of the root",
			setup: func(t *testing.T, root, _ string) {
				mkdir(t, filepath.Join(root, "etc"))
				symlink(t, "../..", filepath.Join(root, "etc", "up"))
			},
			files:   []bundle.File{good, {Path: "etc/up/x", Mode: 0o644}},
			wantErr: `bundle file "etc/up/x" would be written through the symlink "etc/up"`,
		},
		{
			name: "symlink inside the root as a directory",
			setup: func(t *testing.T, root, _ string) {
				mkdir(t, filepath.Join(root, "real"))
				symlink(t, "real", filepath.Join(root, "link"))
			},
			files:   []bundle.File{good, {Path: "link/x", Mode: 0o644}},
			wantErr: `bundle file "link/x" would be written through the symlink "link"`,
		},
		{
			name: "target is a symlink out of the root",
			setup: func(t *testing.T, root, outside string) {
				mkdir(t, filepath.Join(root, "etc"))
				symlink(t, filepath.Join(outside, "passwd"), filepath.Join(root, "etc", "passwd"))
			},
			files:   []bundle.File{good, {Path: "etc/passwd", Mode: 0o644}},
			wantErr: `bundle file "etc/passwd" would replace a symlink`,
		},
		{
			name: "target is a symlink inside the root",
			setup: func(t *testing.T, root, _ string) {
				writeTestFile(t, filepath.Join(root, "real"), "real")
				symlink(t, "real", filepath.Join(root, "alias"))
			},
			files:   []bundle.File{good, {Path: "alias", Mode: 0o644}},
			wantErr: `bundle file "alias" would replace a symlink`,
		},
		{
			name: "file where a directory is needed",
			setup: func(t *testing.T, root, _ string) {
				writeTestFile(t, filepath.Join(root, "etc"), "not a directory")
			},
			files:   []bundle.File{good, {Path: "etc/passwd", Mode: 0o644}},
			wantErr: `bundle file "etc/passwd" needs "etc" to be a directory, but it is a regular file`,
		},
		{
			name: "target is a directory",
			setup: func(t *testing.T, root, _ string) {
				mkdir(t, filepath.Join(root, "etc", "passwd"))
			},
			files:   []bundle.File{good, {Path: "etc/passwd", Mode: 0o644}},
			wantErr: `bundle file "etc/passwd" would replace a directory`,
		},
		{
			name: "target is a named pipe",
			setup: func(t *testing.T, root, _ string) {
				if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			files:   []bundle.File{good, {Path: "fifo", Mode: 0o644}},
			wantErr: `bundle file "fifo" would replace a named pipe`,
		},
		{
			name:    "path given twice",
			files:   []bundle.File{good, {Path: "x", Mode: 0o644}, {Path: "x", Mode: 0o600}},
			wantErr: "x appears twice",
		},
		{
			name:    "file and directory",
			files:   []bundle.File{good, {Path: "x", Mode: 0o644}, {Path: "x/y", Mode: 0o644}},
			wantErr: "x is a file and also the directory of x/y",
		},
		{
			name:    "mode beyond permission bits",
			files:   []bundle.File{good, {Path: "x", Mode: fs.ModeDevice | 0o644}},
			wantErr: "mode",
		},
		{
			name:    "unknown owner",
			files:   []bundle.File{good, {Path: "x", Mode: 0o644, Owner: "nosuchuser"}},
			chown:   true,
			wantErr: `bundle file "x": owner "nosuchuser"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, root, outside := rootAndOutside(t)
			writeTestFile(t, filepath.Join(outside, "passwd"), "root:x:0:0::/root:/bin/sh\n")
			if tt.setup != nil {
				tt.setup(t, root, outside)
			}
			before := snapshot(t, base)
			ap := testApplier(root)
			ap.chown = tt.chown
			ap.lookupUser = func(name string) (int, error) { return 0, fmt.Errorf("user: unknown user %s", name) }
			err := ap.apply(tt.files)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "nothing was written") {
				t.Errorf("err = %v, want it to say nothing was written", err)
			}
			checkUnchanged(t, "tree", before, snapshot(t, base))
		})
	}
}

func TestApplyMissingRoot(t *testing.T) {
	err := testApplier(filepath.Join(t.TempDir(), "missing")).apply([]bundle.File{{Path: "x", Mode: 0o644}})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "--root") {
		t.Fatalf("err = %v, want --root not found", err)
	}
}

func TestReadStaging(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		want    []bundle.File
		wantErr string
	}{
		{
			name: "regular files keep their modes",
			setup: func(t *testing.T, dir string) {
				mkdir(t, filepath.Join(dir, "etc", "app"))
				mkdir(t, filepath.Join(dir, "empty"))
				writeMode(t, filepath.Join(dir, "etc", "app", "app.conf"), "a=1\n", 0o640)
				writeMode(t, filepath.Join(dir, "tool"), "#!/bin/sh\n", 0o755|fs.ModeSetgid)
			},
			want: []bundle.File{
				{Path: "etc/app/app.conf", Mode: 0o640, Content: []byte("a=1\n")},
				{Path: "tool", Mode: 0o755 | fs.ModeSetgid, Content: []byte("#!/bin/sh\n")},
			},
		},
		{
			name: "symlink",
			setup: func(t *testing.T, dir string) {
				mkdir(t, filepath.Join(dir, "etc"))
				symlink(t, "/etc/passwd", filepath.Join(dir, "etc", "passwd"))
			},
			wantErr: "etc/passwd is a symlink; only regular files can go into a bundle",
		},
		{
			name: "symlinked directory",
			setup: func(t *testing.T, dir string) {
				symlink(t, "/etc", filepath.Join(dir, "etc"))
			},
			wantErr: "etc is a symlink",
		},
		{
			name: "named pipe",
			setup: func(t *testing.T, dir string) {
				if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "fifo is a named pipe",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			got, err := readStaging(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tt.want, sameFile) {
				t.Errorf("files = %v, want %v", got, tt.want)
			}
		})
	}
}

func sameFile(a, b bundle.File) bool {
	return a.Path == b.Path && a.Mode == b.Mode && a.Owner == b.Owner && a.Group == b.Group && string(a.Content) == string(b.Content)
}

// rootAndOutside makes base/root, the tree files are written under, and
// base/outside, which nothing may touch.
func rootAndOutside(t *testing.T) (base, root, outside string) {
	t.Helper()
	base = t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	mkdir(t, root)
	mkdir(t, outside)
	return base, root, outside
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func writeTestFile(t *testing.T, p, content string) {
	t.Helper()
	writeMode(t, p, content, 0o644)
}

func writeMode(t *testing.T, p, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}
