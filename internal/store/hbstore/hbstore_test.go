package hbstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/store/castore"
	"github.com/berth-dev/berth/internal/store/hbstore"
	"github.com/berth-dev/berth/internal/store/hbstore/storetest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) hbstore.Store {
		s, err := hbstore.NewSQLite(context.Background(), filepath.Join(t.TempDir(), "heartbeat.db"))
		if err != nil {
			t.Fatalf("NewSQLite: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	})
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) hbstore.Store {
		s, err := hbstore.NewPostgres(context.Background(), pgtest.NewDatabase(t))
		if err != nil {
			t.Fatalf("NewPostgres: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	})
}

// TestSharedDatabase runs two heartbeat replicas' stores next to another
// service's on one PostgreSQL database, as a production deployment does.
func TestSharedDatabase(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	for range 2 {
		hb, err := hbstore.NewPostgres(ctx, dsn)
		if err != nil {
			t.Fatalf("heartbeat store: %v", err)
		}
		defer hb.Close()
		ca, err := castore.NewPostgres(ctx, dsn)
		if err != nil {
			t.Fatalf("ca store: %v", err)
		}
		defer ca.Close()
		if _, _, err := hb.EventBounds(ctx); err != nil {
			t.Errorf("heartbeat store: %v", err)
		}
	}
}
