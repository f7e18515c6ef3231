package heartbeat

import (
	"maps"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/liveness"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Limits on requests.
const (
	maxBeatEvents    = 16
	maxMessageLen    = 1024
	maxUptime        = 100 * 365 * 24 * time.Hour
	defaultPageSize  = 100
	maxPageSize      = 1000
	maxListNodes     = 1000
	maxWatchNodes    = 100
	maxReportedKeys  = 64
	maxReportedValue = 256
	maxHooks         = 64
)

// Severities of node events, as stored and shown.
const (
	severityInfo     = "info"
	severityWarning  = "warning"
	severityCritical = "critical"
)

var (
	kindRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// validateBeat checks one beat's fields; the core checks it against the
// stream (sequence increasing, same boot ID, rate).
func validateBeat(req *berthv1.HeartbeatRequest) (liveness.Beat, error) {
	var b liveness.Beat
	if seq := req.GetSequence(); seq == 0 || seq > math.MaxInt64 {
		return b, rpcerr.Invalid("sequence", ruleSequence)
	}
	b.Sequence = int64(req.GetSequence())
	if !ident.BootID(req.GetBootId()) {
		return b, rpcerr.Invalid("boot_id", ruleBootID)
	}
	b.BootID = req.GetBootId()
	st, ok := statusFromProto(req.GetStatus())
	if !ok {
		return b, rpcerr.Invalid("status", ruleStatus)
	}
	b.Status = st
	if req.GetUptime() != nil {
		up, err := durationOf(req.GetUptime())
		if err != nil || up > maxUptime {
			return b, rpcerr.Invalid("uptime", ruleUptime)
		}
		b.Uptime = up
	}
	if len(req.GetEvents()) > maxBeatEvents {
		return b, rpcerr.Invalid("events", ruleEventCount)
	}
	for _, e := range req.GetEvents() {
		if !kindRE.MatchString(e.GetKind()) {
			return b, rpcerr.Invalid("events.kind", ruleKind)
		}
		if len(e.GetMessage()) > maxMessageLen || strings.IndexFunc(e.GetMessage(), unicode.IsControl) >= 0 {
			return b, rpcerr.Invalid("events.message", ruleMessage)
		}
		ev := liveness.NodeEvent{Kind: e.GetKind(), Message: e.GetMessage()}
		switch e.GetSeverity() {
		case berthv1.EventSeverity_EVENT_SEVERITY_UNSPECIFIED, berthv1.EventSeverity_EVENT_SEVERITY_INFO:
			ev.Severity = severityInfo
		case berthv1.EventSeverity_EVENT_SEVERITY_WARNING:
			ev.Severity = severityWarning
		case berthv1.EventSeverity_EVENT_SEVERITY_CRITICAL:
			ev.Severity = severityCritical
		default:
			return b, rpcerr.Invalid("events.severity", ruleSeverity)
		}
		if e.GetSequence() > math.MaxInt64 {
			return b, rpcerr.Invalid("events.sequence", ruleEventSeq)
		}
		ev.Seq = int64(e.GetSequence())
		if ev.Seq > 0 && !ident.BootID(req.GetAgentInstance()) {
			return b, rpcerr.Invalid("agent_instance", ruleInstance)
		}
		if t := e.GetTime(); t != nil {
			if t.CheckValid() != nil {
				return b, rpcerr.Invalid("events.time", ruleTime)
			}
			ev.Time = t.AsTime()
		}
		b.Events = append(b.Events, ev)
	}
	b.Instance = req.GetAgentInstance()
	if r := req.GetReported(); r != nil {
		if len(r.GetValues()) > maxReportedKeys {
			return b, rpcerr.Invalid("reported.values", ruleReportedKeys)
		}
		for k, v := range r.GetValues() {
			if !kindRE.MatchString(k) || len(v) > maxReportedValue || strings.IndexFunc(v, unicode.IsControl) >= 0 {
				return b, rpcerr.Invalid("reported.values", ruleReported)
			}
		}
		b.Reported = &heartbeatstore.Reported{Values: maps.Clone(r.GetValues())}
		if b.Reported.Values == nil {
			b.Reported.Values = map[string]string{}
		}
	}
	if a := req.GetBundleApplied(); a != nil {
		applied, err := validateApplied(a)
		if err != nil {
			return b, err
		}
		b.BundleApplied = applied
	}
	return b, nil
}

// validateApplied checks what a node says it applied.
func validateApplied(a *berthv1.BundleApplied) (*heartbeatstore.BundleApplied, error) {
	if a.GetVersion() < 0 {
		return nil, rpcerr.Invalid("bundle_applied.version", ruleAppliedVersion)
	}
	out := &heartbeatstore.BundleApplied{Version: a.GetVersion()}
	if t := a.GetAppliedAt(); t != nil {
		if t.CheckValid() != nil {
			return nil, rpcerr.Invalid("bundle_applied.applied_at", ruleTime)
		}
		out.At = t.AsTime()
	}
	if len(a.GetHooks()) > maxHooks {
		return nil, rpcerr.Invalid("bundle_applied.hooks", ruleHooks)
	}
	for _, h := range a.GetHooks() {
		if len(h.GetCommand()) > maxMessageLen || len(h.GetError()) > maxMessageLen {
			return nil, rpcerr.Invalid("bundle_applied.hooks", ruleHookText)
		}
		var took time.Duration
		if d := h.GetDuration(); d != nil {
			v, err := durationOf(d)
			if err != nil {
				return nil, rpcerr.Invalid("bundle_applied.hooks.duration", ruleDuration)
			}
			took = v
		}
		out.Hooks = append(out.Hooks, heartbeatstore.HookResult{Command: h.GetCommand(), ExitCode: h.GetExitCode(),
			TimedOut: h.GetTimedOut(), Error: h.GetError(), Duration: took})
	}
	return out, nil
}

// durationOf converts a non-negative, valid duration.
func durationOf(d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil {
		return 0, err
	}
	if v := d.AsDuration(); v >= 0 {
		return v, nil
	}
	return 0, rpcerr.Invalid("duration", "must not be negative")
}

func validateNodeID(field, id string) error {
	if ident.NodeID(id) != nil {
		return rpcerr.Invalid(field, ruleNodeID)
	}
	return nil
}

// validateList returns the filter and the page size.
func validateList(req *berthv1.ListNodeHealthRequest) (heartbeatstore.LivenessFilter, int, error) {
	var f heartbeatstore.LivenessFilter
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > maxPageSize:
		return f, 0, rpcerr.Invalid("page_size", rulePageSize)
	case size == 0:
		size = defaultPageSize
	}
	if req.GetState() != berthv1.LivenessState_LIVENESS_STATE_UNSPECIFIED {
		st, ok := stateFromProto(req.GetState())
		if !ok {
			return f, 0, rpcerr.Invalid("state", ruleState)
		}
		f.State = st
	}
	if len(req.GetNodeIds()) > maxListNodes {
		return f, 0, rpcerr.Invalid("node_ids", ruleListNodes)
	}
	for _, id := range req.GetNodeIds() {
		if err := validateNodeID("node_ids", id); err != nil {
			return f, 0, err
		}
	}
	f.NodeIDs = req.GetNodeIds()
	after, err := decodePageToken(req.GetPageToken())
	f.AfterID = after
	return f, size, err
}

func decodePageToken(t string) (string, error) {
	after, ok := ident.AfterPageToken(t)
	if !ok {
		return "", rpcerr.Invalid("page_token", rulePageToken)
	}
	return after, nil
}

func validateWatch(req *berthv1.WatchHealthRequest) (liveness.WatchRequest, error) {
	var w liveness.WatchRequest
	switch {
	case req.GetAfterCursor() < 0:
		return w, rpcerr.Invalid("after_cursor", ruleCursor)
	case req.GetFromNow() && req.GetAfterCursor() != 0:
		return w, rpcerr.Invalid("after_cursor", ruleFromNow)
	}
	w.After, w.FromNow = req.GetAfterCursor(), req.GetFromNow()
	if len(req.GetNodeIds()) > maxWatchNodes {
		return w, rpcerr.Invalid("node_ids", ruleWatchNodes)
	}
	for _, id := range req.GetNodeIds() {
		if err := validateNodeID("node_ids", id); err != nil {
			return w, err
		}
	}
	w.NodeIDs = req.GetNodeIds()
	for _, t := range req.GetTypes() {
		et, ok := eventTypeFromProto(t)
		if !ok {
			return w, rpcerr.Invalid("types", ruleEventType)
		}
		w.Types = append(w.Types, et)
	}
	return w, nil
}

// validateSettings checks the shape of the durations; the core checks
// their ranges.
func validateSettings(req *berthv1.SetHeartbeatSettingsRequest) (liveness.Timings, error) {
	var t liveness.Timings
	if d := req.GetInterval(); d != nil {
		v, err := durationOf(d)
		if err != nil {
			return t, rpcerr.Invalid("interval", ruleDuration)
		}
		t.Interval = v
	}
	if d := req.GetGrace(); d != nil {
		v, err := durationOf(d)
		if err != nil {
			return t, rpcerr.Invalid("grace", ruleDuration)
		}
		t.Grace = v
	}
	return t, nil
}
