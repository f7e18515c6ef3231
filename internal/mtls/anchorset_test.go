package mtls

import (
	"crypto/x509"
	"sync"
	"testing"
	"time"
)

// TestAnchorSetBounded: concurrent handshakes that learn the same
// intermediate keep it once, a chain whose root constrains it teaches
// nothing, and however many intermediates verify, at most maxAnchors are
// kept (a deployment has one, two during a rotation).
func TestAnchorSetBounded(t *testing.T) {
	now := time.Now()
	root := &x509.Certificate{Raw: []byte("root"), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	inter := func(i int) *x509.Certificate {
		return &x509.Certificate{Raw: []byte{'i', byte(i)}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Minute)}
	}
	leaf := &x509.Certificate{Raw: []byte("leaf")}
	var s anchorSet

	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { s.learn([]*x509.Certificate{leaf, inter(0), root}) })
	}
	wg.Wait()
	if len(s.certs) != 1 || s.find(inter(0)) == nil {
		t.Fatalf("after 16 learns of one intermediate: %d kept, found %v", len(s.certs), s.find(inter(0)))
	}

	constraining := &x509.Certificate{Raw: []byte("root2"), NotBefore: root.NotBefore, NotAfter: root.NotAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	s.learn([]*x509.Certificate{leaf, inter(1), constraining})
	if s.find(inter(1)) != nil {
		t.Fatal("an intermediate under a constraining root was learned")
	}

	for i := range 2 * maxAnchors {
		s.learn([]*x509.Certificate{leaf, inter(i), root})
	}
	if len(s.certs) != maxAnchors {
		t.Fatalf("%d anchors kept, want at most %d", len(s.certs), maxAnchors)
	}
	if s.find(inter(2*maxAnchors-1)) != nil {
		t.Error("an intermediate past the limit was kept")
	}
	var none *anchorSet
	if none.find(inter(0)) != nil {
		t.Error("a nil set found an anchor")
	}
	none.learn([]*x509.Certificate{leaf, inter(0), root}) // must not panic
}
