package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/cmdline"
	"github.com/berth-dev/berth/internal/config"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// localOptions are the settings of the verbs that call a running agent's
// local API.
type localOptions struct {
	socket  string
	timeout time.Duration
}

func (lo *localOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&lo.socket, "socket", agent.DefaultSocket, "the running agent's local API `socket`")
	fs.DurationVar(&lo.timeout, "timeout", 10*time.Second, "how long to wait for the agent's answer")
}

// call runs f against the local API, with settings from the environment
// too.
func (lo *localOptions) call(cmd *cobra.Command, env config.Env, f func(context.Context, berthv1.AgentServiceClient) error) error {
	if _, err := config.Load(cmd.Flags(), env, ""); err != nil {
		return agent.ConfigError(err)
	}
	c, closeConn, err := agent.DialLocal(lo.socket)
	if err != nil {
		return agent.ConfigError(err)
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(cmd.Context(), lo.timeout)
	defer cancel()
	if err := f(ctx, c); err != nil {
		if st, ok := status.FromError(err); ok {
			return fmt.Errorf("agent at %s: %s (%s)", lo.socket, st.Message(), st.Code())
		}
		return fmt.Errorf("agent at %s: %w", lo.socket, err)
	}
	return nil
}

// localCommands are the verbs of the local API: report set|unset|event
// and status.
func localCommands(env config.Env, stdout io.Writer) []*cobra.Command {
	report := &cobra.Command{
		Use:   "report",
		Short: "Report this node's status or events through the running agent",
		Args:  cmdline.NoArgs,
	}
	var setOpts, unsetOpts, eventOpts, statusOpts localOptions
	set := &cobra.Command{
		Use:   "set KEY=VALUE...",
		Short: "Set keys of the node's reported status; sent to the server at once",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kv := map[string]string{}
			for _, a := range args {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					return cmdline.Usagef(cmd, "%q is not KEY=VALUE", a)
				}
				kv[k] = v
			}
			return setOpts.call(cmd, env, func(ctx context.Context, c berthv1.AgentServiceClient) error {
				_, err := c.UpdateReported(ctx, &berthv1.UpdateReportedRequest{Set: kv})
				return err
			})
		},
	}
	setOpts.addFlags(set.Flags())
	unset := &cobra.Command{
		Use:   "unset KEY...",
		Short: "Remove keys from the node's reported status",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return unsetOpts.call(cmd, env, func(ctx context.Context, c berthv1.AgentServiceClient) error {
				_, err := c.UpdateReported(ctx, &berthv1.UpdateReportedRequest{Unset: args})
				return err
			})
		},
	}
	unsetOpts.addFlags(unset.Flags())
	var typ, severity string
	event := &cobra.Command{
		Use:   "event --type TYPE [--severity info|warning|critical] MESSAGE",
		Short: "Report a node event; queued while the server is unreachable, delivered once and in order",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sev, err := agent.ParseSeverity(severity)
			if err != nil {
				return cmdline.Usagef(cmd, "--severity: %v", err)
			}
			if typ == "" {
				return cmdline.Usagef(cmd, "--type is required")
			}
			return eventOpts.call(cmd, env, func(ctx context.Context, c berthv1.AgentServiceClient) error {
				_, err := c.ReportEvent(ctx, &berthv1.ReportEventRequest{Type: typ, Severity: sev, Message: args[0]})
				return err
			})
		},
	}
	event.Flags().StringVar(&typ, "type", "", "event `type`: 1 to 64 of a-z, 0-9, '.', '_', '-' (mce, vm.state, disk.failed)")
	event.Flags().StringVar(&severity, "severity", "info", "`severity`: info, warning or critical")
	config.NoEnv(event.Flags())
	eventOpts.addFlags(event.Flags())
	cmdline.Add(report, set, unset, event)

	var output string
	st := &cobra.Command{
		Use:   "status",
		Short: "Show what the running agent knows of this node",
		Args:  cmdline.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := agent.ParseOutput(output)
			if err != nil {
				return cmdline.Usagef(cmd, "--output: %v", err)
			}
			return statusOpts.call(cmd, env, func(ctx context.Context, c berthv1.AgentServiceClient) error {
				r, err := c.GetAgentStatus(ctx, &berthv1.GetAgentStatusRequest{})
				if err != nil {
					return err
				}
				return writeStatus(stdout, out, r)
			})
		},
	}
	st.Flags().StringVarP(&output, "output", "o", "text", "output `format`: text or json")
	config.NoEnv(st.Flags())
	statusOpts.addFlags(st.Flags())
	return []*cobra.Command{report, st}
}

// agentStatus is `berth-agent status -o json`; its field names are a
// contract.
type agentStatus struct {
	NodeID            string            `json:"node_id"`
	IdentitySource    string            `json:"identity_source"`
	CertSerial        string            `json:"cert_serial"`
	CertNotAfter      string            `json:"cert_not_after,omitempty"`
	BundleVersion     int64             `json:"bundle_version"`
	BundleAppliedAt   string            `json:"bundle_applied_at,omitempty"`
	Connection        string            `json:"connection"`
	LastHeartbeat     string            `json:"last_heartbeat,omitempty"`
	HeartbeatInterval float64           `json:"heartbeat_interval,omitempty"`
	Reported          map[string]string `json:"reported"`
	EventsQueued      uint32            `json:"events_queued"`
	EventsDropped     uint64            `json:"events_dropped"`
}

func rfc3339(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func writeStatus(w io.Writer, out agent.Output, r *berthv1.GetAgentStatusResponse) error {
	s := agentStatus{
		NodeID: r.GetNodeId(), IdentitySource: r.GetIdentitySource(), CertSerial: r.GetCertSerial(),
		CertNotAfter: rfc3339(r.GetCertNotAfter()), BundleVersion: r.GetBundleVersion(),
		BundleAppliedAt: rfc3339(r.GetBundleAppliedAt()), Connection: r.GetConnection(),
		LastHeartbeat: rfc3339(r.GetLastHeartbeat()), HeartbeatInterval: r.GetHeartbeatInterval().AsDuration().Seconds(),
		Reported: r.GetReported(), EventsQueued: r.GetEventsQueued(), EventsDropped: r.GetEventsDropped(),
	}
	if s.Reported == nil {
		s.Reported = map[string]string{}
	}
	if r.GetHeartbeatInterval() == nil {
		s.HeartbeatInterval = 0
	}
	if out == agent.OutputJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	tw := func(k, v string) { fmt.Fprintf(w, "%-19s %s\n", k+":", v) }
	tw("node", s.NodeID)
	tw("identity source", s.IdentitySource)
	tw("certificate", s.CertSerial+" valid until "+s.CertNotAfter)
	tw("bundle version", fmt.Sprintf("%d (applied %s)", s.BundleVersion, s.BundleAppliedAt))
	tw("connection", s.Connection)
	tw("last heartbeat", s.LastHeartbeat)
	tw("events", fmt.Sprintf("%d queued, %d dropped", s.EventsQueued, s.EventsDropped))
	for _, k := range slices.Sorted(maps.Keys(s.Reported)) {
		tw("reported "+k, s.Reported[k])
	}
	return nil
}
