package main

import (
	"context"
	"fmt"
	"io"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/pki"
)

func runInit(ctx context.Context, args []string, env config.Env, stdout, stderr io.Writer) error {
	fs := newFlagSet("init", stderr)
	dir := fs.String("dir", "", "directory to write the PKI into (required)")
	td := fs.String("trust-domain", "", "trust domain of every berth identity (default berth.local)")
	var sans stringList
	fs.Var(&sans, "san", "extra DNS name or IP of the service certificates (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := config.Apply(fs, env, ""); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: --dir is required", errUsage)
	}
	layout, err := pki.Init(ctx, pki.InitConfig{Dir: *dir, TrustDomain: *td, SANs: sans})
	if err != nil {
		return err
	}
	if layout.Existing {
		fmt.Fprintf(stdout, "PKI already present in %s; kept it unchanged.\n", layout.Dir)
	} else {
		fmt.Fprintf(stdout, "Created the PKI of trust domain %s in %s.\n", layout.TrustDomain, layout.Dir)
	}
	fmt.Fprintf(stdout, "CA hash (berth-agent --ca-hash, berth.ca_hash=): %s\n", layout.CAHash())
	fmt.Fprintf(stdout, "Admin credentials for berthctl:\n  BERTH_CA=%s\n  BERTH_CERT=%s\n  BERTH_KEY=%s\n",
		layout.RootPath(), layout.AdminCertPath(), layout.AdminKeyPath())
	return nil
}
