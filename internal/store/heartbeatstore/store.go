// Package heartbeatstore is the heartbeat service's store: the liveness of every
// node that ever sent a beat, the health event log that the management
// engine follows by cursor, the lease that elects the one replica deciding
// which nodes are unreachable, and the fleet's heartbeat settings.
//
// Its health events live in an event log of the one shape every service
// shares (package eventlog, tables hb_events and hb_events_watermark), and
// are appended in the same transaction as the liveness change they record,
// so that a change and its event commit together or not at all.
//
// Every writing transaction locks the liveness rows it changes in node ID
// order and appends its events last (the log's lock on PostgreSQL), so
// writers never wait for each other in opposite orders.
package heartbeatstore

import (
	"context"
	"errors"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
)

// State is what the heartbeat service concludes about a node's liveness.
type State string

// The liveness states: a node that beats is healthy; two intervals without
// a beat make it suspect, the grace period unreachable; a beat makes it
// healthy again.
const (
	StateHealthy     State = "healthy"
	StateSuspect     State = "suspect"
	StateUnreachable State = "unreachable"
)

// Status is the status the node's agent reports.
type Status string

// The reported statuses.
const (
	StatusUp          Status = "up"
	StatusDegraded    Status = "degraded"
	StatusMaintenance Status = "maintenance"
)

// EventType says what a health event records.
type EventType string

// The event types.
const (
	// EventHealthy: first beat of a node (PrevState ""), or a beat from a
	// suspect or unreachable node.
	EventHealthy EventType = "healthy"
	// EventSuspect and EventUnreachable: the node went silent.
	EventSuspect     EventType = "suspect"
	EventUnreachable EventType = "unreachable"
	// EventRebooted: a beat with a boot ID other than the last one.
	EventRebooted EventType = "rebooted"
	// EventStatusChanged: a beat with a status other than the last one.
	EventStatusChanged EventType = "status_changed"
	// EventNode: a status-change event the agent reported (Kind, Message).
	EventNode EventType = "node_event"
	// EventSettingsChanged: an administrator (Actor) set the fleet's
	// timings (Interval, Grace); it is of no node.
	EventSettingsChanged EventType = "settings_changed"
)

// Liveness is the stored health of one node: its latest observation
// (Uptime at microsecond precision; Reported and BundleApplied nil until
// the node first reported them) and what the service concluded.
type Liveness struct {
	Observation
	State State
	// StateSince is when the node entered State.
	StateSince time.Time
}

// Observation is the latest beat of a node, as a flush writes it.
type Observation struct {
	NodeID   string
	LastSeen time.Time
	Sequence int64
	BootID   string
	Status   Status
	Uptime   time.Duration
	// Reported and BundleApplied, when set, replace the stored ones
	// (Record only).
	Reported      *Reported
	BundleApplied *BundleApplied
}

// Event is one entry of the health event log. Fields that do not apply to
// the type are empty.
type Event struct {
	Cursor     int64 // assigned by the store
	Time       time.Time
	NodeID     string
	Type       EventType
	State      State
	PrevState  State
	BootID     string
	PrevBootID string
	Status     Status
	PrevStatus Status
	Kind       string
	Message    string
	// Severity (info, warning or critical) and EventTime (when it
	// happened on the node, zero if unknown) are a node event's.
	Severity  string
	EventTime time.Time
	// Instance and Seq number a node event among its agent instance's
	// (Record appends each once); not stored with the event.
	Instance string
	Seq      int64
	// Interval, Grace and Actor are a settings change's.
	Interval, Grace time.Duration
	Actor           string
}

// Reported is a node's reported status, as its host daemons set it.
type Reported struct {
	Values map[string]string `json:"values"`
	At     time.Time         `json:"at"`
}

// BundleApplied is the bundle a node applied last, with its hooks.
type BundleApplied struct {
	Version int64        `json:"version"`
	At      time.Time    `json:"at"`
	Hooks   []HookResult `json:"hooks,omitempty"`
}

// HookResult is how one post-apply hook ran on the node.
type HookResult struct {
	Command  string        `json:"command"`
	ExitCode int32         `json:"exit_code"`
	TimedOut bool          `json:"timed_out,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration"`
}

// FlushResult counts what a Flush wrote.
type FlushResult struct {
	// Rows is the number of liveness rows written (observations older than
	// the stored row are skipped).
	Rows int
	// Events is the number of events appended, those given and the healthy
	// transitions together.
	Events int
}

// BootsResult counts what RecordBoots did.
type BootsResult struct {
	// Recorded boots changed their node's row; Skipped ones did not (the
	// row was newer or held them already).
	Recorded, Skipped int
	// Events is the number of events appended.
	Events int
}

// Silence asks the decider's question of the store: which nodes were silent
// too long. It is only answered for the lease holder.
type Silence struct {
	Holder string
	Now    time.Time
	// LeaseUntil renews the holder's lease, in the same transaction.
	LeaseUntil time.Time
	// Healthy nodes last seen before SuspectBefore become suspect; healthy
	// and suspect nodes last seen before UnreachableBefore become
	// unreachable. A zero time skips that transition.
	SuspectBefore     time.Time
	UnreachableBefore time.Time
}

// SilenceResult counts the nodes that changed state.
type SilenceResult struct {
	Suspect     int
	Unreachable int
}

// LivenessFilter selects liveness rows for ListLiveness.
type LivenessFilter struct {
	State   State    // "" = any
	NodeIDs []string // empty = any
	AfterID string   // paging: only node IDs > AfterID
	Limit   int      // <= 0 = no limit
}

// Settings are the fleet's heartbeat timings. Zero values mean the
// service's defaults. The timings in force are Interval and Grace (the base
// an admin sets) times Stretch (the load factor the decider sets under
// overload). The previous timings in force apply too (the longer of the two
// wins) until Previous.Grace has passed since ChangedAt, while nodes learn
// the new interval.
type Settings struct {
	Interval  time.Duration
	Grace     time.Duration
	Previous  Timings
	ChangedAt time.Time
	// Stretch is at least 1 once stored; 0 (never stored) means 1.
	Stretch float64
}

// Timings is an interval and a grace period.
type Timings struct {
	Interval time.Duration
	Grace    time.Duration
}

// Errors returned, wrapped, by every Store.
var (
	ErrNotFound = errors.New("not found")
	// ErrLeaseLost means the caller no longer holds the decider lease.
	ErrLeaseLost = errors.New("decider lease not held")
)

// Store holds the heartbeat service's state. Implementations are safe for
// concurrent use by several goroutines and several processes (replicas) on
// one database. Times are stored in UTC at microsecond precision.
type Store interface {
	// Flush writes a batch of observations and appends events in one
	// transaction, with statements that each carry many rows (one per
	// table on PostgreSQL), never a statement per row. A node's row is created on
	// its first observation and updated by later ones, never by an older one
	// (by LastSeen). A node written while not healthy, or for the first
	// time, becomes healthy and gets an EventHealthy at its LastSeen; those
	// come before the given events, which are appended in order. Duplicate
	// node IDs keep the newest observation.
	Flush(ctx context.Context, obs []Observation, events []Event) (FlushResult, error)
	// Record writes one beat that changes what the store knows of its node,
	// with its events, in one transaction, before the beat is acknowledged.
	// Against the stored row it appends: EventHealthy if the node is new or
	// not healthy (it becomes healthy), EventRebooted if the boot ID
	// differs, EventStatusChanged if the status differs, then the given
	// events (the agent's) in order, each node event with a sequence once
	// per agent instance (one whose sequence the row already holds for the
	// instance is dropped); and it stores the observation, with its
	// reported status and applied bundle when set. A beat
	// the row already holds (same boot ID, sequence not above the stored
	// one) changes nothing, so a retried beat appends nothing twice. It
	// returns the events appended.
	Record(ctx context.Context, o Observation, events []Event) ([]Event, error)
	// RecordBoots records boots that the registration service served as
	// the first beats of their boots (a node's Resume), many nodes in one
	// transaction with a statement per table, not per row. Against the
	// stored row each appends what Record would: EventHealthy if the node
	// is new or not healthy, EventRebooted if the boot ID differs,
	// EventStatusChanged if the status differs; and stores the observation
	// (reported status, applied bundle and event sequences are kept). A
	// boot is skipped when the row is newer (LastSeen after the boot's) or
	// holds the same boot at its sequence or above, so that a late or
	// retried boot never overwrites a beat or appends twice. Duplicate
	// node IDs keep the newest observation.
	RecordBoots(ctx context.Context, obs []Observation) (BootsResult, error)
	// GetLiveness returns one node's liveness; ErrNotFound if it never beat.
	GetLiveness(ctx context.Context, nodeID string) (Liveness, error)
	// ListLiveness returns matching rows in ascending node ID.
	ListLiveness(ctx context.Context, f LivenessFilter) ([]Liveness, error)

	// AcquireLease takes the decider lease for holder until the given time
	// if it is free, expired at now or already held by holder (a renewal). It
	// reports whether holder holds it afterwards, and since when it has held
	// it without interruption.
	AcquireLease(ctx context.Context, holder string, now, until time.Time) (held bool, since time.Time, err error)
	// ReleaseLease gives the lease up, if holder holds it, so that another
	// replica can take it at once.
	ReleaseLease(ctx context.Context, holder string) error
	// MarkSilent renews the holder's lease and, in the same transaction,
	// moves silent nodes to suspect or unreachable with one event each. If
	// the holder lost the lease it changes nothing and returns ErrLeaseLost.
	MarkSilent(ctx context.Context, s Silence) (SilenceResult, error)

	// Events is the health event log (see EventOf for its entries). Its
	// followers are woken by every append of this store.
	Events() eventlog.Log

	// GetSettings returns the stored settings; zero if never set.
	GetSettings(ctx context.Context) (Settings, error)
	// PutSettings stores s but its Stretch: the stored one is kept (1 if
	// none), as only the decider changes it; in the same transaction it
	// appends ev as the change's EventSettingsChanged (its Type is set).
	PutSettings(ctx context.Context, s Settings, ev Event) error
	// PutStretch stores s.Stretch, s.Previous and s.ChangedAt and keeps the
	// stored Interval and Grace (zero, the defaults, if none), which only an
	// admin changes.
	PutStretch(ctx context.Context, s Settings) error
	// CountLive returns the number of nodes healthy or suspect.
	CountLive(ctx context.Context) (int, error)
	// PutBoots stores boots as the number of boots replica recorded over
	// the last minute, said at at, in place of what it said before; 0
	// removes the replica's count. A negative count is refused.
	PutBoots(ctx context.Context, replica string, boots int, at time.Time) error
	// SumBoots returns the sum of the counts replicas other than except
	// said at or after since.
	SumBoots(ctx context.Context, except string, since time.Time) (int, error)
	// ForgetBoots removes the counts said before before (those of
	// replicas that died while they had boots to count), and returns how
	// many it removed.
	ForgetBoots(ctx context.Context, before time.Time) (int64, error)
	// CountByState returns how many nodes are in each state (metrics);
	// states without a node are absent.
	CountByState(ctx context.Context) (map[State]int64, error)

	// Close releases the database.
	Close()
}
