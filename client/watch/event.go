package watch

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Service names one of berth's event logs. Each service keeps its own log,
// with its own cursors.
type Service string

// The services with an event log.
const (
	// Registration logs node lifecycle events: registered, approved,
	// rejected, revoked, pending (moved back by an administrator), deleted, replaced, certificate_issued (a
	// node's first certificate), certificate_renewed, duplicate_hardware
	// (two nodes report the same hardware), boot_digest_changed (a TPM
	// node's quoted boot PCR digest changed), boot_policy_violation and
	// boot_policy_cleared (its boot broke, or again meets, a PCR policy),
	// api_token_created and api_token_revoked (of no node: an admin API
	// token was created or revoked), labeled, replacement_allowed, and
	// administrators' changes of no node: token_created, token_revoked,
	// eks_imported, pcr_policy_set, pcr_policy_deleted,
	// sign_in_link_created (a one-time console sign-in link was minted).
	Registration Service = "registration"
	// Bundles logs bundle events: bundle_updated, bundle_approved,
	// bundle_reset, bundle_deleted, and bundle_settings_changed (of no
	// node: the approval policy was set).
	Bundles Service = "bundles"
	// Heartbeat logs health events: healthy, suspect, unreachable,
	// rebooted, status_changed, node_event, and settings_changed (of no
	// node: the heartbeat timings were set).
	Heartbeat Service = "heartbeat"
)

// Services returns every service with an event log, in a fixed order.
func Services() []Service { return []Service{Registration, Bundles, Heartbeat} }

// ParseService returns the service named s.
func ParseService(s string) (Service, error) {
	for _, svc := range Services() {
		if string(svc) == s {
			return svc, nil
		}
	}
	return "", fmt.Errorf("unknown service %q (want registration, bundles or heartbeat)", s)
}

// lifecycleTypes are the event types of the lifecycle logs, as documented
// on LifecycleEvent.type.
var lifecycleTypes = map[Service][]string{
	Registration: {"registered", "approved", "rejected", "revoked", "pending", "deleted", "replaced", "certificate_issued", "certificate_renewed", "duplicate_hardware",
		"boot_digest_changed", "boot_policy_violation", "boot_policy_cleared", "api_token_created", "api_token_revoked", "labeled",
		"replacement_allowed", "token_created", "token_revoked", "eks_imported", "pcr_policy_set", "pcr_policy_deleted", "sign_in_link_created"},
	Bundles: {"bundle_updated", "bundle_approved", "bundle_reset", "bundle_deleted", "bundle_settings_changed"},
}

// Prefixes of the heartbeat service's enum value names.
const (
	prefixEventType = "HEALTH_EVENT_TYPE_"
	prefixState     = "LIVENESS_STATE_"
	prefixStatus    = "REPORTED_STATUS_"
)

// EventTypes returns the event types that service s sends, in the order
// its API documents them.
func EventTypes(s Service) []string {
	if s != Heartbeat {
		return slices.Clone(lifecycleTypes[s])
	}
	values := slices.Sorted(maps.Values(berthv1.HealthEventType_value))
	var types []string
	for _, v := range values {
		if t := berthv1.HealthEventType(v); t != berthv1.HealthEventType_HEALTH_EVENT_TYPE_UNSPECIFIED {
			types = append(types, enumName(prefixEventType, t.String()))
		}
	}
	return types
}

// ServiceOf returns the service that sends events of type t.
func ServiceOf(t string) (Service, bool) {
	for _, s := range Services() {
		if slices.Contains(EventTypes(s), t) {
			return s, true
		}
	}
	return "", false
}

// enumName turns a protobuf enum value name into an event's spelling:
// lower case without the enum's prefix (HEALTH_EVENT_TYPE_NODE_EVENT is
// node_event). A number the generated code does not know stays a number.
func enumName(prefix, name string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

// Event is one entry of a service's event log.
type Event struct {
	// Service is the log the event comes from.
	Service Service
	// Cursor orders the events of Service; it only grows. Cursors of
	// different services are unrelated.
	Cursor int64
	// Type says what happened, e.g. "approved", "bundle_updated" or
	// "suspect" (see EventTypes).
	Type string
	// NodeID is the node the event is about.
	NodeID string
	// Time is when the event happened, by the server's clock; zero if the
	// server did not say.
	Time time.Time
	// Details carry what the type needs. Lifecycle events carry what their
	// service sends ("serial", "version", "actor", ...). Health events carry
	// those of state, previous_state, boot_id, previous_boot_id, status,
	// previous_status, kind, message, severity, event_time, interval, grace
	// and actor that are set; states are healthy, suspect or unreachable,
	// statuses up, degraded or maintenance, interval and grace Go durations
	// ("30s"). Never nil.
	Details map[string]string
}

// lifecycleEvent converts an event of the registration or bundles log; nil
// for a response without an event.
func lifecycleEvent(s Service, e *berthv1.LifecycleEvent) *Event {
	if e == nil {
		return nil
	}
	details := maps.Clone(e.GetDetails())
	if details == nil {
		details = map[string]string{}
	}
	return &Event{
		Service: s,
		Cursor:  e.GetCursor(),
		Type:    e.GetType(),
		NodeID:  e.GetNodeId(),
		Time:    eventTime(e.GetTime()),
		Details: details,
	}
}

// healthEvent converts an event of the heartbeat log; nil for a response
// without an event.
func healthEvent(e *berthv1.HealthEvent) *Event {
	if e == nil {
		return nil
	}
	d := map[string]string{}
	put := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	state := func(s berthv1.LivenessState) string {
		if s == berthv1.LivenessState_LIVENESS_STATE_UNSPECIFIED {
			return ""
		}
		return enumName(prefixState, s.String())
	}
	put("state", state(e.GetState()))
	put("previous_state", state(e.GetPreviousState()))
	put("boot_id", e.GetBootId())
	put("previous_boot_id", e.GetPreviousBootId())
	put("status", statusName(e.GetStatus()))
	put("previous_status", statusName(e.GetPreviousStatus()))
	put("kind", e.GetKind())
	put("message", e.GetMessage())
	put("severity", e.GetSeverity())
	if t := e.GetEventTime(); t != nil {
		put("event_time", eventTime(t).UTC().Format(time.RFC3339Nano))
	}
	if e.GetInterval() != nil {
		put("interval", e.GetInterval().AsDuration().String())
	}
	if e.GetGrace() != nil {
		put("grace", e.GetGrace().AsDuration().String())
	}
	put("actor", e.GetActor())
	return &Event{
		Service: Heartbeat,
		Cursor:  e.GetCursor(),
		Type:    enumName(prefixEventType, e.GetType().String()),
		NodeID:  e.GetNodeId(),
		Time:    eventTime(e.GetTime()),
		Details: d,
	}
}

// statusName is a reported status as events spell it: up, degraded or
// maintenance; empty when unspecified.
func statusName(s berthv1.ReportedStatus) string {
	if s == berthv1.ReportedStatus_REPORTED_STATUS_UNSPECIFIED {
		return ""
	}
	return enumName(prefixStatus, s.String())
}

// eventTime is ts in UTC, or the zero time when the server sent none.
func eventTime(ts *timestamppb.Timestamp) time.Time {
	if ts == nil || !ts.IsValid() {
		return time.Time{}
	}
	return ts.AsTime().UTC()
}

// Cursors are the positions of a watch: per service, the cursor of the last
// event delivered. A Watcher started with them resumes after those events.
// A service without an entry starts at the oldest event its log keeps (or
// at the newest, with Config.FromNow).
//
// Cursors marshal to JSON as an object ({"heartbeat":17}) and to text with
// String, so an engine can persist them however it likes.
type Cursors map[Service]int64

// Clone returns a copy of c; nil for nil.
func (c Cursors) Clone() Cursors { return maps.Clone(c) }

// Advance records e as delivered: it moves e.Service's cursor forward to
// e.Cursor, never back.
func (c Cursors) Advance(e Event) {
	if cur, ok := c[e.Service]; !ok || e.Cursor > cur {
		c[e.Service] = e.Cursor
	}
}

// String renders c as service=cursor pairs sorted by service, separated by
// commas ("bundles=4,heartbeat=17"); ParseCursors reads it back.
func (c Cursors) String() string {
	keys := slices.Sorted(maps.Keys(c))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = string(k) + "=" + strconv.FormatInt(c[k], 10)
	}
	return strings.Join(parts, ",")
}

// ParseCursors reads service=cursor pairs separated by commas, as String
// writes them. An empty string is no cursors.
func ParseCursors(s string) (Cursors, error) {
	c := Cursors{}
	if strings.TrimSpace(s) == "" {
		return c, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("cursor %q: want service=cursor", part)
		}
		svc, err := ParseService(name)
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("cursor %q: want a cursor of 0 or more", part)
		}
		if _, dup := c[svc]; dup {
			return nil, fmt.Errorf("cursor of %s given twice", svc)
		}
		c[svc] = n
	}
	return c, nil
}
