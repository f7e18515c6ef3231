package grpctest

import (
	"context"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/berth-dev/berth/internal/db"
)

// DatabaseDown returns what PostgreSQL's driver says when the server is
// not there, from a real connection attempt to a loopback port nothing
// listens on: the error a store fake returns to play a database that
// cannot serve now.
func DatabaseDown(t testing.TB) error {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, err = pgconn.Connect(context.Background(), "postgres://berth@"+addr+"/berth?connect_timeout=10")
	if err == nil || !db.IsUnavailable(err) {
		t.Fatalf("connecting to a closed port: %v, want an error db.IsUnavailable knows", err)
	}
	return err
}
