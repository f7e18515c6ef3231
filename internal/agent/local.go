package agent

import (
	"crypto/rand"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/berth-dev/berth/internal/clock"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Limits of what host daemons report, the same the heartbeat service
// enforces.
const (
	maxReportedKeys  = 64
	maxReportedValue = 256
	maxEventMessage  = 1024
	maxBeatEvents    = 16
	// DefaultEventQueue is how many node events wait for the heartbeat
	// service at most; the oldest are dropped beyond it.
	DefaultEventQueue = 1000
)

// nameRE is the rule for reported keys and event types.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Rules of the local API's inputs, shown to its callers.
const (
	ruleName     = "must match ^[a-z0-9][a-z0-9._-]{0,63}$"
	ruleValue    = "must be at most 256 bytes without control characters"
	ruleMessage  = "must be at most 1024 bytes without control characters"
	ruleKeys     = "would exceed 64 reported keys"
	ruleSetUnset = "must not name a key that is also set"
	ruleSeverity = "must be info, warning or critical"
	ruleEmpty    = "must set or unset at least one key"
)

// invalidInput is a local API request that breaks a rule; it changes
// nothing.
type invalidInput struct{ field, rule string }

func (e *invalidInput) Error() string { return e.field + " " + e.rule }

// NodeEvent is an event the node reports: from a host daemon through the
// local API, or from the kernel log.
type NodeEvent struct {
	Seq      uint64
	Type     string
	Severity berthv1.EventSeverity
	Message  string
	Time     time.Time
}

// ParseSeverity parses info, warning or critical ("" is info).
func ParseSeverity(s string) (berthv1.EventSeverity, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return berthv1.EventSeverity_EVENT_SEVERITY_INFO, nil
	case "warning":
		return berthv1.EventSeverity_EVENT_SEVERITY_WARNING, nil
	case "critical":
		return berthv1.EventSeverity_EVENT_SEVERITY_CRITICAL, nil
	}
	return 0, fmt.Errorf("unknown severity %q (want info, warning or critical)", s)
}

// SeverityName is the lower-case name of a severity.
func SeverityName(s berthv1.EventSeverity) string {
	switch s {
	case berthv1.EventSeverity_EVENT_SEVERITY_WARNING:
		return "warning"
	case berthv1.EventSeverity_EVENT_SEVERITY_CRITICAL:
		return "critical"
	}
	return "info"
}

// nodeState is what the running agent knows and has to tell: the
// reported status and the queue of node events, which the heartbeater
// sends, and the status the local API shows. It is shared by the local
// API, the kernel log reader and the heartbeater.
type nodeState struct {
	clock    clock.Clock
	instance string // this agent run, for event sequences
	maxQueue int
	// kick wakes the heartbeater to send a beat early: something changed.
	kick chan struct{}

	mu          sync.Mutex
	reported    map[string]string
	reportedGen uint64 // bumped by every change
	queue       []NodeEvent
	nextSeq     uint64
	dropped     uint64 // since the agent started
	dropUnsent  uint64 // dropped, not yet told to the server

	// The bundle: the version announced and not yet looked at (bundleKick
	// wakes keepBundlesLive), and the one applied (appliedGen is bumped
	// with each, for the beats).
	bundleKick   chan struct{}
	bundleWanted int64
	applied      appliedBundle
	appliedGen   uint64

	// Status.
	nodeID, identitySource string
	certSerial             string
	certNotAfter           time.Time
	bundleVersion          int64
	bundleAppliedAt        time.Time
	connection             string
	lastHeartbeat          time.Time
	interval               time.Duration
}

// Connection states of GetAgentStatus.
const (
	connBooting      = "booting"
	connConnecting   = "connecting"
	connConnected    = "connected"
	connDisconnected = "disconnected"
	connDisabled     = "disabled"
)

func newNodeState(c clock.Clock, maxQueue int, identitySource string) *nodeState {
	if maxQueue <= 0 {
		maxQueue = DefaultEventQueue
	}
	return &nodeState{
		clock:          c,
		instance:       "agent-" + strings.ToLower(rand.Text()),
		maxQueue:       maxQueue,
		kick:           make(chan struct{}, 1),
		bundleKick:     make(chan struct{}, 1),
		reported:       map[string]string{},
		nextSeq:        1,
		identitySource: identitySource,
		connection:     connBooting,
	}
}

func (s *nodeState) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func validText(v string, max int) bool {
	return len(v) <= max && strings.IndexFunc(v, unicode.IsControl) < 0
}

// updateReported sets and unsets reported keys, all or nothing, and
// returns the reported status after the change.
func (s *nodeState) updateReported(set map[string]string, unset []string) (map[string]string, error) {
	if len(set) == 0 && len(unset) == 0 {
		return nil, &invalidInput{"set", ruleEmpty}
	}
	for k, v := range set {
		if !nameRE.MatchString(k) {
			return nil, &invalidInput{"set", "keys " + ruleName}
		}
		if !validText(v, maxReportedValue) {
			return nil, &invalidInput{"set", "values " + ruleValue}
		}
	}
	for _, k := range unset {
		if !nameRE.MatchString(k) {
			return nil, &invalidInput{"unset", "keys " + ruleName}
		}
		if _, ok := set[k]; ok {
			return nil, &invalidInput{"unset", ruleSetUnset}
		}
	}
	s.mu.Lock()
	next := maps.Clone(s.reported)
	for _, k := range unset {
		delete(next, k)
	}
	maps.Copy(next, set)
	if len(next) > maxReportedKeys {
		s.mu.Unlock()
		return nil, &invalidInput{"set", ruleKeys}
	}
	changed := !maps.Equal(next, s.reported)
	if changed {
		s.reported = next
		s.reportedGen++
	}
	out := maps.Clone(next)
	s.mu.Unlock()
	if changed {
		s.wake()
	}
	return out, nil
}

// addEvent queues a node event, dropping the oldest when the queue is
// full, and returns its sequence, the queue length and the drop count.
func (s *nodeState) addEvent(typ string, sev berthv1.EventSeverity, msg string) (NodeEvent, int, uint64, error) {
	switch {
	case !nameRE.MatchString(typ):
		return NodeEvent{}, 0, 0, &invalidInput{"type", ruleName}
	case !validText(msg, maxEventMessage):
		return NodeEvent{}, 0, 0, &invalidInput{"message", ruleMessage}
	case sev == berthv1.EventSeverity_EVENT_SEVERITY_UNSPECIFIED:
		sev = berthv1.EventSeverity_EVENT_SEVERITY_INFO
	case berthv1.EventSeverity_name[int32(sev)] == "":
		return NodeEvent{}, 0, 0, &invalidInput{"severity", ruleSeverity}
	}
	s.mu.Lock()
	e := NodeEvent{Seq: s.nextSeq, Type: typ, Severity: sev, Message: msg, Time: s.clock.Now()}
	s.nextSeq++
	s.queue = append(s.queue, e)
	if over := len(s.queue) - s.maxQueue; over > 0 {
		s.queue = slices.Delete(s.queue, 0, over)
		s.dropped += uint64(over)
		s.dropUnsent += uint64(over)
	}
	n, dropped := len(s.queue), s.dropped
	s.mu.Unlock()
	s.wake()
	return e, n, dropped, nil
}

// eventsDropped is the type of the event that tells the server how many
// events a full queue dropped.
const eventsDropped = "agent.events_dropped"

// pending returns what the next beat carries: the reported status when it
// changed since sentGen (or always, with full), and up to maxBeatEvents of
// the oldest events. A count of dropped events becomes an event of its
// own, after those queued before it, so that the sequence stays in order.
func (s *nodeState) pending(sentGen uint64, full bool) (reported map[string]string, gen uint64, events []NodeEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropUnsent > 0 {
		s.queue = append(s.queue, NodeEvent{Seq: s.nextSeq, Type: eventsDropped,
			Severity: berthv1.EventSeverity_EVENT_SEVERITY_WARNING, Time: s.clock.Now(),
			Message: fmt.Sprintf("%d node events were dropped from the agent's full queue while the heartbeat service was unreachable", s.dropUnsent)})
		s.nextSeq++
		s.dropUnsent = 0
	}
	if full || sentGen != s.reportedGen {
		reported = maps.Clone(s.reported)
	}
	events = slices.Clone(s.queue[:min(len(s.queue), maxBeatEvents)])
	return reported, s.reportedGen, events
}

// acked drops the events up to seq, which the heartbeat service has.
func (s *nodeState) acked(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.queue) && s.queue[i].Seq <= seq {
		i++
	}
	s.queue = slices.Delete(s.queue, 0, i)
}

// setConnection records the heartbeat stream's state.
func (s *nodeState) setConnection(state string) {
	s.mu.Lock()
	s.connection = state
	s.mu.Unlock()
}

// beatAcked records an acknowledged beat.
func (s *nodeState) beatAcked(interval time.Duration) {
	s.mu.Lock()
	s.connection, s.lastHeartbeat, s.interval = connConnected, s.clock.Now(), interval
	s.mu.Unlock()
}

// setCreds records the node's current credentials.
func (s *nodeState) setCreds(c *Credentials) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodeID = c.NodeID
	if leaf := c.Leaf(); leaf != nil {
		s.certSerial, s.certNotAfter = leaf.SerialNumber.Text(16), leaf.NotAfter
	}
}
