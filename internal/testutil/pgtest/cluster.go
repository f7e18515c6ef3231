package pgtest

import (
	"testing"
)

// Cluster is a throwaway PostgreSQL cluster of a test's own, which the
// test may stop and start again to play a database outage: unlike
// NewDatabase's shared server, stopping it disturbs no other test.
type Cluster struct {
	s *server
}

// NewCluster starts a cluster; it is stopped and deleted when the test
// ends. Like NewDatabase, a cluster that cannot start fails the test.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	s, err := startServer()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{s: s}
	t.Cleanup(func() {
		// Stopping a stopped server fails; either way the files go.
		s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "-t", "60", "stop")
		s.remove()
	})
	return c
}

// DSN is the cluster's maintenance database, "postgres".
func (c *Cluster) DSN() string { return c.s.dsn }

// Stop shuts the server down (pg_ctl -m fast: open connections are cut,
// clients see the server go away). Not -m immediate: the cluster runs
// with fsync and synchronous_commit off for speed, so a crash would lose
// acknowledged commits, which is the test settings' doing, not berth's.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if out, err := c.s.run("pg_ctl", "-D", c.s.data(), "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		t.Fatalf("stop postgres: %v\n%s", err, out)
	}
}

// Start starts the stopped server again on the same port.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if out, err := c.s.run("pg_ctl", "-D", c.s.data(), "-l", c.s.logFile(), "-o", c.s.opts, "-w", "-t", "60", "start"); err != nil {
		t.Fatalf("start postgres again: %v\n%s\nserver log:\n%s", err, out, c.s.logTail())
	}
}
