package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/pki"
)

// pkiCommand groups what berthd tells about credentials on disk.
func pkiCommand(e env) *cobra.Command {
	cmd := &cobra.Command{Use: "pki", Short: "Show which berth credentials a host or container holds",
		Long: "Show the berth credentials on disk.", Args: cobra.ArbitraryArgs}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmdline.Usagef(cmd, "name a command: inspect")
		}
		return cmdline.Usagef(cmd, "unknown command %q (one of: inspect)", args[0])
	}
	cmdline.Add(cmd, inspectCommand(e))
	return cmd
}

func inspectCommand(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect [PATH...]",
		Short: "List the private keys and berth certificates readable under PATH",
		Long: "List every private key and berth certificate readable under each PATH (default /,\n" +
			"without /proc, /sys and /dev), and what each key is the key of: a service, the\n" +
			"admin, a node, the intermediate or the root CA. Run inside a container\n" +
			"(docker compose exec SERVICE berthd pki inspect) it shows what that service\n" +
			"could get hold of; berth's image has no shell to look with.",
		Args: cobra.ArbitraryArgs,
	}
	asJSON := cmd.Flags().Bool("json", false, "print a JSON array instead of a table")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := e.load(cmd, ""); err != nil {
			return err
		}
		if len(args) == 0 {
			args = []string{"/"}
		}
		found, err := pki.Inspect(args)
		if err != nil {
			return err
		}
		if *asJSON {
			if found == nil {
				found = []pki.Found{}
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(found)
		}
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "PATH\tKIND\tWHAT")
		for _, f := range found {
			fmt.Fprintf(w, "%s\t%s\t%s\n", f.Path, f.Kind, what(f))
		}
		return w.Flush()
	}
	return cmd
}

// what describes a finding in a few words.
func what(f pki.Found) string {
	switch {
	case f.Kind == pki.FoundUnreadable:
		return f.Error
	case f.Error != "":
		return f.Error
	case f.Kind == pki.FoundPrivateKey && !f.Matched:
		return "key of no certificate found"
	}
	s := f.Identity
	if f.CA != "" {
		s = f.CA + " CA " + f.Subject
	}
	if f.Kind == pki.FoundPrivateKey {
		return "key of " + s
	}
	return s
}
