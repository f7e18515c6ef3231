package heartbeat

import (
	"sync"
)

// bundlePush tells nodes with an open stream on this replica that their
// bundle changed. It learns versions from the bundle store's events
// (BundleChanged); every replica learns all of them, so whichever holds a
// node's stream tells it. The versions are a cache: a node that missed one
// (not connected, or connected to a replica that started after the event)
// learns its current version from the bundle store when it reconnects.
type bundlePush struct {
	mu       sync.Mutex
	versions map[string]int64
	streams  map[string]chan int64 // one per node with an open stream here
}

func newBundlePush() *bundlePush {
	return &bundlePush{versions: map[string]int64{}, streams: map[string]chan int64{}}
}

// changed records version as nodeID's current bundle and tells its open
// stream, if any. An older version than one already known changes
// nothing: events may arrive again after a watch reconnects.
func (p *bundlePush) changed(nodeID string, version int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if version <= p.versions[nodeID] {
		return
	}
	p.versions[nodeID] = version
	if ch := p.streams[nodeID]; ch != nil {
		// The channel holds the latest only: a node told 3 then 4 before
		// it read either needs only 4.
		select {
		case <-ch:
		default:
		}
		ch <- version
	}
}

// open registers nodeID's stream and returns the channel of its versions,
// primed with the known one, and a function to call when the stream ends.
func (p *bundlePush) open(nodeID string) (<-chan int64, func()) {
	ch := make(chan int64, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.versions[nodeID]; v > 0 {
		ch <- v
	}
	p.streams[nodeID] = ch
	return ch, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.streams[nodeID] == ch {
			delete(p.streams, nodeID)
		}
	}
}

// forget drops a deleted node's version.
func (p *bundlePush) forget(nodeID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.versions, nodeID)
}
