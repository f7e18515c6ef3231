package bundles

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// node is a node with a certificate issued by the deployment's CA and a
// bundle key, as an agent holds them after Resume.
type node struct {
	id        string
	cert      tls.Certificate
	serial    string
	bundleKey hpke.PrivateKey
}

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// env is a bundles service with a real store, served by grpctest with
// berth's interceptors and mTLS.
type env struct {
	srv    *grpctest.Server
	layout *pki.Layout
	store  bundlestore.Store
	// dbDir holds the SQLite database; empty on PostgreSQL.
	dbDir string
	clock *clock.Fake
	logs  *grpctest.Logs
	svc   *Service
}

// newStore opens an empty bundle store on engine; dir is where SQLite's
// file went.
func newStore(t testing.TB, engine string) (s bundlestore.Store, dir string) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch engine {
	case pgtest.SQLite:
		dir = t.TempDir()
		s, err = bundlestore.Open(ctx, db.SQLite, filepath.Join(dir, "bundles.db"))
	case pgtest.Postgres:
		s, err = bundlestore.Open(ctx, db.Postgres, pgtest.NewDatabase(t))
	default:
		t.Fatalf("unknown engine %q", engine)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, dir
}

func newEnv(t *testing.T, engine string, edit func(*Config)) *env {
	t.Helper()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	log, logs := grpctest.NewLogger()
	srv := grpctest.New(t, grpctest.Config{Clock: clk, Logger: log})
	e := &env{srv: srv, layout: srv.Layout, clock: clk, logs: logs}
	e.store, e.dbDir = newStore(t, engine)
	c := Config{Store: e.store, TrustDomain: e.layout.TrustDomain, Roots: e.layout.RootPool(), Logger: log, Clock: clk}
	if edit != nil {
		edit(&c)
	}
	svc, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	srv.Serve(t, pki.ServiceBundles, svc.Policy(), svc.Register)
	return e
}

// conn dials the service presenting cert.
func (e *env) conn(t *testing.T, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	return e.srv.Dial(t, cert)
}

func (e *env) nodeClient(t *testing.T, n *node) berthv1.BundleServiceClient {
	t.Helper()
	return berthv1.NewBundleServiceClient(e.conn(t, n.cert))
}

func (e *env) adminClient(t *testing.T, cert tls.Certificate) berthv1.BundleAdminServiceClient {
	t.Helper()
	return berthv1.NewBundleAdminServiceClient(e.conn(t, cert))
}

func (e *env) admin(t *testing.T) berthv1.BundleAdminServiceClient {
	t.Helper()
	return berthv1.NewBundleAdminServiceClient(e.srv.Admin(t))
}

// newNode issues a node certificate for id through the CA core, with a
// bundle key of the given KEM.
func (e *env) newNode(t *testing.T, id string, kem hpke.KEM) *node {
	t.Helper()
	c := e.srv.NodeCert(t, id)
	bk, err := kem.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &node{id: id, cert: c.TLS, serial: c.Serial(), bundleKey: bk}
}

// identities are the non-node callers the tests use, by name.
func (e *env) identities(t *testing.T) map[string]tls.Certificate {
	t.Helper()
	foreign, err := grpctest.NewPKI(t).AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	self, err := mtls.SelfSigned(grpctest.NewKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]tls.Certificate{
		"admin":        e.srv.AdminCert(t),
		"registration": e.srv.ServiceCert(t, pki.ServiceRegistration),
		"heartbeat":    e.srv.ServiceCert(t, pki.ServiceHeartbeat),
		"bootstrap":    self,
		"foreign CA":   foreign,
	}
}

var (
	xwing = hpke.MLKEM768X25519()
	p256  = hpke.DHKEM(ecdh.P256())
)

// signers says who signs a test bundle: the node itself or the admin.
type signers int

const (
	byNode signers = iota
	byAdmin
)

// sealAt seals files for n and signs them for version v, as the agent
// (byNode) or berthctl (byAdmin) does.
func (e *env) sealAt(t *testing.T, n *node, by signers, v int64, files ...bundle.File) []byte {
	t.Helper()
	sealed, err := bundle.Seal(bundle.Target{NodeID: n.id, KEM: n.bundleKey.KEM().ID(), Public: n.bundleKey.PublicKey().Bytes(), Version: v},
		bundle.Contents{Files: files}, e.signer(t, n, by))
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

func (e *env) signer(t *testing.T, n *node, by signers) *bundle.Signer {
	t.Helper()
	if by == byNode {
		s, err := bundle.NewNodeSigner(e.layout.TrustDomain, n.cert.PrivateKey.(crypto.Signer))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return adminSigner(t, e.srv.AdminCert(t))
}

// adminSigner makes a bundle signer of an admin TLS certificate.
func adminSigner(t *testing.T, cert tls.Certificate) *bundle.Signer {
	t.Helper()
	chain := grpctest.Chain(t, cert)
	s, err := bundle.NewAdminSigner(chain, cert.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// next is the version number the store gives n's next write.
func (e *env) next(t *testing.T, n *node) int64 {
	t.Helper()
	v, err := e.svc.versions(context.Background(), n.id)
	if err != nil {
		t.Fatal(err)
	}
	return v.next
}

// sealFor seals files for n's next version, signed by.
func (e *env) sealFor(t *testing.T, n *node, by signers, files ...bundle.File) []byte {
	t.Helper()
	return e.sealAt(t, n, by, e.next(t, n), files...)
}

// config returns a distinct one-file bundle for n's next version, signed
// by n itself.
func (e *env) config(t *testing.T, n *node, text string) []byte {
	t.Helper()
	return e.sealFor(t, n, byNode, confFile(text))
}

// adminConfig is config signed by the admin.
func (e *env) adminConfig(t *testing.T, n *node, text string) []byte {
	t.Helper()
	return e.sealFor(t, n, byAdmin, confFile(text))
}

func confFile(text string) bundle.File {
	return bundle.File{Path: "etc/berth/node.conf", Mode: 0o600, Content: []byte(text)}
}

func wantCode(t *testing.T, err error, want codes.Code) { t.Helper(); grpctest.WantCode(t, err, want) }

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	grpctest.WantStatus(t, err, code, msg)
}

// history lists a node's versions as "version:state:author", newest first,
// straight from the store.
func (e *env) history(t *testing.T, nodeID string) []string {
	t.Helper()
	h, err := e.store.History(context.Background(), nodeID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range h {
		out = append(out, fmt.Sprintf("%d:%s:%s", m.Version, m.State, m.Author))
	}
	return out
}
