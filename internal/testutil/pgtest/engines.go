package pgtest

import "testing"

// Names of the database engines berth runs on.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Engines returns the engines every store-backed test runs on.
func Engines() []string { return []string{SQLite, Postgres} }

// OnEngines runs f as a subtest named after each engine. f opens its store
// on the engine it is given: SQLite in a temporary directory, PostgreSQL in
// a fresh database from NewDatabase.
func OnEngines(t *testing.T, f func(t *testing.T, engine string)) {
	t.Helper()
	for _, e := range Engines() {
		t.Run(e, func(t *testing.T) { f(t, e) })
	}
}
