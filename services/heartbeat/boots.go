package heartbeat

import (
	"context"
	"math"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// maxBootRecords bounds one RecordBoots call: a second of a storm's boots
// at the registration service's batch size.
const maxBootRecords = 10_000

// Validation rules of RecordBoots.
const (
	ruleBootRecords = "must hold at most 10000 boots"
	ruleAge         = "must be a valid, non-negative duration"
)

// boots serves HeartbeatBootService: the boots the registration service
// served, each the first beat of its node's boot.
type boots struct {
	berthv1.UnsafeHeartbeatBootServiceServer
	s *Service
}

// RecordBoots records the boots as beats. Revocations are checked from
// memory as for a stream: while their state is unknown a call with boots
// is Unavailable, and registration sends the boots again. A call without
// boots, the sender learning the interval (as it does at once when it
// starts, which in berthd dev is before this service has loaded its
// revocations), concerns no node and is answered.
func (b boots) RecordBoots(ctx context.Context, req *berthv1.RecordBootsRequest) (*berthv1.RecordBootsResponse, error) {
	s := b.s
	log := rpc.Logger(ctx, s.log)
	in, err := validateBoots(req)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	if err := s.revocationsReady(); err != nil && len(in) > 0 {
		return nil, errorTable.Status(ctx, log, err)
	}
	res, err := s.core.RecordBoots(ctx, in)
	if err != nil {
		return nil, errorTable.Status(ctx, log, err)
	}
	return &berthv1.RecordBootsResponse{Recorded: int32(res.Recorded), Skipped: int32(res.Skipped),
		Interval: durationpb.New(res.Interval)}, nil
}

// validateBoots checks every boot as validateBeat checks a beat.
func validateBoots(req *berthv1.RecordBootsRequest) ([]liveness.Boot, error) {
	if len(req.GetBoots()) > maxBootRecords {
		return nil, rpcerr.Invalid("boots", ruleBootRecords)
	}
	out := make([]liveness.Boot, len(req.GetBoots()))
	for i, r := range req.GetBoots() {
		if err := validateNodeID("boots.node_id", r.GetNodeId()); err != nil {
			return nil, err
		}
		if seq := r.GetSequence(); seq == 0 || seq > math.MaxInt64 {
			return nil, rpcerr.Invalid("boots.sequence", ruleSequence)
		}
		if !ident.BootID(r.GetBootId()) {
			return nil, rpcerr.Invalid("boots.boot_id", ruleBootID)
		}
		st, ok := statusFromProto(r.GetStatus())
		if !ok {
			return nil, rpcerr.Invalid("boots.status", ruleStatus)
		}
		b := liveness.Boot{NodeID: r.GetNodeId(), BootID: r.GetBootId(), Sequence: int64(r.GetSequence()), Status: st}
		if r.GetUptime() != nil {
			up, err := durationOf(r.GetUptime())
			if err != nil || up > maxUptime {
				return nil, rpcerr.Invalid("boots.uptime", ruleUptime)
			}
			b.Uptime = up
		}
		if r.GetAge() != nil {
			age, err := durationOf(r.GetAge())
			if err != nil {
				return nil, rpcerr.Invalid("boots.age", ruleAge)
			}
			b.Age = age
		}
		out[i] = b
	}
	return out, nil
}
