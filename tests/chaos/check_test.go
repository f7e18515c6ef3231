package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func tokenRequest(uses int) *berthv1.CreateTokenRequest {
	return &berthv1.CreateTokenRequest{TtlSeconds: 3600, Uses: int32(uses), AutoApprove: true, Description: "chaos test"}
}

// fleet is what berth knows of one fault's nodes, read through the admin
// APIs after a storm.
type fleet struct {
	nodes  map[string]*berthv1.Node                // by node ID
	issued map[string][]*berthv1.IssuedCertificate // the CA's log, by node ID
	// strangers are CA log entries of nodes the registry does not know.
	strangers int
}

// readFleet reads the registry's nodes registered with tokenID, and the
// whole CA log.
func (d *deployment) readFleet(t *testing.T, tokenID string) *fleet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := &fleet{nodes: map[string]*berthv1.Node{}, issued: map[string][]*berthv1.IssuedCertificate{}}
	known := map[string]bool{}
	req := &berthv1.ListNodesRequest{PageSize: 1000}
	for {
		resp, err := d.nodesAdmin().ListNodes(ctx, req)
		if err != nil {
			t.Fatalf("list nodes: %v", err)
		}
		for _, n := range resp.GetNodes() {
			known[n.GetId()] = true
			if n.GetTokenId() == tokenID {
				f.nodes[n.GetId()] = n
			}
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	resp, err := d.caAdmin().ListIssued(ctx, &berthv1.ListIssuedRequest{})
	if err != nil {
		t.Fatalf("list the CA's issued certificates: %v", err)
	}
	for _, c := range resp.GetCertificates() {
		if !known[c.GetNodeId()] {
			f.strangers++
			continue
		}
		if f.nodes[c.GetNodeId()] != nil {
			f.issued[c.GetNodeId()] = append(f.issued[c.GetNodeId()], c)
		}
	}
	return f
}

// outcome is one storm under one fault: a row of the fault matrix.
type outcome struct {
	fault, storm string
	nodes        int
	booted       int
	gaveUp       int
	gaveUpSample string
	// certsMin and certsMax are the CA log's certificates per node.
	certsMin, certsMax int
	// mismatched nodes: certificates_issued differs from the CA's log, or
	// the current certificate is not the newest the CA issued to it.
	mismatched int
	// orphans: certificates the CA issued that no node knows (of a node
	// not in the registry, or beyond the node's own count).
	orphans int
	// duplicateRequests: request IDs the CA issued more than one
	// certificate for (the whole log).
	duplicateRequests int
	// events that are lost (a node's change without its event) or
	// duplicated (twice in the log, or delivered twice to a follower).
	lostEvents, dupEvents int
	recover               time.Duration
	problems              []string
	// betweenSignAndWrite is the fault's (see fault).
	betweenSignAndWrite bool
}

func (o *outcome) problem(format string, args ...any) {
	if len(o.problems) < 10 {
		o.problems = append(o.problems, fmt.Sprintf(format, args...))
	}
}

// checkCerts compares each node with the CA's log. Each must hold one
// certificate: the registration storm issues it, the resume storm issues
// none. Orphans are the certificates the storm added that the registry
// does not count: of nodes it does not know, or beyond a node's
// certificates_issued.
func (o *outcome) checkCerts(f, before *fleet) {
	o.certsMin, o.certsMax = -1, 0
	if len(f.nodes) != o.nodes {
		o.problem("%d nodes registered with the row's token, want %d", len(f.nodes), o.nodes)
	}
	o.orphans = f.strangers - before.strangers + f.uncounted() - before.uncounted()
	for id, n := range f.nodes {
		certs := f.issued[id]
		c := len(certs)
		if o.certsMin < 0 || c < o.certsMin {
			o.certsMin = c
		}
		o.certsMax = max(o.certsMax, c)
		if int64(c) != n.GetCertificatesIssued() {
			o.mismatched++
			o.problem("node %s: certificates_issued %d, the CA's log %d", id, n.GetCertificatesIssued(), c)
		}
		if c != 1 {
			o.problem("node %s: %d certificates in the CA's log (%d before this storm), want 1", id, c, len(before.issued[id]))
		}
		if c > 0 {
			newest := certs[0]
			for _, x := range certs {
				if x.GetIssuedAt().AsTime().After(newest.GetIssuedAt().AsTime()) {
					newest = x
				}
			}
			if newest.GetSerial() != n.GetCertSerial() {
				o.mismatched++
				o.problem("node %s: current certificate %s, the CA's newest %s", id, n.GetCertSerial(), newest.GetSerial())
			}
		}
	}
	if o.certsMin < 0 {
		o.certsMin = 0
	}
}

// uncounted is how many certificates of the fleet's nodes the CA's log
// holds beyond their certificates_issued.
func (f *fleet) uncounted() int {
	n := 0
	for id, node := range f.nodes {
		n += max(len(f.issued[id])-int(node.GetCertificatesIssued()), 0)
	}
	return n
}

// duplicateRequests counts the request IDs the CA's log (in the
// database: no RPC shows request IDs yet) holds more than one certificate
// for.
func (d *deployment) duplicateRequests(t *testing.T) int {
	t.Helper()
	return d.countSQL(t, `SELECT count(*) FROM (SELECT request_id FROM ca_issued
		WHERE request_id <> '' GROUP BY request_id HAVING count(*) > 1) dup`)
}

// countSQL runs a count over berth's database.
func (d *deployment) countSQL(t *testing.T, query string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		t.Fatalf("read berth's database: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// follower follows the node event log as an engine does: replay from the
// start, then live, resuming after its last cursor whenever the stream
// breaks (a replica killed, the database gone).
type follower struct {
	mu     sync.Mutex
	events []*berthv1.LifecycleEvent
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *deployment) follow() *follower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for ctx.Err() == nil {
			f.mu.Lock()
			var after int64
			if n := len(f.events); n > 0 {
				after = f.events[n-1].GetCursor()
			}
			f.mu.Unlock()
			stream, err := d.nodesAdmin().WatchNodeEvents(ctx, &berthv1.WatchNodeEventsRequest{Filter: &berthv1.LifecycleFilter{AfterCursor: after}})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for {
				resp, err := stream.Recv()
				if err != nil {
					break
				}
				f.mu.Lock()
				f.events = append(f.events, resp.GetEvent())
				f.mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return f
}

func (f *follower) stop() { f.cancel(); <-f.done }

func (f *follower) snapshot() []*berthv1.LifecycleEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*berthv1.LifecycleEvent(nil), f.events...)
}

// replay reads the whole node event log afresh, until it has been quiet
// for a second.
func (d *deployment) replay(t *testing.T) []*berthv1.LifecycleEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream, err := d.nodesAdmin().WatchNodeEvents(ctx, &berthv1.WatchNodeEventsRequest{Filter: &berthv1.LifecycleFilter{}})
	if err != nil {
		t.Fatalf("replay the node event log: %v", err)
	}
	got := make(chan *berthv1.LifecycleEvent)
	errc := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			got <- resp.GetEvent()
		}
	}()
	var out []*berthv1.LifecycleEvent
	for {
		select {
		case ev := <-got:
			out = append(out, ev)
		case err := <-errc:
			if !errors.Is(err, io.EOF) {
				t.Fatalf("replay the node event log: %v", err)
			}
			return out
		case <-time.After(time.Second):
			cancel()
			return out
		}
	}
}

// checkEvents compares the log after cursor since, as replayed now and as
// the follower saw it through the faults, with what the row's nodes did: each registered once
// and had each certificate recorded once.
func (o *outcome) checkEvents(f *fleet, since int64, replayed, followed []*berthv1.LifecycleEvent) {
	seen := map[int64]bool{}
	for _, ev := range replayed {
		if ev.GetCursor() <= since {
			continue
		}
		if seen[ev.GetCursor()] {
			o.dupEvents++
			o.problem("cursor %d twice in the replayed log", ev.GetCursor())
		}
		seen[ev.GetCursor()] = true
	}
	got := map[int64]bool{}
	last := since
	for _, ev := range followed {
		if ev.GetCursor() <= since && !got[ev.GetCursor()] {
			continue
		}
		if got[ev.GetCursor()] || ev.GetCursor() <= last {
			o.dupEvents++
			o.problem("the follower got cursor %d again (after %d)", ev.GetCursor(), last)
		}
		got[ev.GetCursor()] = true
		last = max(last, ev.GetCursor())
	}
	for c := range seen {
		if c <= last && !got[c] {
			o.lostEvents++
			o.problem("the follower never got cursor %d", c)
		}
	}
	byNode := map[string]map[string]int{}
	for _, ev := range replayed {
		if f.nodes[ev.GetNodeId()] == nil {
			continue
		}
		if byNode[ev.GetNodeId()] == nil {
			byNode[ev.GetNodeId()] = map[string]int{}
		}
		byNode[ev.GetNodeId()][ev.GetType()]++
	}
	ids := make([]string, 0, len(f.nodes))
	for id := range f.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		n := f.nodes[id]
		types := byNode[id]
		if c := types["registered"]; c != 1 {
			o.countEvent(c, 1, "node %s: %d registered events", id, c)
		}
		certs := types["certificate_issued"] + types["certificate_renewed"]
		if want := int(n.GetCertificatesIssued()); certs != want {
			o.countEvent(certs, want, "node %s: %d certificate events for %d certificates", id, certs, want)
		}
	}
}

func (o *outcome) countEvent(got, want int, format string, args ...any) {
	if got < want {
		o.lostEvents += want - got
	} else {
		o.dupEvents += got - want
	}
	o.problem(format, args...)
}

// waitCaughtUp waits until the follower has every event the replay has.
func (f *follower) waitCaughtUp(replayed []*berthv1.LifecycleEvent) []*berthv1.LifecycleEvent {
	var newest int64
	for _, ev := range replayed {
		newest = max(newest, ev.GetCursor())
	}
	deadline := time.Now().Add(time.Minute)
	for {
		evs := f.snapshot()
		if n := len(evs); (n > 0 && evs[n-1].GetCursor() >= newest) || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(100 * time.Millisecond)
	}
}
