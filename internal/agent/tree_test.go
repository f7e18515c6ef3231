package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTreeWriteRefusesWhatCheckWould: a tree that changed after the
// check (a directory swapped for a symlink or a file) is refused when the
// file is written, not followed, and nothing lands outside the root.
func TestTreeWriteRefusesWhatCheckWould(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, root, outside string)
		path    string
		wantErr string
	}{
		{
			name:    "symlink out of the root as a directory",
			setup:   func(t *testing.T, root, outside string) { symlink(t, outside, filepath.Join(root, "etc")) },
			path:    "etc/passwd",
			wantErr: `needs "etc" to be a directory, but it is a symlink`,
		},
		{
			name: "symlink deeper down",
			setup: func(t *testing.T, root, outside string) {
				mkdir(t, filepath.Join(root, "etc"))
				symlink(t, outside, filepath.Join(root, "etc", "app"))
			},
			path:    "etc/app/passwd",
			wantErr: `needs "etc/app" to be a directory, but it is a symlink`,
		},
		{
			name:    "absolute path",
			setup:   func(*testing.T, string, string) {},
			path:    "/etc/passwd",
			wantErr: "is an absolute path",
		},
		{
			name:    "dot-dot",
			setup:   func(*testing.T, string, string) {},
			path:    "../outside/passwd",
			wantErr: "would climb out of --root",
		},
		{
			name:    "file as a directory",
			setup:   func(t *testing.T, root, _ string) { writeTestFile(t, filepath.Join(root, "etc"), "x") },
			path:    "etc/passwd",
			wantErr: `needs "etc" to be a directory, but it is a regular file`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, root, outside := rootAndOutside(t)
			tt.setup(t, root, outside)
			before := snapshot(t, base)
			tr, err := openTree(root)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.close()
			err = tr.writeFile(tt.path, []byte("root::0:0::/:/bin/sh\n"), 0o644, -1, -1)
			var unsafe *unsafeFileError
			if !errors.As(err, &unsafe) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want an unsafe file error containing %q", err, tt.wantErr)
			}
			tr.sync()
			checkUnchanged(t, "tree", before, snapshot(t, base))
		})
	}
}

// TestApplierRemove: files a new version dropped are removed, one already
// gone is fine, and nothing is removed through a symlink or that is not a
// regular file.
func TestApplierRemove(t *testing.T) {
	base, root, outside := rootAndOutside(t)
	mkdir(t, filepath.Join(root, "etc", "app"))
	writeTestFile(t, filepath.Join(root, "motd"), "m")
	writeTestFile(t, filepath.Join(root, "etc", "app", "app.conf"), "c")
	writeTestFile(t, filepath.Join(root, "etc", "keep"), "k")
	writeTestFile(t, filepath.Join(outside, "victim"), "v")
	symlink(t, outside, filepath.Join(root, "link"))
	ap := testApplier(root)

	if err := ap.remove([]string{"motd", "etc/app/app.conf", "gone", "nodir/gone"}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	got := snapshot(t, root)
	for _, p := range []string{"motd", "etc/app/app.conf"} {
		if _, ok := got[p]; ok {
			t.Errorf("%s not removed", p)
		}
	}
	for _, p := range []string{"etc/keep", "etc/app"} {
		if _, ok := got[p]; !ok {
			t.Errorf("%s removed, want it kept", p)
		}
	}

	for _, tt := range []struct{ path, wantErr string }{
		{"link/victim", `would be written through the symlink "link"`},
		{"etc/app", "would replace a directory"},
		{"../outside/victim", "would climb out of --root"},
	} {
		before := snapshot(t, base)
		err := ap.remove([]string{tt.path})
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("remove %s: err = %v, want one containing %q", tt.path, err, tt.wantErr)
		}
		checkUnchanged(t, "tree after refusing to remove "+tt.path, before, snapshot(t, base))
	}
	if _, err := os.Stat(filepath.Join(outside, "victim")); err != nil {
		t.Errorf("the file outside the root: %v", err)
	}
}

// TestTreeWriteFailureLeavesNothing: a write that fails at its last step
// (the rename, over a directory that is not empty) leaves the target as
// it was and no temporary file behind.
func TestTreeWriteFailureLeavesNothing(t *testing.T) {
	base, root, _ := rootAndOutside(t)
	mkdir(t, filepath.Join(root, "etc", "passwd"))
	writeTestFile(t, filepath.Join(root, "etc", "passwd", "keep"), "k")
	before := snapshot(t, base)
	tr, err := openTree(root)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	if err := tr.writeFile("etc/passwd", []byte("x"), 0o644, -1, -1); err == nil {
		t.Fatal("renaming a file over a directory that is not empty succeeded")
	}
	tr.sync()
	checkUnchanged(t, "tree after a failed write", before, snapshot(t, base))
}
