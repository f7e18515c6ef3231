package regstore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/store/regstore/storetest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func newSQLite(t testing.TB) regstore.Store {
	s, err := regstore.Open(context.Background(), db.SQLite, filepath.Join(t.TempDir(), "registration.db"))
	if err != nil {
		t.Fatalf("Open sqlite: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func newPostgres(t testing.TB) regstore.Store {
	s, err := regstore.Open(context.Background(), db.Postgres, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatalf("Open postgres: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) regstore.Store { return newSQLite(t) })
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) regstore.Store { return newPostgres(t) })
}

// TestReopen checks that data and schema survive closing and reopening, and
// that a second open does not re-run migrations.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		open func(t *testing.T) func() (regstore.Store, error)
	}{
		{"sqlite", func(t *testing.T) func() (regstore.Store, error) {
			path := filepath.Join(t.TempDir(), "sub", "registration.db")
			return func() (regstore.Store, error) { return regstore.Open(ctx, db.SQLite, path) }
		}},
		{"postgres", func(t *testing.T) func() (regstore.Store, error) {
			dsn := pgtest.NewDatabase(t)
			return func() (regstore.Store, error) { return regstore.Open(ctx, db.Postgres, dsn) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := tt.open(t)
			s, err := open()
			if err != nil {
				t.Fatal(err)
			}
			tok := regstore.Token{ID: "tok", SecretHash: make([]byte, 32), CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour), UsesLeft: 1}
			if err := s.CreateToken(ctx, tok); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, err = open()
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s.Close()
			if _, err := s.GetToken(ctx, "tok"); err != nil {
				t.Errorf("token lost across reopen: %v", err)
			}
		})
	}
}

// benchNodes returns n nodes with distinct keys, shaped like real ones.
func benchNodes(n int) []regstore.Node {
	now := time.Now()
	nodes := make([]regstore.Node, n)
	for i := range nodes {
		nodes[i] = regstore.Node{
			ID:           fmt.Sprintf("node-%08d", i),
			Status:       regstore.StatusApproved,
			KeySHA256:    benchKey(i),
			HardwareUUID: fmt.Sprintf("4c4c4544-0000-0000-0000-%012d", i),
			MACs:         []string{fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))},
			Hostname:     fmt.Sprintf("worker-%d", i),
			Serial:       fmt.Sprintf("SN%08d", i),
			Labels:       map[string]string{"rack": fmt.Sprintf("r%d", i%40), "role": "worker"},
			BundleKEM:    0x0020,
			BundleKey:    make([]byte, 32),
			TokenID:      "bench",
			CreatedAt:    now,
			UpdatedAt:    now,
		}
	}
	return nodes
}

// benchBackends are the engines the benchmarks run on.
var benchBackends = []struct {
	name string
	open func(testing.TB) regstore.Store
}{
	{"sqlite", newSQLite},
	{"postgres", newPostgres},
}

// loadedStore opens a store with open and loads size benchmark nodes.
func loadedStore(b *testing.B, open func(testing.TB) regstore.Store, size int) regstore.Store {
	b.Helper()
	s := open(b)
	if err := regstore.BulkLoad(context.Background(), s, benchNodes(size)); err != nil {
		b.Fatalf("BulkLoad: %v", err)
	}
	return s
}

func benchKey(i int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	h := sha256.Sum256(b[:])
	return h[:]
}

// BenchmarkGetNodeByKey measures the boot-time lookup with 1,000 and 100,000
// nodes registered; it should not grow with the registry.
func BenchmarkGetNodeByKey(b *testing.B) {
	for _, be := range benchBackends {
		for _, size := range []int{1_000, 100_000} {
			b.Run(fmt.Sprintf("%s/nodes=%d", be.name, size), func(b *testing.B) {
				ctx := context.Background()
				s := loadedStore(b, be.open, size)
				keys := make([][]byte, 4096)
				for i := range keys {
					keys[i] = benchKey((i * 7919) % size) // spread over the table
				}
				i := 0
				for b.Loop() {
					if _, err := s.GetNodeByKey(ctx, keys[i%len(keys)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// openBefore opens the database at where with d's migrations up to, not
// including, version first: the schema an older berth left.
func openBefore(t *testing.T, d db.Dialect, where, first string) *db.DB {
	t.Helper()
	old := fstest.MapFS{}
	entries, err := os.ReadDir(filepath.Join("migrations", d.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() >= first {
			continue
		}
		body, err := os.ReadFile(filepath.Join("migrations", d.String(), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		old["migrations/"+d.String()+"/"+e.Name()] = &fstest.MapFile{Data: body}
	}
	h, err := db.OpenSchema(t.Context(), d, where, db.Schema{Service: "registration", FS: old})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestMigrationArraysToJSON: a PostgreSQL database written while macs and
// cert_chain were arrays keeps them when they become JSON (0005).
func TestMigrationArraysToJSON(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.NewDatabase(t)
	h := openBefore(t, db.Postgres, dsn, "0005")
	key := sha256.Sum256([]byte("k"))
	other := sha256.Sum256([]byte("other"))
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO reg_nodes (id, status, key_sha256, hardware_uuid, macs, hostname, serial, labels, bundle_kem, bundle_key, csr,
			token_id, replacement_allowed, cert_serial, cert_not_before, cert_not_after, cert_chain, certificates_issued, created_at, updated_at)
			VALUES ('n1', 'approved', $1, 'u1', ARRAY['aa:bb', 'cc:dd'], 'h', '', '{}', 0, '', '', 't', false,
			'01', now(), now(), ARRAY['\x0102'::bytea, '\xffee'::bytea], 1, now(), now())`, []any{key[:]}},
		{`INSERT INTO reg_nodes (id, status, key_sha256, hardware_uuid, macs, hostname, serial, labels, bundle_kem, bundle_key, csr,
			token_id, replacement_allowed, certificates_issued, created_at, updated_at)
			VALUES ('n2', 'pending', $1, '', '{}', 'h', '', '{}', 0, '', '', 't', false, 0, now(), now())`, []any{other[:]}},
	} {
		if _, err := h.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	h.Close()
	s, err := regstore.Open(ctx, db.Postgres, dsn)
	if err != nil {
		t.Fatalf("Open postgres: %v", err)
	}
	defer s.Close()
	n1, err := s.GetNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(n1.MACs) != "[aa:bb cc:dd]" || n1.Cert == nil || fmt.Sprintf("%x", n1.Cert.Chain) != "[0102 ffee]" {
		t.Errorf("n1 after the migration: MACs %v, cert %+v", n1.MACs, n1.Cert)
	}
	n2, err := s.GetNode(ctx, "n2")
	if err != nil || n2.MACs != nil || n2.Cert != nil {
		t.Errorf("n2 after the migration: %+v, %v", n2, err)
	}
	dups, err := s.NodesByHardware(ctx, nil, []string{"cc:dd"})
	if err != nil || len(dups) != 1 || dups[0].ID != "n1" {
		t.Errorf("NodesByHardware(cc:dd) = %v, %v", dups, err)
	}
}

// TestMACsIndexPendsNothing: on PostgreSQL the GIN index on macs keeps no
// pending list (0012), neither the entries a database had before the
// migration nor those of nodes registered after it. Every lookup reads the
// whole list, so in a registration storm each registration read every node
// registered since the last vacuum.
func TestMACsIndexPendsNothing(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.NewDatabase(t)
	h := openBefore(t, db.Postgres, dsn, "0012")
	insert := func(q db.Querier, i int) {
		t.Helper()
		key := sha256.Sum256(fmt.Appendf(nil, "k%d", i))
		if _, err := q.ExecContext(ctx, `INSERT INTO reg_nodes (id, status, key_sha256, hardware_uuid, macs, hostname, serial, labels,
			bundle_kem, bundle_key, csr, token_id, replacement_allowed, certificates_issued, created_at, updated_at)
			VALUES ($1, 'pending', $2, '', $3, 'h', '', '{}', 0, '', '', 't', false, 0, now(), now())`,
			fmt.Sprintf("n%d", i), key[:], fmt.Sprintf(`["aa:bb:cc:00:00:%02x"]`, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		insert(h, i)
	}
	h.Close()
	s, err := regstore.Open(ctx, db.Postgres, dsn)
	if err != nil {
		t.Fatalf("Open postgres: %v", err)
	}
	defer s.Close()
	// gin_clean_pending_list moves what is pending and says how many pages
	// it moved: none, if nothing was left pending.
	pending := func(when string) {
		t.Helper()
		var pages int64
		if err := s.DB.QueryRowContext(ctx, `SELECT gin_clean_pending_list('reg_nodes_macs')`).Scan(&pages); err != nil {
			t.Fatal(err)
		}
		if pages != 0 {
			t.Errorf("%s: the macs index had %d pages pending", when, pages)
		}
	}
	pending("after the migration")
	for i := 3; i < 6; i++ {
		insert(s.DB, i)
	}
	pending("after inserts")
	dups, err := s.NodesByHardware(ctx, nil, []string{"aa:bb:cc:00:00:01", "aa:bb:cc:00:00:04"})
	if err != nil || len(dups) != 2 || dups[0].ID != "n1" || dups[1].ID != "n4" {
		t.Errorf("NodesByHardware = %v, %v; want n1 and n4", dups, err)
	}
}

// openOneConnection opens a store on a new PostgreSQL database, with one
// connection: the statistics and cached plans a test reads are those of
// every statement it ran, as a pooled connection's are in a storm.
func openOneConnection(t *testing.T) *regstore.SQLStore {
	t.Helper()
	s, err := regstore.Open(t.Context(), db.Postgres, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatalf("Open postgres: %v", err)
	}
	t.Cleanup(s.Close)
	s.DB.SetMaxOpenConns(1)
	return s
}

// TestCertificateInstallStaysOnPage: on PostgreSQL installing a node's
// first certificate is a HOT update (0013), which writes no index entry,
// though the row grows from its CSR's size to its chain's. The nodes all
// register before any is certified, as in a storm, so their pages are as
// full as inserts leave them. With full pages two installs in five here,
// and nine in ten in a storm of 2,000 (make bench), wrote a new entry into
// all six indexes.
func TestCertificateInstallStaysOnPage(t *testing.T) {
	ctx := t.Context()
	s := openOneConnection(t)
	const nodes = 200
	// Random bytes, which PostgreSQL cannot compress: a CSR, a bundle key
	// and a two-certificate chain of the sizes a registration stores.
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	now := time.Now()
	for i := range nodes {
		key := sha256.Sum256(fmt.Appendf(nil, "k%d", i))
		n := regstore.Node{ID: fmt.Sprintf("n%03d", i), Status: regstore.StatusApproved, KeySHA256: key[:],
			HardwareUUID: fmt.Sprintf("uuid-%d", i), MACs: []string{fmt.Sprintf("mac-%d", i)}, Hostname: "h",
			Labels: map[string]string{"site": "a"}, BundleKEM: 1, BundleKey: random(1200), CSR: random(215)}
		_, open, err := s.RegisterIssuing(ctx, "", now, n, "", fmt.Sprintf("r%03d", i))
		if err != nil || open.RequestID == "" {
			t.Fatalf("RegisterIssuing(%s) = %+v, %v; want an open issuance", n.ID, open, err)
		}
	}
	for i := range nodes {
		c := regstore.Cert{Serial: fmt.Sprintf("%x", i+1), NotBefore: now, NotAfter: now.Add(time.Hour), Chain: [][]byte{random(450), random(500)}}
		if _, installed, err := s.CompleteIssuance(ctx, fmt.Sprintf("r%03d", i), c, now); err != nil || !installed {
			t.Fatalf("CompleteIssuance(r%03d) = installed %v, %v", i, installed, err)
		}
	}
	var updates, hot int64
	if _, err := s.DB.ExecContext(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.QueryRowContext(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'reg_nodes'`).Scan(&updates, &hot); err != nil {
		t.Fatal(err)
	}
	if updates != nodes || hot < nodes*9/10 {
		t.Errorf("%d updates of reg_nodes, %d of them HOT; want %d, at least 90%% HOT", updates, hot, nodes)
	}
}

// TestNodesByHardwareFollowsGrowth: on PostgreSQL the duplicate-hardware
// lookup of a registration becomes an index lookup as a new fleet fills
// the table. It used to keep the plan PostgreSQL chose for its prepared
// statement while the table was empty, a sequential scan, and so read
// every node on every registration until the table's statistics changed.
// The test counts the rows PostgreSQL reads sequentially from reg_nodes.
func TestNodesByHardwareFollowsGrowth(t *testing.T) {
	ctx := t.Context()
	s := openOneConnection(t)
	lookup := func(i int) {
		t.Helper()
		got, err := s.NodesByHardware(ctx, []string{fmt.Sprintf("uuid-%d", i)}, []string{fmt.Sprintf("mac-%d", i)})
		if err != nil || len(got) != min(i, 1) {
			t.Fatalf("NodesByHardware(%d) = %d nodes, %v", i, len(got), err)
		}
	}
	for range 10 {
		lookup(0)
	}
	// Rows the size of a registered node's: its CSR and certificate chain.
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO reg_nodes (id, status, key_sha256, hardware_uuid, macs, hostname, serial, labels,
		bundle_kem, bundle_key, csr, token_id, replacement_allowed, cert_serial, cert_chain, certificates_issued, created_at, updated_at)
		SELECT 'n' || i, 'approved', sha256(i::text::bytea), 'uuid-' || i, jsonb_build_array('mac-' || i), 'h', '', '{}',
			0, sha256(i::text::bytea), decode(repeat(md5(i::text), 12), 'hex'), 't', false,
			i::text, jsonb_build_array(repeat(md5(i::text), 24), repeat(md5(i::text), 20)), 1, now(), now()
		FROM generate_series(1, 5000) AS i`); err != nil {
		t.Fatal(err)
	}
	seqRead := func() int64 {
		t.Helper()
		var n int64
		for _, q := range []string{`SELECT pg_stat_force_next_flush()`, `SELECT pg_stat_clear_snapshot()`} {
			if _, err := s.DB.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.DB.QueryRowContext(ctx, `SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'reg_nodes'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := seqRead()
	for i := 1; i <= 20; i++ {
		lookup(i * 7)
	}
	if read := seqRead() - before; read > 0 {
		t.Errorf("20 lookups read %d rows of reg_nodes sequentially; want index lookups", read)
	}
}

// BenchmarkNodesByHardware measures the duplicate-hardware lookup every
// registration makes (twice) for a new machine, with 1,000 and 10,000
// nodes registered; it should not grow with the registry.
func BenchmarkNodesByHardware(b *testing.B) {
	for _, be := range benchBackends {
		for _, size := range []int{1_000, 10_000} {
			b.Run(fmt.Sprintf("%s/nodes=%d", be.name, size), func(b *testing.B) {
				ctx := context.Background()
				s := loadedStore(b, be.open, size)
				i := 0
				for b.Loop() {
					uuid := fmt.Sprintf("5c4c4544-0000-0000-0000-%012d", i)
					mac := fmt.Sprintf("06:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
					if got, err := s.NodesByHardware(ctx, []string{uuid}, []string{mac}); err != nil || len(got) != 0 {
						b.Fatalf("NodesByHardware = %d nodes, %v; want none", len(got), err)
					}
					i++
				}
			})
		}
	}
}

// TestMigrationNodeMACs: a SQLite database written before MACs had a
// table of their own (0011) finds its nodes by MAC once migrated.
func TestMigrationNodeMACs(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "registration.db")
	h := openBefore(t, db.SQLite, path, "0011")
	for i, macs := range []string{`["aa:bb","cc:dd"]`, `["cc:dd",""]`, `[]`} {
		key := sha256.Sum256(fmt.Appendf(nil, "k%d", i))
		if _, err := h.ExecContext(ctx, `INSERT INTO reg_nodes (id, status, key_sha256, hardware_uuid, macs, hostname, serial, labels,
			bundle_kem, bundle_key, csr, token_id, replacement_allowed, certificates_issued, created_at, updated_at)
			VALUES ($1, 'pending', $2, '', $3, 'h', '', '{}', 0, x'', x'', 't', 0, 0, 0, 0)`, fmt.Sprintf("n%d", i), key[:], macs); err != nil {
			t.Fatal(err)
		}
	}
	h.Close()
	s, err := regstore.Open(ctx, db.SQLite, path)
	if err != nil {
		t.Fatalf("Open sqlite: %v", err)
	}
	defer s.Close()
	for mac, want := range map[string]string{"aa:bb": "[n0]", "cc:dd": "[n0 n1]", "ee:ff": "[]"} {
		got, err := s.NodesByHardware(ctx, nil, []string{mac})
		var ids []string
		for _, n := range got {
			ids = append(ids, n.ID)
		}
		if err != nil || fmt.Sprint(ids) != want {
			t.Errorf("NodesByHardware(%s) = %v, %v; want %s", mac, ids, err, want)
		}
	}
}

// TestFirstUseInTransactionTakesNoOtherConnection: the registration
// path's statements, run for the first time inside their write
// transaction on SQLite, while every other pooled connection is taken
// (in a storm: writers waiting, up to busy_timeout, for the write lock
// that transaction holds), need no second connection. Preparing one
// through the pool there waited for a connection that would be freed only
// when those writers gave up, 10 s later, failing them. A wait for a pooled
// connection fails the test, whatever the clock says.
func TestFirstUseInTransactionTakesNoOtherConnection(t *testing.T) {
	ctx := context.Background()
	s, err := regstore.Open(ctx, db.SQLite, filepath.Join(t.TempDir(), "registration.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if err := s.CreateToken(ctx, regstore.Token{ID: "tok", SecretHash: benchKey(-1), ExpiresAt: now.Add(time.Hour),
		UsesLeft: 10, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	var others []*sql.Conn
	release := func() {
		for _, c := range others {
			c.Close()
		}
		others = nil
	}
	defer release()
	for range s.DB.Stats().MaxOpenConnections - 1 {
		c, err := s.DB.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		others = append(others, c)
	}
	waits := s.DB.Stats().WaitCount
	done := make(chan error, 1)
	go func() {
		n := benchNodes(1)[0]
		_, open, err := s.RegisterIssuing(ctx, "tok", now, n, "", "req-1")
		if err == nil {
			_, _, err = s.InstallIssuance(ctx, open.RequestID, regstore.Cert{Serial: "01", NotBefore: now,
				NotAfter: now.Add(time.Hour), Chain: [][]byte{{1}}}, now)
		}
		done <- err
	}()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if w := s.DB.Stats().WaitCount; w != waits {
				t.Fatalf("the registration path waited %d times for a pooled connection", w-waits)
			}
			return
		case <-tick.C:
			if s.DB.Stats().WaitCount != waits {
				release() // let it finish, to close the store
				<-done
				t.Fatal("a registration waited for a pooled connection while its transaction held one")
			}
		}
	}
}

// TestInstallNeedsTheReplacedSerial: an intent installs its certificate
// only over the one it was opened to replace. The store's own writes
// never change a node's certificate while an intent of it is open, so the
// test changes it behind the store's back; both the one-statement install
// and the slower path must then refuse, and CompleteIssuance only counts.
func TestInstallNeedsTheReplacedSerial(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		ctx := t.Context()
		st := newSQLite(t)
		if engine == pgtest.Postgres {
			st = newPostgres(t)
		}
		s := st.(*regstore.SQLStore)
		key := sha256.Sum256([]byte("k"))
		n := regstore.Node{ID: "n1", Status: regstore.StatusApproved, KeySHA256: key[:], Hostname: "h", BundleKEM: 1,
			BundleKey: []byte("bundle key"), CSR: []byte("csr")}
		now := time.Now()
		if _, open, err := s.RegisterIssuing(ctx, "", now, n, "", "r1"); err != nil || open.RequestID != "r1" {
			t.Fatalf("RegisterIssuing = %+v, %v; want intent r1 open", open, err)
		}
		if _, err := s.DB.ExecContext(ctx, `UPDATE reg_nodes SET cert_serial = 'elsewhere' WHERE id = 'n1'`); err != nil {
			t.Fatal(err)
		}
		c := regstore.Cert{Serial: "aa01", NotBefore: now, NotAfter: now.Add(time.Hour), Chain: [][]byte{[]byte("der")}}
		if got, installed, err := s.InstallIssuance(ctx, "r1", c, now); err != nil || installed || got.ID != "" {
			t.Fatalf("InstallIssuance = %s, %v, %v; want nothing installed", got.ID, installed, err)
		}
		if got, err := s.GetNode(ctx, "n1"); err != nil || got.CertificatesIssued != 0 {
			t.Fatalf("after InstallIssuance: issued %d, %v; want 0", got.CertificatesIssued, err)
		}
		got, installed, err := s.CompleteIssuance(ctx, "r1", c, now)
		if err != nil || installed || got.CertificatesIssued != 1 {
			t.Fatalf("CompleteIssuance = issued %d, installed %v, %v; want counted, not installed", got.CertificatesIssued, installed, err)
		}
		var serial string
		if err := s.DB.QueryRowContext(ctx, `SELECT cert_serial FROM reg_nodes WHERE id = 'n1'`).Scan(&serial); err != nil || serial != "elsewhere" {
			t.Errorf("serial %q, %v; want elsewhere", serial, err)
		}
	})
}
