package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/console"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// devCommand initialises a PKI on first run and serves every role from one
// process on SQLite, then prints what berthctl and an agent need.
func devCommand(e env) *cobra.Command {
	cmd := subcommand("dev", "Run every service in one process on embedded SQLite",
		"Run every service in one process on embedded SQLite, creating the PKI in\n"+
			"--data-dir on first run. Writes DIR/env (export BERTH_...=... lines for\n"+
			"berthctl and the agent) and prints it with an agent command ready to paste.")
	fs := cmd.Flags()
	dataDir := fs.String("data-dir", "berth-dev", "directory for the PKI, the SQLite databases and the env file")
	td := fs.String("trust-domain", "", "trust domain, on first run (default berth.local)")
	var sans stringList
	fs.Var(&sans, "san", "extra DNS name or IP of the service certificates, on first run (repeatable, or comma-separated)")
	c := daemon.Config{Role: daemon.RoleAll}
	resolve := serveFlags(fs, &c, "127.0.0.1:8443")
	logger := logFlags(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := e.load(cmd, ""); err != nil {
			return err
		}
		if err := resolve(); err != nil {
			return cmdline.Usagef(cmd, "%v", err)
		}
		log, err := logger(cmd, e.stderr)
		if err != nil {
			return err
		}
		return runDev(cmd.Context(), c, *dataDir, pki.InitConfig{TrustDomain: *td, SANs: sans}, log, e.stdout)
	}
	return cmd
}

func runDev(ctx context.Context, c daemon.Config, dataDir string, init pki.InitConfig, log *slog.Logger, stdout io.Writer) error {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	init.Dir = filepath.Join(dir, "pki")
	layout, err := pki.Init(ctx, init)
	if err != nil {
		return err
	}
	c.PKIDir, c.DataDir, c.Logger = layout.Dir, dir, log
	ready := make(chan string, 1)
	c.Ready = func(addr string) { ready <- addr }
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, c) }()
	select {
	case err := <-done:
		return err
	case addr := <-ready:
		if err := announce(ctx, dir, addr, layout, stdout); err != nil {
			log.Error("berthd dev could not prepare the demo environment", "error", err)
		}
	}
	return <-done
}

// announce writes DIR/env, makes a fresh bootstrap token and prints both,
// with an agent command ready to paste.
func announce(ctx context.Context, dir, addr string, layout *pki.Layout, stdout io.Writer) error {
	envLines := []string{
		"export BERTH_SERVER=" + shellQuote(addr),
		"export BERTH_CA=" + shellQuote(layout.AdminCAPath()),
		"export BERTH_CERT=" + shellQuote(layout.AdminCertPath()),
		"export BERTH_KEY=" + shellQuote(layout.AdminKeyPath()),
		"export BERTH_CA_HASH=" + shellQuote(layout.CAHash()),
	}
	// Written aside and renamed, so that a script waiting for the file
	// (tests, make bench) never reads it half written.
	envFile := filepath.Join(dir, "env")
	if err := os.WriteFile(envFile+".new", []byte(strings.Join(envLines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", envFile, err)
	}
	if err := os.Rename(envFile+".new", envFile); err != nil {
		return fmt.Errorf("write %s: %w", envFile, err)
	}
	token, link, err := devToken(ctx, addr, layout)
	if err != nil {
		return err
	}
	agentDir := filepath.Join(dir, "agent")
	seed, err := keepRandomFile(filepath.Join(agentDir, "seed"), 32, hex.EncodeToString)
	if err != nil {
		return err
	}
	uuidFile, err := keepRandomFile(filepath.Join(agentDir, "hardware-uuid"), 16, formatUUID)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `berth dev is serving on %s (all services, SQLite in %s).

berthctl environment (also in %s):
  %s

A demo node agent (bootstrap token valid 24h, 10 uses, auto-approve):
  berth-agent --server %s --ca-hash %s \
    --token %s --identity seed --seed-file %s \
    --hardware-uuid %s --cert-dir %s --root %s --once

Web console, signed in as the admin (works once, for %s; more with
berthctl ui link):
  %s

`, addr, dir, envFile, strings.Join(envLines, "\n  "),
		addr, layout.CAHash(), token, seed,
		readTrim(uuidFile), filepath.Join(agentDir, "run"), filepath.Join(agentDir, "root"), console.DefaultLinkTTL, link)
	return nil
}

// devAdmin dials the running server as its admin, over gRPC like any
// client.
func devAdmin(addr string, layout *pki.Layout) (*grpc.ClientConn, error) {
	cert, err := layout.AdminCertificate()
	if err != nil {
		return nil, err
	}
	tlsCfg := mtls.ExpectServer(mtls.ClientConfig(cert, layout.RootPool()), layout.TrustDomain, pki.ServiceRegistration)
	tlsCfg.ServerName, _, _ = net.SplitHostPort(addr)
	return rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: tlsCfg})
}

// devToken asks the running server, as admin, for a fresh auto-approve
// token, and for a one-time sign-in link to the web console.
func devToken(ctx context.Context, addr string, layout *pki.Layout) (token, link string, err error) {
	conn, err := devAdmin(addr, layout)
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := berthv1.NewNodeAdminServiceClient(conn).CreateToken(ctx, &berthv1.CreateTokenRequest{
		TtlSeconds: 24 * 3600, Uses: 10, AutoApprove: true, Description: "berthd dev demo token",
	})
	if err != nil {
		return "", "", fmt.Errorf("create demo token: %w", err)
	}
	l, err := berthv1.NewConsoleAdminServiceClient(conn).CreateSignInLink(ctx, &berthv1.CreateSignInLinkRequest{})
	if err != nil {
		return "", "", fmt.Errorf("create a console sign-in link: %w", err)
	}
	return resp.GetSecretToken(), "https://" + addr + l.GetPath(), nil
}

// keepRandomFile returns path, creating it with n random bytes (formatted)
// on first run so the demo node keeps its identity across dev restarts.
func keepRandomFile(path string, n int, format func([]byte) string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b := make([]byte, n)
	rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(format(b)+"\n"), 0o600)
}

func formatUUID(b []byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:=+@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
