package metrics

import (
	"sync"
	"sync/atomic"
)

// WatcherSet is the open watches of one event log and how far each has
// read, so that a refresh can tell how far the slowest is behind the
// log's head without asking any of them. A nil set records nothing.
type WatcherSet struct {
	mu  sync.Mutex
	pos map[*int64]struct{}
}

// Watcher is one open watch's position.
type Watcher struct {
	set *WatcherSet
	pos *int64
}

// Open adds a watch that starts after cursor.
func (s *WatcherSet) Open(after int64) *Watcher {
	if s == nil {
		return nil
	}
	p := new(int64)
	atomic.StoreInt64(p, after)
	s.mu.Lock()
	s.pos[p] = struct{}{}
	s.mu.Unlock()
	return &Watcher{set: s, pos: p}
}

// Read records that the watch has read the log up to cursor.
func (w *Watcher) Read(cursor int64) {
	if w != nil {
		atomic.StoreInt64(w.pos, cursor)
	}
}

// Close removes the watch.
func (w *Watcher) Close() {
	if w == nil {
		return
	}
	w.set.mu.Lock()
	delete(w.set.pos, w.pos)
	w.set.mu.Unlock()
}

// Stats returns how many watches are open and how many events the slowest
// has yet to read of a log whose newest cursor is head.
func (s *WatcherSet) Stats(head int64) (open int, lag int64) {
	if s == nil {
		return 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.pos {
		lag = max(lag, head-atomic.LoadInt64(p))
	}
	return len(s.pos), lag
}
