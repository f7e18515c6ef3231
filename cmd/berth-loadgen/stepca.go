package main

import (
	"cmp"
	"io"
	"net"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/loadgen"
)

func stepCAInitCommand(o *options, env config.Env, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "stepca-init", Short: "Write a throwaway step-ca for stepca-sign",
		Long: "Write into --stepca-dir a throwaway step-ca: a fresh root and intermediate,\n" +
			"a JWK provisioner, and ca.json listening on --stepca-listen with its badger\n" +
			"database in DIR/db. Start it with step-ca DIR/ca.json, then run stepca-sign\n" +
			"--stepca-dir DIR.", Args: cmdline.NoArgs}
	fs := cmd.Flags()
	fs.StringVar(&o.dir, "stepca-dir", "", "`dir` to write the step-ca's files to (required)")
	fs.StringVar(&o.listen, "stepca-listen", "", "`host:port` step-ca listens on and its certificate names (required)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if _, err := o.prepare(cmd, env, stderr); err != nil {
			return err
		}
		if o.dir == "" || o.listen == "" {
			return cmdline.Usagef(cmd, "--stepca-dir and --stepca-listen are required")
		}
		if host, port, err := net.SplitHostPort(o.listen); err != nil || host == "" || port == "" {
			return cmdline.Usagef(cmd, "--stepca-listen %q: want HOST:PORT", o.listen)
		}
		return loadgen.StepCAInit(o.dir, o.listen)
	}
	return cmd
}

func stepCASignCommand(o *options, env config.Env, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "stepca-sign", Short: "N fresh keys ask step-ca for a certificate at once",
		Long: "N fresh keys, each with its CSR, ask the step-ca of --stepca-dir (stepca-init) for\n" +
			"a certificate at once (POST /1.0/sign), each with a fresh one-time token and a\n" +
			"fresh TLS connection, --concurrency in flight: the yardstick of register.", Args: cmdline.NoArgs}
	fs := cmd.Flags()
	fs.StringVar(&o.dir, "stepca-dir", "", "`dir` stepca-init wrote (required)")
	fs.IntVar(&o.nodes, "nodes", 0, "number of signs `N` (required)")
	fs.IntVar(&o.concurrency, "concurrency", loadgen.DefaultConcurrency, "signs in flight at most")
	fs.StringVar(&o.serverPIDs, "server-pids", "", "step-ca's `PID` (NAME=PID), whose CPU and memory to report")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := o.prepare(cmd, env, stderr)
		if err != nil {
			return err
		}
		procs, err := loadgen.ParseProcs(o.serverPIDs)
		if err != nil {
			return cmdline.Usagef(cmd, "%s", err)
		}
		if o.dir == "" || o.nodes == 0 {
			return cmdline.Usagef(cmd, "--stepca-dir and --nodes N are required")
		}
		if err := cmp.Or(positive(cmd, "nodes", o.nodes), positive(cmd, "concurrency", o.concurrency)); err != nil {
			return err
		}
		res, err := loadgen.StepCASign(cmd.Context(), loadgen.StepCASignConfig{
			Dir: o.dir, Nodes: o.nodes, Concurrency: o.concurrency, ServerProcs: procs, Log: log,
		})
		if err != nil {
			return err
		}
		return write(stdout, o.output, res, func() error { return loadgen.WriteText(stdout, res) })
	}
	return cmd
}
