package heartbeat

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

var statuses = map[heartbeatstore.Status]berthv1.ReportedStatus{
	heartbeatstore.StatusUp:          berthv1.ReportedStatus_REPORTED_STATUS_UP,
	heartbeatstore.StatusDegraded:    berthv1.ReportedStatus_REPORTED_STATUS_DEGRADED,
	heartbeatstore.StatusMaintenance: berthv1.ReportedStatus_REPORTED_STATUS_MAINTENANCE,
}

var states = map[heartbeatstore.State]berthv1.LivenessState{
	heartbeatstore.StateHealthy:     berthv1.LivenessState_LIVENESS_STATE_HEALTHY,
	heartbeatstore.StateSuspect:     berthv1.LivenessState_LIVENESS_STATE_SUSPECT,
	heartbeatstore.StateUnreachable: berthv1.LivenessState_LIVENESS_STATE_UNREACHABLE,
}

var eventTypes = map[heartbeatstore.EventType]berthv1.HealthEventType{
	heartbeatstore.EventHealthy:         berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY,
	heartbeatstore.EventSuspect:         berthv1.HealthEventType_HEALTH_EVENT_TYPE_SUSPECT,
	heartbeatstore.EventUnreachable:     berthv1.HealthEventType_HEALTH_EVENT_TYPE_UNREACHABLE,
	heartbeatstore.EventRebooted:        berthv1.HealthEventType_HEALTH_EVENT_TYPE_REBOOTED,
	heartbeatstore.EventStatusChanged:   berthv1.HealthEventType_HEALTH_EVENT_TYPE_STATUS_CHANGED,
	heartbeatstore.EventNode:            berthv1.HealthEventType_HEALTH_EVENT_TYPE_NODE_EVENT,
	heartbeatstore.EventSettingsChanged: berthv1.HealthEventType_HEALTH_EVENT_TYPE_SETTINGS_CHANGED,
}

// reverse inverts one of the maps above.
func reverse[K, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

var (
	statusesFromProto   = reverse(statuses)
	statesFromProto     = reverse(states)
	eventTypesFromProto = reverse(eventTypes)
)

func statusFromProto(s berthv1.ReportedStatus) (heartbeatstore.Status, bool) {
	v, ok := statusesFromProto[s]
	return v, ok
}

func stateFromProto(s berthv1.LivenessState) (heartbeatstore.State, bool) {
	v, ok := statesFromProto[s]
	return v, ok
}

func eventTypeFromProto(t berthv1.HealthEventType) (heartbeatstore.EventType, bool) {
	v, ok := eventTypesFromProto[t]
	return v, ok
}

func livenessToProto(l heartbeatstore.Liveness) *berthv1.NodeHealth {
	h := &berthv1.NodeHealth{
		NodeId:     l.NodeID,
		State:      states[l.State],
		StateSince: timestamppb.New(l.StateSince),
		LastSeen:   timestamppb.New(l.LastSeen),
		BootId:     l.BootID,
		Status:     statuses[l.Status],
		Sequence:   uint64(l.Sequence),
		Uptime:     durationpb.New(l.Uptime),
	}
	if r := l.Reported; r != nil {
		h.Reported, h.ReportedAt = r.Values, timestamppb.New(r.At)
		if h.Reported == nil {
			h.Reported = map[string]string{}
		}
	}
	if a := l.BundleApplied; a != nil {
		h.BundleApplied = &berthv1.BundleApplied{Version: a.Version}
		if !a.At.IsZero() {
			h.BundleApplied.AppliedAt = timestamppb.New(a.At)
		}
		for _, r := range a.Hooks {
			h.BundleApplied.Hooks = append(h.BundleApplied.Hooks, &berthv1.HookResult{Command: r.Command,
				ExitCode: r.ExitCode, TimedOut: r.TimedOut, Error: r.Error, Duration: durationpb.New(r.Duration)})
		}
	}
	return h
}

func eventToProto(e heartbeatstore.Event) *berthv1.HealthEvent {
	p := &berthv1.HealthEvent{
		Cursor:         e.Cursor,
		Type:           eventTypes[e.Type],
		NodeId:         e.NodeID,
		Time:           timestamppb.New(e.Time),
		State:          states[e.State],
		PreviousState:  states[e.PrevState],
		BootId:         e.BootID,
		PreviousBootId: e.PrevBootID,
		Status:         statuses[e.Status],
		PreviousStatus: statuses[e.PrevStatus],
		Kind:           e.Kind,
		Message:        e.Message,
		Severity:       e.Severity,
		Actor:          e.Actor,
	}
	if !e.EventTime.IsZero() {
		p.EventTime = timestamppb.New(e.EventTime)
	}
	if e.Type == heartbeatstore.EventSettingsChanged {
		p.Interval, p.Grace = durationpb.New(e.Interval), durationpb.New(e.Grace)
	}
	return p
}

func settingsToProto(s liveness.Settings) *berthv1.HeartbeatSettings {
	return &berthv1.HeartbeatSettings{
		Interval:          durationpb.New(s.Current.Interval),
		Grace:             durationpb.New(s.Current.Grace),
		DefaultInterval:   durationpb.New(s.Defaults.Interval),
		DefaultGrace:      durationpb.New(s.Defaults.Grace),
		LoadFactor:        s.LoadFactor,
		EffectiveInterval: durationpb.New(s.Effective.Interval),
		EffectiveGrace:    durationpb.New(s.Effective.Grace),
	}
}
