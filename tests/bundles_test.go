package tests

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBundleAppliedOnEveryBoot: the engine puts a bundle for a registered
// node with berthctl; the node reboots with nothing kept and finds its files
// under its root, byte for byte. The servers only ever hold ciphertext.
func TestBundleAppliedOnEveryBoot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB, ...string) deployment
	}{
		{"dev_sqlite", startDev},
		{"serve_postgres", startServe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := tc.start(t)
			m := newMachine(t, "hv-22", "4c4c4544-0042-3510-8051-b2c04f4e4d22")
			first, _, err := m.boot(t, d, createToken(t, d, "--auto-approve"))
			if err != nil {
				t.Fatal(err)
			}
			if first.BundleVersion == nil || *first.BundleVersion != 0 {
				t.Fatalf("first boot without a bundle: %+v", first)
			}
			// A marker that must never appear in any server-side byte.
			marker := "plaintext-marker-" + first.NodeID
			src := t.TempDir()
			want := map[string]struct {
				content string
				mode    fs.FileMode
			}{
				"etc/hostname":               {"hv-22\n", 0o644},
				"etc/berth/engine.conf":      {"engine=https://engine.example\nsecret=" + marker + "\n", 0o600},
				"root/.ssh/authorized_keys":  {"ssh-ed25519 AAAAC3Nza " + marker + "\n", 0o600},
				"etc/sysconfig/network-eth0": {strings.Repeat("MTU=9000\n", 500), 0o644},
			}
			args := []string{"bundles", "put", first.NodeID, "-o", "json"}
			for dest, f := range want {
				local := filepath.Join(src, strings.ReplaceAll(dest, "/", "_"))
				if err := os.WriteFile(local, []byte(f.content), f.mode); err != nil {
					t.Fatal(err)
				}
				os.Chmod(local, f.mode)
				args = append(args, "--file", local+"="+dest)
			}
			var info struct {
				Version int64  `json:"version"`
				State   string `json:"state"`
			}
			mustJSON(t, mustRun(t, d.env, "berthctl", args...), &info)
			if info.Version < 1 || info.State != "approved" {
				t.Fatalf("bundles put = %+v", info)
			}
			// Resume serves bundles from a cache that the bundle store's
			// events refresh; in a split deployment the event of the put
			// may reach it a moment after the put returned, and until then
			// a boot gets the node's previous bundle (none here).
			for deadline := time.Now().Add(10 * time.Second); ; {
				r, _, err := m.boot(t, d, "")
				if err != nil {
					t.Fatalf("boot after the put: %v", err)
				}
				if r.BundleVersion != nil && *r.BundleVersion == info.Version {
					break
				}
				if r.BundleVersion == nil || *r.BundleVersion != 0 || time.Now().After(deadline) {
					t.Fatalf("boot after the put = %+v, want bundle %d (or, for a moment, none)", r, info.Version)
				}
				time.Sleep(50 * time.Millisecond)
			}
			for i := range 3 {
				r, _, err := m.boot(t, d, "")
				if err != nil {
					t.Fatalf("reboot %d: %v", i, err)
				}
				if r.BundleVersion == nil || *r.BundleVersion != info.Version || r.FilesApplied == nil || *r.FilesApplied != int64(len(want)) {
					t.Fatalf("reboot %d = %+v, want bundle %d with %d files", i, r, info.Version, len(want))
				}
				for dest, f := range want {
					got, err := os.ReadFile(filepath.Join(r.rootDir, dest))
					if err != nil || !bytes.Equal(got, []byte(f.content)) {
						t.Fatalf("reboot %d: %s = %q, %v", i, dest, got, err)
					}
					if st, _ := os.Stat(filepath.Join(r.rootDir, dest)); st.Mode().Perm() != f.mode {
						t.Fatalf("reboot %d: %s mode %v, want %v", i, dest, st.Mode().Perm(), f.mode)
					}
				}
			}
			var meta struct {
				Current *struct {
					Version int64 `json:"version"`
				} `json:"current"`
			}
			mustJSON(t, mustRun(t, d.env, "berthctl", "bundles", "get", first.NodeID, "-o", "json"), &meta)
			if meta.Current == nil || meta.Current.Version != info.Version {
				t.Fatalf("bundles get = %+v", meta)
			}
			serverBytes(t, d, marker)
		})
	}
}

// serverBytes fails if the marker is in anything the servers stored: every
// file of the SQLite data directory, or a pg_dump of the database.
func serverBytes(t *testing.T, d deployment, marker string) {
	t.Helper()
	var dump []byte
	switch {
	case d.dataDir != "":
		filepath.WalkDir(d.dataDir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() && !strings.Contains(p, string(filepath.Separator)+"agent"+string(filepath.Separator)) {
				b, _ := os.ReadFile(p)
				dump = append(dump, b...)
			}
			return nil
		})
		if !bytes.Contains(dump, []byte("SQLite format 3")) {
			t.Fatal("read no SQLite database from the data directory")
		}
	case d.dsn != "":
		out, err := exec.Command(pgDump(t), "--dbname", d.dsn, "--data-only").CombinedOutput()
		if err != nil {
			t.Fatalf("pg_dump: %v: %s", err, out)
		}
		if !bytes.Contains(out, []byte("bundle_versions")) {
			t.Fatalf("pg_dump did not dump the bundle tables:\n%s", out)
		}
		dump = out
	}
	if bytes.Contains(dump, []byte(marker)) {
		t.Fatal("the servers stored the bundle's plaintext")
	}
}

func pgDump(t testing.TB) string {
	if p, err := exec.LookPath("pg_dump"); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
	if len(matches) == 0 {
		t.Fatal("pg_dump not found")
	}
	return matches[len(matches)-1]
}
