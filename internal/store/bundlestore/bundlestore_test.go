package bundlestore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/store/bundlestore/storetest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) bundlestore.Store {
		s, err := bundlestore.Open(context.Background(), db.SQLite, filepath.Join(t.TempDir(), "bundles.db"))
		if err != nil {
			t.Fatalf("Open sqlite: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	})
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) bundlestore.Store {
		s, err := bundlestore.Open(context.Background(), db.Postgres, pgtest.NewDatabase(t))
		if err != nil {
			t.Fatalf("Open postgres: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	})
}

// TestReplicas runs two stores on one database, as two replicas of the
// service do: a write through one is seen by the other, and compare and
// swap holds across them.
func TestReplicas(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		open func(t *testing.T) func() (bundlestore.Store, error)
	}{
		{"sqlite", func(t *testing.T) func() (bundlestore.Store, error) {
			path := filepath.Join(t.TempDir(), "bundles.db")
			return func() (bundlestore.Store, error) { return bundlestore.Open(ctx, db.SQLite, path) }
		}},
		{"postgres", func(t *testing.T) func() (bundlestore.Store, error) {
			dsn := pgtest.NewDatabase(t)
			return func() (bundlestore.Store, error) { return bundlestore.Open(ctx, db.Postgres, dsn) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := tt.open(t)
			var replicas [2]bundlestore.Store
			for i := range replicas {
				s, err := open()
				if err != nil {
					t.Fatalf("replica %d: %v", i, err)
				}
				t.Cleanup(s.Close)
				replicas[i] = s
			}
			b := bundlestore.Bundle{Meta: bundlestore.Meta{Digest: "d", Author: "node:n1", CreatedAt: time.Now()}, Sealed: []byte("sealed")}
			if _, err := replicas[0].Put(ctx, "n1", 0, b, bundlestore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			got, err := replicas[1].Get(ctx, "n1")
			if err != nil || got.Version != 1 {
				t.Fatalf("Get through the other replica = version %d, %v", got.Version, err)
			}
			if _, err := replicas[1].Put(ctx, "n1", 0, b, bundlestore.PutOptions{}); err == nil {
				t.Fatal("a stale write through the other replica succeeded")
			}
		})
	}
}
