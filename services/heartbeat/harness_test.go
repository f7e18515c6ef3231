package heartbeat

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// env is a heartbeat service with a real store, served by grpctest with
// berth's interceptors and mTLS.
type env struct {
	srv     *grpctest.Server
	layout  *pki.Layout
	store   heartbeatstore.Store
	clock   *clock.Fake
	svc     *Service
	logs    *grpctest.Logs
	revoked sync.Map // node IDs the IsRevoked hook reports
}

// newStore opens an empty heartbeat store on engine.
func newStore(t testing.TB, engine string) heartbeatstore.Store {
	t.Helper()
	ctx := context.Background()
	var (
		s   heartbeatstore.Store
		err error
	)
	switch engine {
	case pgtest.SQLite:
		s, err = heartbeatstore.Open(ctx, db.SQLite, filepath.Join(t.TempDir(), "heartbeat.db"))
	case pgtest.Postgres:
		s, err = heartbeatstore.Open(ctx, db.Postgres, pgtest.NewDatabase(t))
	default:
		t.Fatalf("unknown engine %q", engine)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newEnv(t testing.TB, engine string) *env {
	t.Helper()
	return newEnvOn(t, engine, false)
}

// newEnvOn is newEnv, listening on loopback TCP instead of bufconn when tcp
// is set (bufconn's 1 MiB pipes would dwarf what a connection costs), with
// the service's Config changed by mod.
func newEnvOn(t testing.TB, engine string, tcp bool, mod ...func(*Config)) *env {
	t.Helper()
	clk := clock.NewFake(t0)
	log, logs := grpctest.NewLogger()
	srv := grpctest.New(t, grpctest.Config{TCP: tcp, Logger: log})
	e := &env{srv: srv, layout: srv.Layout, store: newStore(t, engine), clock: clk, logs: logs}
	cfg := Config{
		Store:  e.store,
		Logger: log,
		Clock:  clk,
		IsRevoked: func(_ context.Context, id string) bool {
			_, ok := e.revoked.Load(id)
			return ok
		},
	}
	for _, m := range mod {
		m(&cfg)
	}
	var err error
	if e.svc, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	srv.Serve(t, pki.ServiceHeartbeat, e.svc.Policy(), e.svc.Register)
	return e
}

// dial connects presenting cert.
func (e *env) dial(t testing.TB, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	return e.srv.Dial(t, cert)
}

// nodeCert mints a node certificate for id, as the CA does.
func (e *env) nodeCert(t testing.TB, id string) tls.Certificate {
	t.Helper()
	return e.srv.NodeCert(t, id).TLS
}

func (e *env) node(t testing.TB, id string) berthv1.HeartbeatServiceClient {
	return berthv1.NewHeartbeatServiceClient(e.srv.Node(t, id))
}

func (e *env) admin(t *testing.T) berthv1.HeartbeatAdminServiceClient {
	t.Helper()
	return berthv1.NewHeartbeatAdminServiceClient(e.srv.Admin(t))
}

// stream is an open heartbeat stream of a node.
type stream struct {
	t   *testing.T
	s   berthv1.HeartbeatService_HeartbeatClient
	seq atomic.Uint64
}

// open opens a stream and reads the first message, which carries the
// interval.
func open(t *testing.T, c berthv1.HeartbeatServiceClient) (*stream, *berthv1.HeartbeatResponse) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := c.Heartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Recv()
	if err != nil {
		t.Fatalf("first message: %v", err)
	}
	return &stream{t: t, s: s}, first
}

func (s *stream) send(req *berthv1.HeartbeatRequest) {
	s.t.Helper()
	if err := s.s.Send(req); err != nil {
		s.t.Fatalf("Send: %v", err)
	}
}

// beat sends the next beat and returns the acknowledgement.
func (s *stream) beat(events ...*berthv1.StatusEvent) *berthv1.HeartbeatResponse {
	s.t.Helper()
	s.send(&berthv1.HeartbeatRequest{Sequence: s.seq.Add(1), BootId: "boot-1", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP, Events: events})
	resp, err := s.s.Recv()
	if err != nil {
		s.t.Fatalf("Recv: %v", err)
	}
	return resp
}

func wantCode(t *testing.T, err error, want codes.Code) { t.Helper(); grpctest.WantCode(t, err, want) }

// endOf reads until the stream ends and returns its error.
func endOf(s berthv1.HeartbeatService_HeartbeatClient) error {
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
}
