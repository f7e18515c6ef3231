package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/pki"
)

func initCommand(e env) *cobra.Command {
	cmd := subcommand("init", "Create the PKI: root, intermediate, and one directory of credentials per role",
		"Create berth's PKI in --dir: a root and an intermediate CA, and one directory per\n"+
			"role (ca, registration, bundles, heartbeat, api, admin) holding only that role's\n"+
			"certificate and key, the trust bundle and the trust domain. The root key is\n"+
			"written to DIR/root/root.key: move it offline. A complete PKI already there is\n"+
			"kept unchanged (missing role directories are issued again), and one of the old\n"+
			"single-directory layout is moved into role directories, so running init again\n"+
			"is safe.")
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
		printInit(e.stdout, layout)
		return nil
	}
	return cmd
}

// roleUses says what each role directory is for, in init's output.
var roleUses = map[string]string{
	pki.ServiceCA:           "the CA service; its intermediate CA signs node certificates",
	pki.ServiceRegistration: "the registration service",
	pki.ServiceBundles:      "the bundle store",
	pki.ServiceHeartbeat:    "the heartbeat service",
	pki.ServiceAPI:          "the front door (admin API)",
	pki.RoleAdmin:           "berthctl's admin credential",
}

func printInit(w io.Writer, l *pki.Layout) {
	switch {
	case l.Migrated:
		fmt.Fprintf(w, "Moved the PKI in %s from the old single-directory layout into one directory per role;\n"+
			"every key, certificate and the CA hash are unchanged. Point each service's --pki-dir at its own directory.\n", l.Dir)
	case l.Existing:
		fmt.Fprintf(w, "PKI already present in %s; kept it unchanged.\n", l.Dir)
		if len(l.Added) > 0 {
			fmt.Fprintf(w, "Issued the missing role directories with the intermediate: %s.\n", strings.Join(l.Added, ", "))
		}
	default:
		fmt.Fprintf(w, "Created the PKI of trust domain %s in %s.\n", l.TrustDomain, l.Dir)
	}
	if !l.Existing || l.Migrated || len(l.Added) > 0 {
		fmt.Fprintln(w, "One directory per role, each holding only what that role needs (--pki-dir of its service):")
		for _, r := range pki.Roles() {
			fmt.Fprintf(w, "  %-*s  %s\n", len(l.Dir)+14, l.RoleDir(r)+string(filepath.Separator), roleUses[r])
		}
	}
	if l.RootKeyOnline {
		fmt.Fprintf(w, "The root key is %s: move it offline now. No service reads it;\n"+
			"only berthd ca rotate-intermediate --root-key FILE needs it again.\n", l.RootKeyPath())
	} else {
		fmt.Fprintf(w, "The root key is not in %s (kept offline).\n", filepath.Dir(l.RootKeyPath()))
	}
	fmt.Fprintf(w, "CA hash (berth-agent --ca-hash, berth.ca_hash=): %s\n", l.CAHash())
	fmt.Fprintf(w, "Admin credentials for berthctl:\n  BERTH_CA=%s\n  BERTH_CERT=%s\n  BERTH_KEY=%s\n",
		l.AdminCAPath(), l.AdminCertPath(), l.AdminKeyPath())
}
