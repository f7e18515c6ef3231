package chaos

import (
	"context"
	"fmt"
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
	// events that are lost (a change without its event, an event a
	// follower never got) or duplicated (twice in a log, delivered twice,
	// a transition recorded again), in all three logs and by log.
	lostEvents, dupEvents int
	lostByLog, dupByLog   map[string]int
	// holes are new cursor holes in the logs: appends rolled back, which
	// PostgreSQL's identity columns leave (see watchedLog); not a loss.
	holes      int
	holesByLog map[string]int
	recover    time.Duration
	problems   []string
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
