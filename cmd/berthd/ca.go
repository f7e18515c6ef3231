package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/pki"
)

// caCommand groups the operations on the CA that need the root key.
func caCommand(e env) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Operate the CA offline: rotate the intermediate with the root key",
		Long: "Operations on berth's CA that need the root key, which is kept offline.",
		Args: cobra.ArbitraryArgs}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmdline.Usagef(cmd, "name a command: rotate-intermediate")
		}
		return cmdline.Usagef(cmd, "unknown command %q (one of: rotate-intermediate)", args[0])
	}
	cmdline.Add(cmd, rotateCommand(e))
	return cmd
}

func rotateCommand(e env) *cobra.Command {
	cmd := subcommand("rotate-intermediate", "Issue a new intermediate CA under the same root",
		"Issue a new intermediate CA, signed by the root key of --root-key, into the CA\n"+
			"role's directory (--pki-dir: the whole PKI directory or DIR/ca), replacing the\n"+
			"intermediate and its key. The CA service signs with the new one from its next\n"+
			"start. Certificates issued under the old one chain to the same root: they stay\n"+
			"valid until they expire, and nodes keep their CA hash. Take the root key\n"+
			"offline again afterwards.")
	fs := cmd.Flags()
	dir := fs.String("pki-dir", "", "the PKI directory made by berthd init, or its CA role's directory (required)")
	rootKey := fs.String("root-key", "", "the root key, root.key, brought back from where it is kept offline (required)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := e.load(cmd, ""); err != nil {
			return err
		}
		if *dir == "" {
			return cmdline.Usagef(cmd, "--pki-dir is required")
		}
		if *rootKey == "" {
			return cmdline.Usagef(cmd, "--root-key is required")
		}
		r, err := pki.RotateIntermediate(cmd.Context(), *dir, *rootKey, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Issued a new intermediate CA (serial %x, valid until %s) into %s.\n"+
			"Restart the CA service to sign with it. Certificates issued under the old one (serial %x)\n"+
			"chain to the same root and stay valid until they expire. Take %s offline again.\n",
			r.New.SerialNumber, r.New.NotAfter.UTC().Format("2006-01-02"), r.Dir, r.Old.SerialNumber, *rootKey)
		return nil
	}
	return cmd
}
