package castore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/store/castore"
	"github.com/berth-dev/berth/internal/store/castore/storetest"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) castore.Store {
		s, err := castore.Open(context.Background(), db.SQLite, filepath.Join(t.TempDir(), "ca.db"))
		if err != nil {
			t.Fatalf("Open sqlite: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	})
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) castore.Store {
		s, err := castore.Open(context.Background(), db.Postgres, pgtest.NewDatabase(t))
		if err != nil {
			t.Fatalf("Open postgres: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	})
}

// TestSharedDatabase runs the registration and CA stores, two replicas each,
// on one PostgreSQL database, as a production deployment does: each service
// keeps its own tables and its own schema version.
func TestSharedDatabase(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	for range 2 {
		ca, err := castore.Open(ctx, db.Postgres, dsn)
		if err != nil {
			t.Fatalf("ca store: %v", err)
		}
		defer ca.Close()
		reg, err := regstore.Open(ctx, db.Postgres, dsn)
		if err != nil {
			t.Fatalf("registration store: %v", err)
		}
		defer reg.Close()
		if _, err := ca.ListRevocations(ctx, time.Time{}); err != nil {
			t.Errorf("ca store: %v", err)
		}
		if _, err := reg.ListTokens(ctx, true, time.Now()); err != nil {
			t.Errorf("registration store: %v", err)
		}
	}
}
