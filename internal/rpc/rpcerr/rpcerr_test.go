package rpcerr

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite"

	"github.com/berth-dev/berth/internal/db"
)

var (
	errGone     = errors.New("gone")
	errBroken   = errors.New("broken beyond repair")
	errRecorded = errors.New("not recorded")
)

type sizeError struct{ size, limit int }

func (e *sizeError) Error() string { return fmt.Sprintf("%d over %d", e.size, e.limit) }

var table = Table{
	Is(errGone, codes.NotFound, "it is gone"),
	As(codes.ResourceExhausted, func(e *sizeError) string { return fmt.Sprintf("limit is %d", e.limit) }),
	Is(errRecorded, codes.Internal, "certificate not recorded"),
	Is(errBroken, codes.FailedPrecondition, "broken"),
}

func TestClassify(t *testing.T) {
	pgDown := postgresDown(t)
	busy := sqliteBusy(t)
	depDown := dependencyDown(t)
	depCanceled := status.Error(codes.Canceled, "context canceled")
	depDeadline := status.Error(codes.DeadlineExceeded, "deadline")
	depInternal := status.Error(codes.Internal, "the CA's own internal message")
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		err      error
		wantCode codes.Code
		wantMsg  string
	}{
		{"validation", nil, fmt.Errorf("check: %w", Invalid("node_id", "must match x")), codes.InvalidArgument, "node_id must match x"},
		{"sentinel", nil, fmt.Errorf("get node n1: %w", errGone), codes.NotFound, "it is gone"},
		{"type", nil, fmt.Errorf("put: %w", &sizeError{size: 9, limit: 4}), codes.ResourceExhausted, "limit is 4"},
		{"first case wins", nil, errors.Join(errBroken, errGone), codes.NotFound, "it is gone"},
		{"unknown", nil, errors.New("disk on fire"), codes.Internal, MsgInternal},
		{"canceled", nil, fmt.Errorf("query: %w", context.Canceled), codes.Canceled, MsgCanceled},
		{"deadline", nil, fmt.Errorf("query: %w", context.DeadlineExceeded), codes.DeadlineExceeded, MsgDeadline},
		{"PostgreSQL unreachable", nil, fmt.Errorf("get node: %w", pgDown), codes.Unavailable, MsgDatabaseUnavailable},
		{"SQLite busy", nil, fmt.Errorf("put: %w", busy), codes.Unavailable, MsgDatabaseUnavailable},
		{"unavailable beats an Internal case", nil, fmt.Errorf("%w: %w", errRecorded, pgDown), codes.Unavailable, MsgDatabaseUnavailable},
		{"an Internal case otherwise keeps its message", nil, fmt.Errorf("%w: %w", errRecorded, errors.New("bad row")), codes.Internal, "certificate not recorded"},
		{"a non-Internal case beats unavailable", nil, fmt.Errorf("%w: %w", errBroken, pgDown), codes.FailedPrecondition, "broken"},
		{"dependency unavailable", nil, fmt.Errorf("CA sign: %w", depDown), codes.Unavailable, MsgDependencyUnavailable},
		{"dependency timed out, the call did not", nil, fmt.Errorf("CA sign: %w", depDeadline), codes.Unavailable, MsgDependencyUnavailable},
		{"dependency timed out with the call", expired, fmt.Errorf("CA sign: %w", depDeadline), codes.DeadlineExceeded, MsgDeadline},
		{"dependency canceled", nil, fmt.Errorf("CA sign: %w", depCanceled), codes.Canceled, MsgCanceled},
		{"dependency's other codes are not passed on", nil, fmt.Errorf("CA sign: %w", depInternal), codes.Internal, MsgInternal},
		{"dependency overloaded", nil, fmt.Errorf("CA sign: %w", status.Error(codes.ResourceExhausted, "too many requests")), codes.Unavailable, MsgDependencyUnavailable},
		{"dependency aborted", nil, fmt.Errorf("CA sign: %w", status.Error(codes.Aborted, "concurrent change")), codes.Unavailable, MsgDependencyUnavailable},
		{"dependency refusing for good is not retried", nil, fmt.Errorf("CA sign: %w", status.Error(codes.PermissionDenied, "not allowed")), codes.Internal, MsgInternal},
		{"SQLite disk full", nil, fmt.Errorf("register: %w", sqliteFull(t)), codes.Unavailable, MsgDatabaseUnavailable},
		// SQLSTATE 53100 disk_full, as PostgreSQL reports it when a data
		// file cannot grow.
		{"PostgreSQL disk full", nil, fmt.Errorf("register: %w", &pgconn.PgError{Severity: "ERROR", Code: "53100", Message: "could not extend file"}), codes.Unavailable, MsgDatabaseUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			code, msg := table.Classify(ctx, tt.err)
			if code != tt.wantCode || msg != tt.wantMsg {
				t.Fatalf("Classify(%v) = %v %q, want %v %q", tt.err, code, msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// TestStatusLogsCauseOnce: the client sees the public message only, and
// the log holds the cause, once, at a level by code.
func TestStatusLogsCauseOnce(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantCode  codes.Code
		wantLevel string
	}{
		{"client mistake", fmt.Errorf("node n-secret: %w", errGone), codes.NotFound, "level=INFO"},
		{"internal", errors.New("row 7 of table secret is corrupt"), codes.Internal, "level=ERROR"},
		{"unavailable", fmt.Errorf("query secret: %w", postgresDown(t)), codes.Unavailable, "level=ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			err := table.Status(context.Background(), log, tt.err)
			if status.Code(err) != tt.wantCode {
				t.Fatalf("code = %v, want %v", status.Code(err), tt.wantCode)
			}
			if strings.Contains(status.Convert(err).Message(), "secret") {
				t.Errorf("the cause reached the client: %q", status.Convert(err).Message())
			}
			logs := buf.String()
			if strings.Count(logs, "request failed") != 1 || !strings.Contains(logs, tt.wantLevel) ||
				!strings.Contains(logs, "code="+tt.wantCode.String()) || !strings.Contains(logs, "secret") {
				t.Errorf("log = %q, want the cause once at %s", logs, tt.wantLevel)
			}
		})
	}
	if table.Status(context.Background(), nil, nil) != nil {
		t.Error("Status(nil) is not nil")
	}
}

// TestRetryInfo: an error wrapped by RetryAfter keeps its table's code and
// message and carries the delay as RetryInfo; others carry no details.
func TestRetryInfo(t *testing.T) {
	err := table.Status(context.Background(), nil, RetryAfter(fmt.Errorf("source 10.0.0.1: %w", errGone), 1500*time.Millisecond))
	st := status.Convert(err)
	if st.Code() != codes.NotFound || st.Message() != "it is gone" {
		t.Fatalf("status = %v, want the table's NotFound and message", st)
	}
	var infos []*errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			infos = append(infos, ri)
		}
	}
	if len(infos) != 1 || infos[0].GetRetryDelay().AsDuration() != 1500*time.Millisecond {
		t.Fatalf("details = %v, want one RetryInfo of 1.5s", st.Details())
	}
	if d := status.Convert(table.Status(context.Background(), nil, errGone)).Details(); len(d) != 0 {
		t.Errorf("an error without a delay carries details %v", d)
	}
	if d := status.Convert(table.Status(context.Background(), nil, RetryAfter(errGone, 0))).Details(); len(d) != 0 {
		t.Errorf("a zero delay carries details %v", d)
	}
}

// postgresDown is what the driver says when the server is not there: a
// real connection attempt to a loopback port nothing listens on.
func postgresDown(t *testing.T) error {
	t.Helper()
	_, err := pgconn.Connect(context.Background(), "postgres://berth@"+closedAddr(t)+"/berth?connect_timeout=10")
	if err == nil || !db.IsUnavailable(err) {
		t.Fatalf("connecting to a closed port: %v, want an unavailable error", err)
	}
	return err
}

// sqliteFull is SQLite refusing a write because the database cannot grow:
// a real SQLITE_FULL, from a database capped by max_page_count.
func sqliteFull(t *testing.T) error {
	t.Helper()
	d, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "full.db"))
	if err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(1)
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	if _, err := d.ExecContext(ctx, `CREATE TABLE t (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	var pages int
	if err := d.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	_, err = d.ExecContext(ctx, `INSERT INTO t VALUES (zeroblob(1000000))`)
	if err == nil || !strings.Contains(err.Error(), "full") || !db.IsUnavailable(err) {
		t.Fatalf("insert into a full database: %v, want SQLITE_FULL", err)
	}
	return err
}

// sqliteBusy is SQLite refusing a write while another connection holds the
// write lock, with no busy timeout to wait it out.
func sqliteBusy(t *testing.T) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "busy.db")
	open := func() *sql.DB {
		d, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
		if err != nil {
			t.Fatal(err)
		}
		d.SetMaxOpenConns(1)
		t.Cleanup(func() { d.Close() })
		return d
	}
	a, b := open(), open()
	ctx := context.Background()
	if _, err := a.ExecContext(ctx, "CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	tx, err := a.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	_, err = b.ExecContext(ctx, "INSERT INTO t VALUES (2)")
	if err == nil || !db.IsUnavailable(err) {
		t.Fatalf("writing under another's lock: %v, want an unavailable error", err)
	}
	return err
}

// dependencyDown is a real gRPC call to a service that is not there.
func dependencyDown(t *testing.T) error {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+closedAddr(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("calling a closed port: %v, want Unavailable", err)
	}
	return err
}

func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
