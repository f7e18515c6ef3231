// Package db opens berth's two database backends and applies each store's
// embedded schema migrations.
//
// PostgreSQL (pgx/v5, through its database/sql adapter) is the production
// backend; several replicas of several services share one database, so
// every service owns its own tables and records its schema version under
// its own name in a shared schema_migrations table. SQLite (the pure-Go modernc.org/sqlite, so binaries
// stay CGO-free) backs `berthd dev` and single-machine deployments.
package db
