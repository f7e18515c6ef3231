package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/cmdline"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// healthUnknown is the health of a node whose liveness berthctl cannot see:
// it never sent a beat, or the heartbeat service could not be asked.
const healthUnknown = "unknown"

// healthTimeout bounds the health lookups of one command, so that a
// heartbeat service that does not answer delays node output only briefly.
const healthTimeout = 10 * time.Second

// healthState is a node's liveness as the "health" JSON field and the
// HEALTH column show it: healthy, suspect, unreachable or unknown (nil h).
func healthState(h *berthv1.NodeHealth) string {
	switch h.GetState() {
	case berthv1.LivenessState_LIVENESS_STATE_HEALTHY:
		return "healthy"
	case berthv1.LivenessState_LIVENESS_STATE_SUSPECT:
		return "suspect"
	case berthv1.LivenessState_LIVENESS_STATE_UNREACHABLE:
		return "unreachable"
	}
	return healthUnknown
}

// reportedStatus is the status a node's agent last reported: up, degraded,
// maintenance, or empty if unknown.
func reportedStatus(h *berthv1.NodeHealth) string {
	switch h.GetStatus() {
	case berthv1.ReportedStatus_REPORTED_STATUS_UP:
		return "up"
	case berthv1.ReportedStatus_REPORTED_STATUS_DEGRADED:
		return "degraded"
	case berthv1.ReportedStatus_REPORTED_STATUS_MAINTENANCE:
		return "maintenance"
	}
	return ""
}

// nodeHealth asks the heartbeat service for one node's health. Node admin
// does not depend on the heartbeat service: when it cannot answer, the
// node's health is unknown and a warning says why. A node that never beat
// (NotFound) is unknown without a warning.
func (s *session) nodeHealth(ctx context.Context, id string) *berthv1.NodeHealth {
	c, err := s.heartbeatAdmin()
	if err != nil {
		s.healthWarning(err)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	resp, err := c.GetNodeHealth(ctx, &berthv1.GetNodeHealthRequest{NodeId: id})
	switch {
	case status.Code(err) == codes.NotFound:
		return nil
	case err != nil:
		s.healthWarning(err)
		return nil
	}
	return resp.GetHealth()
}

// listHealth fetches the health of nodes with one ListNodeHealth call per
// page of nodes (following the heartbeat service's own pages, should it
// split one). Nodes missing from the answer never beat. If the heartbeat
// service fails, what was fetched is kept and a warning says why.
func (s *session) listHealth(ctx context.Context, nodes []*berthv1.Node) map[string]*berthv1.NodeHealth {
	out := map[string]*berthv1.NodeHealth{}
	if len(nodes) == 0 {
		return out
	}
	c, err := s.heartbeatAdmin()
	if err != nil {
		s.healthWarning(err)
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	for start := 0; start < len(nodes); start += listPageSize {
		page := nodes[start:min(start+listPageSize, len(nodes))]
		ids := make([]string, len(page))
		for i, n := range page {
			ids[i] = n.GetId()
		}
		if err := listHealthPage(ctx, c, ids, out); err != nil {
			s.healthWarning(err)
			return out
		}
	}
	return out
}

// listHealthPage fetches the health of ids into out.
func listHealthPage(ctx context.Context, c berthv1.HeartbeatAdminServiceClient, ids []string, out map[string]*berthv1.NodeHealth) error {
	req := &berthv1.ListNodeHealthRequest{NodeIds: ids, PageSize: int32(len(ids))}
	seen := map[string]bool{}
	for {
		resp, err := c.ListNodeHealth(ctx, req)
		if err != nil {
			return err
		}
		for _, h := range resp.GetNodes() {
			out[h.GetNodeId()] = h
		}
		next := resp.GetNextPageToken()
		if next == "" {
			return nil
		}
		if seen[next] {
			return errPageLoop
		}
		seen[next] = true
		req.PageToken = next
	}
}

// healthWarning prints, once per command, why health is shown as unknown.
func (s *session) healthWarning(err error) {
	if s.warnedHealth {
		return
	}
	s.warnedHealth = true
	switch ue, usage := cmdline.AsUsage(err); {
	case usage:
		err = errors.New(ue.Msg)
	case errors.Is(err, errPageLoop):
		err = fmt.Errorf("node health: heartbeat service at %s: %w", s.set.heartbeatServer, err)
	case status.Code(err) == codes.DeadlineExceeded:
		err = fmt.Errorf("node health: no answer from %s", s.set.heartbeatServer)
	default:
		if _, ok := status.FromError(err); ok {
			err = s.heartbeatCallError("node health", err)
		}
	}
	fmt.Fprintf(s.cfg.Stderr, "berthctl: warning: health shown as unknown: %s\n", oneLine(err.Error()))
}
