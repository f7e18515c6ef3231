package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/pki"
)

func initCommand(e env) *cobra.Command {
	cmd := subcommand("init", "Create the PKI: root, intermediate, service and admin certificates",
		"Create berth's PKI in --dir: a root and an intermediate CA, one certificate per\n"+
			"service and an admin certificate for berthctl. A complete PKI already there is\n"+
			"kept unchanged, so running init again is safe.")
	fs := cmd.Flags()
	dir := fs.String("dir", "", "directory to write the PKI into (required)")
	td := fs.String("trust-domain", "", "trust domain of every berth identity (default berth.local)")
	var sans stringList
	fs.Var(&sans, "san", "extra DNS name or IP of the service certificates (repeatable, or comma-separated)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := e.load(cmd, ""); err != nil {
			return err
		}
		if *dir == "" {
			return cmdline.Usagef(cmd, "--dir is required")
		}
		layout, err := pki.Init(cmd.Context(), pki.InitConfig{Dir: *dir, TrustDomain: *td, SANs: sans})
		if err != nil {
			return err
		}
		w := e.stdout
		if layout.Existing {
			fmt.Fprintf(w, "PKI already present in %s; kept it unchanged.\n", layout.Dir)
		} else {
			fmt.Fprintf(w, "Created the PKI of trust domain %s in %s.\n", layout.TrustDomain, layout.Dir)
		}
		fmt.Fprintf(w, "CA hash (berth-agent --ca-hash, berth.ca_hash=): %s\n", layout.CAHash())
		fmt.Fprintf(w, "Admin credentials for berthctl:\n  BERTH_CA=%s\n  BERTH_CERT=%s\n  BERTH_KEY=%s\n",
			layout.RootPath(), layout.AdminCertPath(), layout.AdminKeyPath())
		return nil
	}
	return cmd
}
