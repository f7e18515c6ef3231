package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/pki"
)

func TestProvisionKeepsSeedAndPinsCA(t *testing.T) {
	dir := t.TempDir()
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, "node")
	if err := os.Mkdir(node, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"--pki-dir", layout.Dir, "--node-dir", node, "--server", "registration:8443"}
	env := func(string) string { return "" }
	var out bytes.Buffer
	if err := run(args, env, &out, &out); err != nil {
		t.Fatalf("first run: %v\n%s", err, out.String())
	}
	seed, err := os.ReadFile(filepath.Join(node, "seed"))
	if err != nil || len(seed) != seedSize {
		t.Fatalf("seed: %d bytes, %v", len(seed), err)
	}
	if fi, _ := os.Stat(filepath.Join(node, "seed")); fi.Mode().Perm() != 0o600 {
		t.Errorf("seed mode %v, want 0600", fi.Mode().Perm())
	}
	cmdline, err := os.ReadFile(filepath.Join(node, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	want := "berth.server=registration:8443 berth.ca_hash=" + layout.CAHash()
	if strings.TrimSpace(string(cmdline)) != want {
		t.Errorf("cmdline %q, want %q", cmdline, want)
	}
	out.Reset()
	if err := run(args, env, &out, &out); err != nil {
		t.Fatalf("second run: %v", err)
	}
	again, _ := os.ReadFile(filepath.Join(node, "seed"))
	if !bytes.Equal(seed, again) {
		t.Error("the second run replaced the seed")
	}
	if !strings.Contains(out.String(), "kept the existing seed") {
		t.Errorf("second run said %q", out.String())
	}
}

func TestProvisionRefusesShortSeed(t *testing.T) {
	dir := t.TempDir()
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "seed"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = run([]string{"--pki-dir", layout.Dir, "--node-dir", dir}, func(string) string { return "" }, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "holds 5 bytes") {
		t.Fatalf("err = %v", err)
	}
}
