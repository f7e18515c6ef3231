package liveness

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// defaultShards splits the liveness map so that beats of different nodes
// rarely wait for one another or for a flush collecting them; see
// BenchmarkBeat for the measurement behind the number.
const defaultShards = 64

// Beat limits: a node may send a burst of beatBurst beats, and beatsPerInterval
// per interval after that (status changes send a beat of their own).
const (
	beatBurst        = 10
	beatsPerInterval = 5
)

// Beat is one validated beat.
type Beat struct {
	Sequence int64
	BootID   string
	Uptime   time.Duration
	Status   heartbeatstore.Status
	Events   []NodeEvent
	// Instance is the agent instance the events' sequences count in.
	Instance string
	// Reported and BundleApplied, when set, replace what the node reported
	// before.
	Reported      *heartbeatstore.Reported
	BundleApplied *heartbeatstore.BundleApplied
}

// NodeEvent is a status-change event reported by the agent.
type NodeEvent struct {
	Kind     string
	Message  string
	Severity string    // info, warning or critical
	Seq      int64     // 0: none (recorded every time it is sent)
	Time     time.Time // on the node; zero if unknown
}

// entry is the liveness of one node connected to this replica (or
// disconnected, until its last beat is flushed).
type entry struct {
	nodeID string
	// known says the fields below hold a beat: one received here, or the
	// stored row loaded when the node connected.
	known    bool
	lastSeen time.Time
	seq      int64
	bootID   string
	status   heartbeatstore.Status
	uptime   time.Duration
	// healthy says the store holds the node as healthy, as far as this
	// replica knows: it read so, or wrote so itself.
	healthy bool
	// dirty says a beat arrived since the last flush collected this entry.
	dirty bool
	sess  *Session
}

type shard struct {
	mu      sync.Mutex
	entries map[string]*entry
	dirty   []*entry
}

// observation is the entry's latest beat, as a flush writes it.
func (e *entry) observation() heartbeatstore.Observation {
	return heartbeatstore.Observation{NodeID: e.nodeID, LastSeen: e.lastSeen, Sequence: e.seq, BootID: e.bootID, Status: e.status, Uptime: e.uptime}
}

func newShards(n int) []*shard {
	out := make([]*shard, n)
	for i := range out {
		out[i] = &shard{entries: map[string]*entry{}}
	}
	return out
}

// shardOf picks a node's shard by an FNV-1a hash of its ID.
func (c *Core) shardOf(nodeID string) *shard {
	return c.shards[fnv1a(nodeID)%uint64(len(c.shards))]
}

// fnv1a hashes a string without allocating.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Session is one heartbeat stream of a node.
type Session struct {
	core   *Core
	nodeID string
	sh     *shard
	e      *entry

	changed   chan struct{}
	done      chan struct{}
	endOnce   sync.Once
	closeOnce sync.Once
	err       error

	// Owned by the goroutine calling Beat.
	lastSeq  int64
	bootID   string
	tokens   float64
	refilled time.Time
}

// Connect opens a stream for nodeID, replacing (ErrSuperseded) any stream
// the node already has here. It refuses revoked nodes with ErrRevoked.
func (c *Core) Connect(ctx context.Context, nodeID string) (*Session, error) {
	if c.closing.Load() {
		return nil, ErrClosing
	}
	if c.revokedNode(ctx, nodeID) {
		return nil, ErrRevoked
	}
	sh := c.shardOf(nodeID)
	e, err := c.lockEntry(ctx, sh, nodeID)
	if err != nil {
		return nil, err
	}
	s := &Session{
		core: c, nodeID: nodeID, sh: sh, e: e,
		changed: make(chan struct{}, 1), done: make(chan struct{}),
		tokens: beatBurst, refilled: c.clock.Now(),
	}
	old := e.sess
	e.sess = s
	sh.mu.Unlock()
	c.stats.sessions.Add(1)
	if old != nil {
		old.end(ErrSuperseded)
	}
	// Checked again now that the session is visible to Revoke, so that a
	// revocation between the first check and here is not missed.
	if c.revokedNode(ctx, nodeID) || c.closing.Load() {
		err := ErrRevoked
		if c.closing.Load() {
			err = ErrClosing
		}
		s.Close()
		return nil, err
	}
	return s, nil
}

// lockEntry returns the node's entry with the shard locked, creating it if
// needed. A new entry starts from the node's stored row: the first beat is
// compared with it to tell a reboot or a status change, wherever the node
// streamed before.
func (c *Core) lockEntry(ctx context.Context, sh *shard, nodeID string) (*entry, error) {
	sh.mu.Lock()
	if e := sh.entries[nodeID]; e != nil && e.known {
		return e, nil
	}
	sh.mu.Unlock()
	l, err := c.store.GetLiveness(ctx, nodeID)
	if err != nil && !errors.Is(err, heartbeatstore.ErrNotFound) {
		return nil, fmt.Errorf("connect node %s: %w", nodeID, err)
	}
	sh.mu.Lock()
	e := sh.entries[nodeID]
	if e == nil {
		e = &entry{nodeID: nodeID}
		sh.entries[nodeID] = e
	}
	if !e.known && err == nil {
		e.known, e.lastSeen, e.seq, e.bootID, e.status, e.uptime = true, l.LastSeen, l.Sequence, l.BootID, l.Status, l.Uptime
		e.healthy = l.State == heartbeatstore.StateHealthy
	}
	return e, nil
}

// NodeID returns the session's node.
func (s *Session) NodeID() string { return s.nodeID }

// Interval returns the node's interval now: the fleet interval less a
// per-node jitter.
func (s *Session) Interval() time.Duration {
	return jittered(s.nodeID, s.core.currentTimings().Interval)
}

// Changed receives when the interval changed; send the node Interval().
func (s *Session) Changed() <-chan struct{} { return s.changed }

// Done is closed when the stream must end; Err says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended (ErrRevoked, ErrSuperseded, ErrClosing),
// or nil while it is open or after Close.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

func (s *Session) end(err error) {
	s.endOnce.Do(func() {
		s.err = err
		close(s.done)
	})
}

func (s *Session) notifyChanged() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Close ends the session when its stream ends. The node's last beat is
// still flushed.
func (s *Session) Close() {
	s.closeOnce.Do(s.close)
}

func (s *Session) close() {
	s.sh.mu.Lock()
	if s.e.sess == s {
		s.e.sess = nil
		if !s.e.dirty {
			delete(s.sh.entries, s.nodeID)
		}
	}
	s.sh.mu.Unlock()
	s.endOnce.Do(func() {
		close(s.done)
	})
	s.core.stats.sessions.Add(-1)
}

// Beat records a beat and returns the interval the node must use. A beat
// whose sequence does not increase (ErrSequence), whose boot ID differs
// from the stream's first (ErrBootChanged), or that comes too fast
// (ErrTooFast) is refused and changes nothing. After the session ended it
// returns the reason.
//
// A beat that raises an event (see durable) is written to the store, with
// its events, before Beat returns, so that an acknowledged beat's events
// survive this replica; if the store fails, so does the beat, and the node
// sends it again. Other beats stay in memory until the next flush.
func (s *Session) Beat(ctx context.Context, b Beat) (time.Duration, error) {
	if err := s.Err(); err != nil {
		return 0, err
	}
	switch {
	case s.lastSeq != 0 && b.Sequence <= s.lastSeq:
		return 0, ErrSequence
	case s.bootID != "" && b.BootID != s.bootID:
		return 0, ErrBootChanged
	}
	now := s.core.clock.Now()
	interval := s.Interval()
	if !s.allow(now, interval) {
		return 0, ErrTooFast
	}
	s.sh.mu.Lock()
	if s.e.sess != s {
		s.sh.mu.Unlock()
		return 0, ErrSuperseded
	}
	durable := s.durable(now, b)
	if durable {
		// Written outside the shard lock: the store may be slow, and other
		// nodes of the shard keep beating meanwhile. A newer stream of the
		// node may take over in between; its beats then prevail.
		s.sh.mu.Unlock()
		if err := s.core.recordBeat(ctx, s.nodeID, now, b); err != nil {
			return 0, err
		}
		s.sh.mu.Lock()
		if s.e.sess != s {
			s.sh.mu.Unlock()
			return 0, ErrSuperseded
		}
		s.e.healthy = true
	}
	s.record(now, b)
	s.sh.mu.Unlock()
	s.lastSeq, s.bootID = b.Sequence, b.BootID
	s.core.stats.beats.Add(1)
	return interval, nil
}

// durable says whether a beat raises an event, and so must be written
// before it is acknowledged: the node is new, or not healthy in the store,
// or may have been declared silent meanwhile (it was quiet for nearly two
// intervals: the decider reads last-seen times up to a flush period old);
// or the first beat of a stream brings a new boot ID, or the status
// changed, or the agent sent events. The shard lock is held.
func (s *Session) durable(now time.Time, b Beat) bool {
	e := s.e
	quiet := 2*s.core.currentTimings().Interval - s.core.cfg.FlushPeriod
	return !e.known || !e.healthy || now.Sub(e.lastSeen) >= quiet ||
		(s.bootID == "" && e.bootID != b.BootID) || e.status != b.Status || len(b.Events) > 0 ||
		b.Reported != nil || b.BundleApplied != nil
}

// recordBeat writes one beat and its events to the store.
func (c *Core) recordBeat(ctx context.Context, nodeID string, now time.Time, b Beat) error {
	o := heartbeatstore.Observation{NodeID: nodeID, LastSeen: now, Sequence: b.Sequence, BootID: b.BootID, Status: b.Status, Uptime: b.Uptime,
		BundleApplied: b.BundleApplied}
	if b.Reported != nil {
		r := *b.Reported
		r.At = now // when the server heard it: the node's clock may be off
		o.Reported = &r
	}
	var events []heartbeatstore.Event
	for _, ev := range b.Events {
		events = append(events, heartbeatstore.Event{Time: now, NodeID: nodeID, Type: heartbeatstore.EventNode,
			BootID: b.BootID, Status: b.Status, Kind: ev.Kind, Message: ev.Message,
			Severity: ev.Severity, EventTime: ev.Time, Instance: b.Instance, Seq: ev.Seq})
	}
	written, err := c.store.Record(ctx, o, events)
	if err != nil {
		return fmt.Errorf("beat of node %s: %w", nodeID, err)
	}
	c.stats.events.Add(int64(len(written)))
	return nil
}

// record updates the entry with the beat; the shard lock is held.
func (s *Session) record(now time.Time, b Beat) {
	e, sh := s.e, s.sh
	e.known, e.lastSeen, e.seq, e.bootID, e.status, e.uptime = true, now, b.Sequence, b.BootID, b.Status, b.Uptime
	if !e.dirty {
		e.dirty = true
		sh.dirty = append(sh.dirty, e)
	}
}

// allow is a token bucket: beatBurst beats at once, then beatsPerInterval
// per interval.
func (s *Session) allow(now time.Time, interval time.Duration) bool {
	if elapsed := now.Sub(s.refilled); elapsed > 0 {
		s.tokens = min(beatBurst, s.tokens+float64(elapsed)*beatsPerInterval/float64(interval))
		s.refilled = now
	}
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// Revoke ends the node's stream with ErrRevoked and refuses its new
// streams on this replica from now on. Other replicas learn of revocations
// through Config.IsRevoked.
func (c *Core) Revoke(nodeID string) {
	c.revokedMu.Lock()
	c.revoked[nodeID] = struct{}{}
	c.revokedMu.Unlock()
	sh := c.shardOf(nodeID)
	sh.mu.Lock()
	var s *Session
	if e := sh.entries[nodeID]; e != nil {
		s = e.sess
	}
	sh.mu.Unlock()
	if s != nil {
		s.end(ErrRevoked)
		c.log.Info("stream of revoked node closed", attrNode, nodeID)
	}
}

func (c *Core) revokedNode(ctx context.Context, nodeID string) bool {
	c.revokedMu.Lock()
	_, ok := c.revoked[nodeID]
	c.revokedMu.Unlock()
	return ok || c.isRevoked != nil && c.isRevoked(ctx, nodeID)
}

// CheckRevocations asks Config.IsRevoked about every connected node and
// ends the streams of revoked ones. Run calls it every RevocationCheck.
func (c *Core) CheckRevocations(ctx context.Context) {
	if c.isRevoked == nil {
		return
	}
	var n int
	c.endSessions(func(nodeID string) error {
		if ctx.Err() == nil && c.isRevoked(ctx, nodeID) {
			n++
			return ErrRevoked
		}
		return nil
	})
	if n > 0 {
		c.log.Info("streams of revoked nodes closed", attrCount, n)
	}
}

// endSessions ends every session for which why returns an error. why is
// called without locks held.
func (c *Core) endSessions(why func(nodeID string) error) {
	for _, sh := range c.shards {
		for _, s := range sh.sessions() {
			if err := why(s.nodeID); err != nil {
				s.end(err)
			}
		}
	}
}

// forSessions calls f for every open session.
func (c *Core) forSessions(f func(*Session)) {
	for _, sh := range c.shards {
		for _, s := range sh.sessions() {
			f(s)
		}
	}
}

func (sh *shard) sessions() []*Session {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make([]*Session, 0, len(sh.entries))
	for _, e := range sh.entries {
		if e.sess != nil {
			out = append(out, e.sess)
		}
	}
	return out
}
