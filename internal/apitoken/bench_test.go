package apitoken

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// BenchmarkAuthenticate measures what a call that presents an API token
// costs the process that checks it: parse, one read by primary key,
// SHA-256 and a constant-time compare, and the in-memory last use (no
// write: those are batched). Among 1,000 stored tokens.
func BenchmarkAuthenticate(b *testing.B) {
	for _, engine := range []string{pgtest.SQLite, pgtest.Postgres} {
		b.Run(engine, func(b *testing.B) {
			var (
				s   regstore.Store
				err error
			)
			if engine == pgtest.SQLite {
				s, err = regstore.Open(context.Background(), db.SQLite, filepath.Join(b.TempDir(), "registration.db"))
			} else {
				s, err = regstore.Open(context.Background(), db.Postgres, pgtest.NewDatabase(b))
			}
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Close)
			now := time.Now()
			var tokens []string
			for range 1000 {
				id, tok, hash := Generate()
				if err := s.CreateAPIToken(context.Background(), regstore.APIToken{ID: id, Role: "viewer", SecretHash: hash, CreatedAt: now, CreatedBy: "admin:admin"}); err != nil {
					b.Fatal(err)
				}
				tokens = append(tokens, tok)
			}
			c, err := NewChecker(Config{Store: s})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := c.Authenticate(context.Background(), tokens[i%len(tokens)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
