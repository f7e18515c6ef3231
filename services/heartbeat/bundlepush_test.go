package heartbeat

import (
	"testing"

	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

// TestBundleVersionPushed: a node's open stream is told its new bundle
// version at once; a stream opened later is told the known one first; an
// older or repeated version is not told again, and a reset starts over.
func TestBundleVersionPushed(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		s, _ := open(t, e.node(t, "node-1"))
		s.beat()
		e.svc.BundleChanged("node-2", 7) // another node's: not told here
		e.svc.BundleChanged("node-1", 3)
		if m, err := s.s.Recv(); err != nil || m.GetBundleVersion() != 3 || m.GetAckSequence() != 0 {
			t.Fatalf("pushed %v, %v; want bundle version 3", m, err)
		}
		e.svc.BundleChanged("node-1", 2) // older: an event seen again
		e.svc.BundleChanged("node-1", 3)
		if ack := s.beat(); ack.GetBundleVersion() != 0 || ack.GetAckSequence() != 2 {
			t.Fatalf("after stale versions: %v, want only the acknowledgement", ack)
		}

		// A new stream of the node hears the known version first.
		s2, first := open(t, e.node(t, "node-1"))
		if first.GetInterval() == nil {
			t.Fatalf("first message %v, want the interval", first)
		}
		if m, err := s2.s.Recv(); err != nil || m.GetBundleVersion() != 3 {
			t.Fatalf("second message %v, %v; want bundle version 3", m, err)
		}

		e.svc.BundleChanged("node-1", 0) // reset
		e.svc.BundleChanged("node-1", 1)
		if m, err := s2.s.Recv(); err != nil || m.GetBundleVersion() != 1 {
			t.Fatalf("after a reset: %v, %v; want bundle version 1", m, err)
		}
	})
}
