package registration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// registrationsLost is a store whose replica dies right after a node's
// registration, and the issuance opened with it, committed: while lost is
// set, RegisterIssuing commits and then fails as a dropped connection
// does, so the CA is never asked.
type registrationsLost struct {
	regstore.Store
	lost atomic.Bool
}

func (c *registrationsLost) RegisterIssuing(ctx context.Context, tokenID string, now time.Time, n regstore.Node, replaceID, requestID string) (regstore.Node, regstore.Intent, error) {
	got, open, err := c.Store.RegisterIssuing(ctx, tokenID, now, n, replaceID, requestID)
	if err == nil && c.lost.Load() {
		return regstore.Node{}, regstore.Intent{}, errors.New("register node: connection lost")
	}
	return got, open, err
}

// nodeByKey returns n's row.
func (e *env) nodeByKey(t *testing.T, n *node) regstore.Node {
	t.Helper()
	got, err := e.reg.GetNodeByKey(context.Background(), keyOf(t, n))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// wantIssuedOnce fails unless node id holds a certificate, counted once in
// its row, once in the CA's log and once in the event log, and returns it.
func (e *env) wantIssuedOnce(t *testing.T, id string) regstore.Node {
	t.Helper()
	got, err := e.reg.GetNode(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	logged, err := e.cas.CountIssued(context.Background(), id, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Cert == nil || got.CertificatesIssued != 1 || logged != 1 {
		t.Errorf("node %s: cert %v, certificates_issued %d, CA log %d; want one certificate", id, got.Cert != nil, got.CertificatesIssued, logged)
	}
	if evs := eventsOf(t, e, id, regstore.EventCertificateIssued); len(evs) != 1 {
		t.Errorf("node %s: %d certificate_issued events, want 1", id, len(evs))
	}
	return got
}

// wantPickedUp fails unless n's next call returns the certificate the
// reconciler stored, without issuing one.
func (e *env) wantPickedUp(t *testing.T, n *node, stored regstore.Node) {
	t.Helper()
	before := e.issuedCount(t)
	resp, err := n.client().Resume(context.Background(), &berthv1.ResumeRequest{})
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if s := leafOf(t, resp.GetCredentials()).SerialNumber.Text(16); stored.Cert == nil || s != stored.Cert.Serial {
		t.Errorf("Resume returned serial %s, the reconciler stored %+v", s, stored.Cert)
	}
	if resp.GetCredentials().GetRenewed() {
		t.Error("Resume says it issued a certificate; the reconciler had")
	}
	if after := e.issuedCount(t); after != before {
		t.Errorf("Resume issued %d certificates, want none", after-before)
	}
}

// TestReconcilerIssuesApproved: a node an administrator approved gets its
// certificate from the reconciler, through an intent, without calling in
// again; while the CA is down the intent stays open and the next pass
// completes it; the node's next call picks the certificate up.
func TestReconcilerIssuesApproved(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		n := e.newNode(uuidA)
		resp, err := n.client().Register(ctx, n.registerRequest(t, e.token(t, &berthv1.CreateTokenRequest{})))
		if err != nil {
			t.Fatalf("Register: %v", err)
		}
		id := resp.GetCredentials().GetNodeId()
		if _, err := e.adminClient().ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		if closed, err := e.svc.Reconcile(ctx, time.Minute); err != nil || closed != 0 {
			t.Fatalf("Reconcile(just approved) = %d, %v; want 0, nil", closed, err)
		}
		e.clock.Advance(2 * time.Minute)

		real := e.ca.get()
		e.caDown()
		if closed, err := e.svc.Reconcile(ctx, time.Minute); err == nil || closed != 0 {
			t.Fatalf("Reconcile(CA down) = %d, %v; want 0 and an error", closed, err)
		}
		if open := e.openIntents(t); len(open) != 1 || open[0].NodeID != id {
			t.Fatalf("open issuances after the CA failed: %+v; want the node's", open)
		}
		e.ca.set(real)
		e.clock.Advance(2 * time.Minute)
		if closed, err := e.svc.Reconcile(ctx, time.Minute); err != nil || closed != 1 {
			t.Fatalf("Reconcile = %d, %v; want 1", closed, err)
		}
		// A second pass finds nothing to do.
		if closed, err := e.svc.Reconcile(ctx, 0); err != nil || closed != 0 {
			t.Fatalf("Reconcile again = %d, %v; want 0", closed, err)
		}
		stored := e.wantIssuedOnce(t, id)
		e.wantPickedUp(t, n, stored)
		e.checkInvariant(t)
	})
}

// TestReconcilerSkipsUnapproved: pending, rejected and revoked nodes get
// nothing from the reconciler.
func TestReconcilerSkipsUnapproved(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		tok := e.token(t, &berthv1.CreateTokenRequest{Uses: 3})
		ids := map[string]string{}
		for _, want := range []string{"pending", "rejected", "revoked"} {
			n := e.newNode(fmt.Sprintf("00000000-0000-4000-8000-%012d", len(ids)+10))
			resp, err := n.client().Register(ctx, n.registerRequest(t, tok))
			if err != nil {
				t.Fatal(err)
			}
			ids[want] = resp.GetCredentials().GetNodeId()
		}
		if _, err := e.adminClient().RejectNode(ctx, &berthv1.RejectNodeRequest{Id: ids["rejected"]}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.adminClient().RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: ids["revoked"], Reason: "lost"}); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Hour)
		if closed, err := e.svc.Reconcile(ctx, time.Minute); err != nil || closed != 0 {
			t.Fatalf("Reconcile = %d, %v; want 0, nil", closed, err)
		}
		if got := e.issuedCount(t); got != 0 {
			t.Errorf("%d certificates issued, want none", got)
		}
		e.checkInvariant(t)
	})
}

// TestReconcilerAfterCrashBetweenWrites: a replica dies between the
// writes of one issuance, at each point, and the reconciler finishes it:
//   - after the node's registration, which opened its intent in the same
//     transaction, before the CA was asked: the node is approved without a
//     certificate, its issuance open;
//   - in the reconciler's own pass, after the CA signed and before the
//     certificate was stored: the next pass completes the same request.
//
// Each node ends with exactly one certificate, the CA's.
func TestReconcilerAfterCrashBetweenWrites(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, b string) {
		var store *registrationsLost
		e := newEnvConfig(t, b, func(c *Config) {
			store = &registrationsLost{Store: c.Store}
			c.Store = store
		})
		ctx := context.Background()
		n := e.newNode(uuidA)
		store.lost.Store(true)
		_, err := n.client().Register(ctx, n.registerRequest(t, e.token(t, &berthv1.CreateTokenRequest{AutoApprove: true})))
		if err == nil {
			t.Fatal("Register succeeded with its answer lost")
		}
		store.lost.Store(false)
		row := e.nodeByKey(t, n)
		if open := e.openIntents(t); row.Status != regstore.StatusApproved || row.Cert != nil || len(open) != 1 || open[0].NodeID != row.ID || e.issuedCount(t) != 0 {
			t.Fatalf("after the crash: status %s, cert %v, open %+v, %d issued; want approved, the node's issuance open, nothing issued",
				row.Status, row.Cert != nil, open, e.issuedCount(t))
		}

		// The reconciler's own answer from the CA is lost: the CA signed,
		// the intent stays open under the same request.
		real := e.ca.get()
		lost := &lostAnswers{CA: real}
		e.ca.set(lost)
		e.clock.Advance(time.Minute)
		if closed, err := e.svc.Reconcile(ctx, 10*time.Second); err == nil || closed != 0 {
			t.Fatalf("Reconcile(answer lost) = %d, %v; want 0 and an error", closed, err)
		}
		open := e.openIntents(t)
		if lost.signed != 1 || len(open) != 1 {
			t.Fatalf("CA signed %d, %d open; want 1 and 1", lost.signed, len(open))
		}
		signed, err := e.cas.GetIssuedByRequest(ctx, open[0].RequestID)
		if err != nil {
			t.Fatalf("the CA's certificate is not under the open request: %v", err)
		}
		e.ca.set(real)
		e.clock.Advance(time.Minute)
		if closed, err := e.svc.Reconcile(ctx, 10*time.Second); err != nil || closed != 1 {
			t.Fatalf("Reconcile = %d, %v; want 1", closed, err)
		}
		stored := e.wantIssuedOnce(t, row.ID)
		if stored.Cert != nil && stored.Cert.Serial != signed.Serial {
			t.Errorf("stored serial %s, the CA signed %s for the request", stored.Cert.Serial, signed.Serial)
		}
		e.wantPickedUp(t, n, stored)
		e.checkInvariant(t)
	})
}

// replicas returns an env and a second registration service on the same
// database (its own store), as two berthd replicas.
func replicas(t *testing.T, engine string) (*env, *Service) {
	ctx := context.Background()
	var (
		b    backend
		open func() (regstore.Store, error)
	)
	switch engine {
	case pgtest.SQLite:
		dir := t.TempDir()
		b = sqliteIn(dir)
		open = func() (regstore.Store, error) {
			return regstore.Open(ctx, db.SQLite, filepath.Join(dir, "registration.db"))
		}
	default:
		dsn := pgtest.NewDatabase(t)
		b = postgresAt(dsn)
		open = func() (regstore.Store, error) { return regstore.Open(ctx, db.Postgres, dsn) }
	}
	e := newEnv(t, b)
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	second, err := New(Config{Store: s, CA: e.ca, TrustBundle: [][]byte{e.layout.Root.Raw}, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	return e, second
}

// TestReconcilersAcrossReplicas: two replicas reconcile the same approved
// nodes at once, twice each: every node gets exactly one certificate, one
// certificate_issued event, and the CA's log agrees.
func TestReconcilersAcrossReplicas(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		e, second := replicas(t, engine)
		const count = 8
		tok := e.token(t, &berthv1.CreateTokenRequest{Uses: count})
		var (
			nodes []*node
			ids   []string
		)
		for i := range count {
			n := e.newNode(fmt.Sprintf("00000000-0000-4000-8000-%012d", i+100))
			resp, err := n.client().Register(ctx, n.registerRequest(t, tok))
			if err != nil {
				t.Fatal(err)
			}
			id := resp.GetCredentials().GetNodeId()
			if _, err := e.adminClient().ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: id}); err != nil {
				t.Fatal(err)
			}
			nodes, ids = append(nodes, n), append(ids, id)
		}
		e.clock.Advance(time.Minute)

		start := make(chan struct{})
		errs := make(chan error, 4)
		var wg sync.WaitGroup
		for i := range 4 {
			svc := []*Service{e.svc, second}[i%2]
			wg.Go(func() {
				<-start
				_, err := svc.Reconcile(ctx, 10*time.Second)
				errs <- err
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Reconcile: %v", err)
			}
		}
		if got := e.issuedCount(t); got != count {
			t.Errorf("%d certificates issued for %d nodes", got, count)
		}
		if open := e.openIntents(t); len(open) != 0 {
			t.Errorf("%d issuances left open", len(open))
		}
		for i, id := range ids {
			e.wantPickedUp(t, nodes[i], e.wantIssuedOnce(t, id))
		}
		e.checkInvariant(t)
	})
}

// TestApprovedNodeCallsWhileReconciling: a node calling in while the
// reconciler issues its certificate meets it on the intent: one
// certificate, which both see.
func TestApprovedNodeCallsWhileReconciling(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		n := e.newNode(uuidA)
		resp, err := n.client().Register(ctx, n.registerRequest(t, e.token(t, &berthv1.CreateTokenRequest{})))
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetCredentials().GetNodeId()
		if _, err := e.adminClient().ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		var (
			wg      sync.WaitGroup
			recErr  error
			serial  string
			callErr error
		)
		wg.Go(func() { _, recErr = e.svc.Reconcile(ctx, 0) })
		wg.Go(func() {
			r, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
			if callErr = err; err == nil {
				serial = leafOf(t, r.GetCredentials()).SerialNumber.Text(16)
			}
		})
		wg.Wait()
		if recErr != nil || callErr != nil {
			t.Fatalf("Reconcile: %v; Resume: %v", recErr, callErr)
		}
		stored := e.wantIssuedOnce(t, id)
		if stored.Cert != nil && serial != stored.Cert.Serial {
			t.Errorf("the node got %s, the store holds %s", serial, stored.Cert.Serial)
		}
		e.checkInvariant(t)
	})
}
