package main

import (
	"cmp"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/loadgen"
)

// floorCommand is grpc-floor, boot-floor, register-floor or stream-floor. Its flags have variables of
// their own: a variable shared with another command would take the
// default of whichever command defined the flag last.
func floorCommand(name string, o *options, env config.Env, stdout, stderr io.Writer) *cobra.Command {
	var (
		c       loadgen.FloorConfig
		measure func(*cobra.Command) (*loadgen.FloorResult, error)
	)
	cmd := &cobra.Command{Args: cmdline.NoArgs}
	fs := cmd.Flags()
	switch name {
	case loadgen.ScenarioGRPCFloor, loadgen.ScenarioBootFloor, loadgen.ScenarioRegisterFloor:
		run := loadgen.GRPCFloor
		switch name {
		case loadgen.ScenarioGRPCFloor:
			cmd.Use, cmd.Short = name, "Fresh mutual-TLS connections, one empty call each, against a bare gRPC server"
			cmd.Long = "Measure operations of a fresh mutual-TLS connection and one empty unary call\n" +
				"(grpc.health.v1.Health/Check) against a bare server process built with\n" +
				"berthd's own server options, --concurrency in flight: the most any call on a\n" +
				"fresh connection (Resume) can reach here, and the server's CPU per operation."
		case loadgen.ScenarioRegisterFloor:
			run = loadgen.RegisterFloor
			cmd.Use, cmd.Short = name, "A node's least first registration each, against a bare server signing from memory"
			cmd.Long = "Measure first registrations as grpc-floor measures its calls, each what a node's\n" +
				"first registration cannot do without: a fresh self-signed certificate of its key\n" +
				"and a CSR for it, a fresh mutual-TLS connection pinning the root, one Register\n" +
				"that the server answers by signing the CSR with the CA's key (the CSR's\n" +
				"signature and the policy checked, the key matched to the handshake's), and the\n" +
				"node's check that the certificate is for its key. No token, store, intent or\n" +
				"CA hop: the most a first registration can reach here, against step-ca's /sign."
		default:
			run = loadgen.BootFloor
			cmd.Use, cmd.Short = name, "A node's least boot each, against a bare server answering Resume from memory"
			cmd.Long = "Measure boots as grpc-floor measures its calls, each what a booting node cannot\n" +
				"do without: a fresh self-signed certificate of its key, a fresh mutual-TLS\n" +
				"connection pinning the root, one Resume answered from memory with the node's\n" +
				"chain and its sealed bundle, and the checks of that answer no node may skip\n" +
				"(the certificate is for its key; the bundle is signed by an admin for this\n" +
				"node and opens with its key). No store, no server checks, no files written:\n" +
				"the most a storm's boot can reach here, and the server's CPU per boot."
		}
		fs.DurationVar(&c.Duration, "duration", loadgen.DefaultCeilingDuration, "how long to measure")
		measure = func(cmd *cobra.Command) (*loadgen.FloorResult, error) {
			if err := cmp.Or(positive(cmd, "duration", c.Duration), positive(cmd, "concurrency", c.Concurrency)); err != nil {
				return nil, err
			}
			return run(cmd.Context(), c)
		}
	case loadgen.ScenarioStreamFloor:
		cmd.Use, cmd.Short = name, "Connections holding one stream each, echoing a heartbeat's message"
		cmd.Long = "Hold --nodes connections, each with one bidi stream to a bare echo server built\n" +
			"with berthd's own server options, and send a heartbeat's message on each every\n" +
			"--interval for --duration: the server's CPU per message and its memory per\n" +
			"connection, the least a connected node's heartbeat can cost."
		fs.IntVar(&c.Conns, "nodes", 0, "connections `N` to hold (required)")
		fs.DurationVar(&c.Interval, "interval", loadgen.DefaultFloorInterval, "between one connection's messages")
		fs.DurationVar(&c.Duration, "duration", loadgen.DefaultHeartbeatDuration, "how long the connections send")
		measure = func(cmd *cobra.Command) (*loadgen.FloorResult, error) {
			if c.Conns == 0 {
				return nil, cmdline.Usagef(cmd, "--nodes N is required")
			}
			if err := cmp.Or(positive(cmd, "nodes", c.Conns), positive(cmd, "interval", c.Interval),
				positive(cmd, "duration", c.Duration), positive(cmd, "concurrency", c.Concurrency)); err != nil {
				return nil, err
			}
			return loadgen.StreamFloor(cmd.Context(), c)
		}
	}
	cmd.Long += " See berth-loadgen -h."
	fs.StringVar(&c.ProfileDir, "profile-dir", "", "`dir` for the server's CPU profile over the window, whose split the result reports")
	fs.IntVar(&c.Concurrency, "concurrency", loadgen.DefaultConcurrency, "calls, boots or registrations in flight (grpc-floor, boot-floor, register-floor) or connections opening at once (stream-floor)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := o.prepare(cmd, env, stderr)
		if err != nil {
			return err
		}
		c.TempDir, c.Log = o.tmpDir, log
		res, err := measure(cmd)
		if err != nil {
			return err
		}
		return write(stdout, o.output, res, func() error { return loadgen.WriteFloorText(stdout, res) })
	}
	return cmd
}

// positive refuses a count or a duration below 1 of flag name, which
// the measurement would otherwise replace with its default (or make
// meaningless) without a word.
func positive[T int | time.Duration](cmd *cobra.Command, name string, v T) error {
	if v > 0 {
		return nil
	}
	return cmdline.Usagef(cmd, "--%s %v: want more than 0", name, v)
}
