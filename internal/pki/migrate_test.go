package pki

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// oldLayout writes, into a new directory, l's PKI in berth's first layout:
// every key in one directory, the service certificates under services/,
// no front door. The files are l's own, as the old init made them: its
// service certificates already carried only their own identity.
func oldLayout(t *testing.T, l *Layout) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "old")
	if err := os.MkdirAll(filepath.Join(dir, oldServicesDir), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range topFiles() {
		copyFile(t, filepath.Join(l.Dir, f), filepath.Join(dir, f))
	}
	for _, mv := range moves() {
		copyFile(t, filepath.Join(l.Dir, mv.to), filepath.Join(dir, mv.from))
	}
	return dir
}

func TestInitMigratesTheOldLayout(t *testing.T) {
	l := initPKI(t, InitConfig{SANs: []string{"berth.example.com", "192.0.2.7"}})
	dir := oldLayout(t, l)
	old := snapshot(t, dir)

	got, err := Init(context.Background(), InitConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Migrated || got.Existing || got.CAHash() != l.CAHash() || !got.RootKeyOnline {
		t.Fatalf("Init = %+v, want migrated with the same CA", got)
	}
	if isOldLayout(dir) || isDir(filepath.Join(dir, oldServicesDir)) {
		t.Error("old files are left")
	}
	// Every file of the old layout is in its new place, unchanged.
	for _, mv := range moves() {
		b, err := os.ReadFile(filepath.Join(dir, mv.to))
		if err != nil {
			t.Fatal(err)
		}
		if want := old[string(filepath.Separator)+mv.from]; !strings.HasSuffix(want, " "+string(b)) {
			t.Errorf("%s is not the old %s", mv.to, mv.from)
		}
	}
	for _, r := range Roles() {
		if _, err := OpenRole(copyDir(t, filepath.Join(dir, r)), r); err != nil {
			t.Errorf("%s role after migration: %v", r, err)
		}
	}
	api, err := got.Role(ServiceAPI)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"api", "localhost", "berth.example.com"}, api.Leaf.DNSNames); diff != "" {
		t.Errorf("front door DNS names (-want +got):\n%s", diff)
	}
	if len(api.Leaf.IPAddresses) != 3 || !api.Leaf.IPAddresses[2].Equal([]byte{192, 0, 2, 7}) {
		t.Errorf("front door IP addresses = %v", api.Leaf.IPAddresses)
	}
	checkModes(t, dir)

	again, err := Init(context.Background(), InitConfig{Dir: dir})
	if err != nil || !again.Existing || again.Migrated {
		t.Fatalf("Init after migrating = %+v, %v; want the PKI kept", again, err)
	}
}

// TestInitFinishesAStoppedMigration runs init over migrations that
// stopped while copying and while removing the old files.
func TestInitFinishesAStoppedMigration(t *testing.T) {
	l := initPKI(t, InitConfig{})
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
	}{
		{"stopped while copying", func(t *testing.T, dir string) {
			for _, mv := range moves()[:4] {
				copyFile(t, filepath.Join(dir, mv.from), filepath.Join(dir, mv.to))
			}
		}},
		{"stopped while removing", func(t *testing.T, dir string) {
			if _, err := Init(context.Background(), InitConfig{Dir: dir}); err != nil {
				t.Fatal(err)
			}
			for _, mv := range moves()[5:] {
				copyFile(t, filepath.Join(dir, mv.to), filepath.Join(dir, mv.from))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := oldLayout(t, l)
			mkdirs(t, dir, ServiceCA, RoleAdmin)
			tt.prepare(t, dir)
			got, err := Init(context.Background(), InitConfig{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if !got.Migrated || got.CAHash() != l.CAHash() || isOldLayout(dir) {
				t.Fatalf("Init = %+v", got)
			}
			for _, r := range Roles() {
				if _, err := got.Role(r); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestInitRefusesAConflictingMigration(t *testing.T) {
	l := initPKI(t, InitConfig{})
	dir := oldLayout(t, l)
	writeFile(t, filepath.Join(dir, RoleAdmin, AdminKeyFile), "something else")
	before := snapshot(t, dir)
	_, err := Init(context.Background(), InitConfig{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, RoleAdmin, AdminKeyFile)) {
		t.Fatalf("Init = %v, want a refusal naming admin/admin.key", err)
	}
	if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
		t.Errorf("a refused migration changed files (-before +after):\n%s", diff)
	}
}

func TestLoadRefusesTheOldLayout(t *testing.T) {
	dir := oldLayout(t, initPKI(t, InitConfig{}))
	_, err := Load(dir)
	if !errors.Is(err, ErrOldLayout) || !strings.Contains(err.Error(), "berthd init --dir "+dir) {
		t.Fatalf("Load = %v, want ErrOldLayout telling to run berthd init", err)
	}
}

func TestInitAddsMissingRoles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	l := initPKI(t, InitConfig{Dir: dir, SANs: []string{"berth.example.com"}})
	removeAll(t, dir, ServiceHeartbeat, RootDir)
	mkdirs(t, dir, ServiceHeartbeat) // an empty mount point counts as missing
	before := snapshot(t, dir)

	got, err := Init(context.Background(), InitConfig{Dir: dir, SANs: []string{"hb.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Existing || got.RootKeyOnline || !slices.Equal(got.Added, []string{ServiceHeartbeat}) || got.CAHash() != l.CAHash() {
		t.Fatalf("Init = %+v, want heartbeat added to the existing PKI", got)
	}
	after := snapshot(t, dir)
	for name, v := range before {
		if after[name] != v {
			t.Errorf("%s changed", name)
		}
	}
	hb, err := got.Role(ServiceHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"heartbeat", "localhost", "hb.example.com"}, hb.Leaf.DNSNames); diff != "" {
		t.Errorf("DNS names (-want +got):\n%s", diff)
	}
	if exists(filepath.Join(dir, RootDir, RootKeyFile)) {
		t.Error("init made a root key for an existing PKI")
	}
	checkModes(t, dir)
}

func TestInitKeepsAPKIWhoseRootKeyIsOffline(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	initPKI(t, InitConfig{Dir: dir})
	removeAll(t, dir, filepath.Join(RootDir, RootKeyFile))
	before := snapshot(t, dir)
	got, err := Init(context.Background(), InitConfig{Dir: dir})
	if err != nil || !got.Existing || got.RootKeyOnline || len(got.Added) != 0 {
		t.Fatalf("Init = %+v, %v", got, err)
	}
	if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
		t.Errorf("files changed (-before +after):\n%s", diff)
	}
}

// checkModes checks that directories are 0700, keys 0600 and certificates 0644.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o644)
		switch {
		case d.IsDir():
			want = 0o700
		case strings.HasSuffix(p, ".key"):
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mkdirs(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
