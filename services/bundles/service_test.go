package bundles

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func putNode(t *testing.T, c berthv1.BundleServiceClient, expected int64, sealed []byte) *berthv1.BundleInfo {
	t.Helper()
	resp, err := c.PutBundle(context.Background(), &berthv1.PutBundleRequest{ExpectedVersion: expected, Sealed: sealed})
	if err != nil {
		t.Fatalf("PutBundle(expected %d): %v", expected, err)
	}
	return resp.GetInfo()
}

func putAdmin(t *testing.T, c berthv1.BundleAdminServiceClient, nodeID string, expected int64, sealed []byte) *berthv1.BundleInfo {
	t.Helper()
	resp, err := c.PutBundle(context.Background(), &berthv1.BundleAdminServicePutBundleRequest{NodeId: nodeID, ExpectedVersion: expected, Sealed: sealed})
	if err != nil {
		t.Fatalf("admin PutBundle(%s, expected %d): %v", nodeID, expected, err)
	}
	return resp.GetInfo()
}

func getNode(t *testing.T, c berthv1.BundleServiceClient) *berthv1.SealedBundle {
	t.Helper()
	resp, err := c.GetBundle(context.Background(), &berthv1.GetBundleRequest{})
	if err != nil {
		t.Fatalf("GetBundle: %v", err)
	}
	return resp.GetBundle()
}

func TestAuthorization(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", xwing)
		ctx := context.Background()
		garbage := []byte("not a bundle")
		nodeCalls := map[string]func(berthv1.BundleServiceClient) error{
			// NotFound and InvalidArgument prove the call got past authorisation
			// without changing anything.
			"GetBundle": func(c berthv1.BundleServiceClient) error {
				_, err := c.GetBundle(ctx, &berthv1.GetBundleRequest{})
				return err
			},
			"PutBundle": func(c berthv1.BundleServiceClient) error {
				_, err := c.PutBundle(ctx, &berthv1.PutBundleRequest{Sealed: garbage})
				return err
			},
			"GetBundleVersions": func(c berthv1.BundleServiceClient) error {
				_, err := c.GetBundleVersions(ctx, &berthv1.GetBundleVersionsRequest{})
				return err
			},
		}
		adminCalls := map[string]func(berthv1.BundleAdminServiceClient) error{
			"PutBundle": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{NodeId: "node-a", Sealed: garbage})
				return err
			},
			"GetBundleInfo": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.GetBundleInfo(ctx, &berthv1.GetBundleInfoRequest{NodeId: "node-a"})
				return err
			},
			"ListBundleHistory": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: "node-a"})
				return err
			},
			"ApproveBundle": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: "node-a", Version: 1})
				return err
			},
			"ResetBundle": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: "node-a"})
				return err
			},
			"GetSealedBundle": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.GetSealedBundle(ctx, &berthv1.GetSealedBundleRequest{NodeId: "node-a"})
				return err
			},
			"ListSealedBundles": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.ListSealedBundles(ctx, &berthv1.ListSealedBundlesRequest{})
				return err
			},
			"DeleteBundles": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.DeleteBundles(ctx, &berthv1.DeleteBundlesRequest{NodeId: "node-zz"})
				return err
			},
			"GetBundleSettings": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.GetBundleSettings(ctx, &berthv1.GetBundleSettingsRequest{})
				return err
			},
			"SetBundleSettings": func(c berthv1.BundleAdminServiceClient) error {
				_, err := c.SetBundleSettings(ctx, &berthv1.SetBundleSettingsRequest{Approval: "sometimes"})
				return err
			},
		}
		const (
			ok       = codes.OK
			denied   = codes.PermissionDenied
			unauth   = codes.Unauthenticated
			notFound = codes.NotFound
			invalid  = codes.InvalidArgument
		)
		others := func(m map[string]codes.Code) map[string]codes.Code {
			for _, c := range []string{"admin", "registration", "heartbeat", "node"} {
				if _, set := m[c]; !set {
					m[c] = denied
				}
			}
			m["bootstrap"], m["foreign CA"] = unauth, unauth
			return m
		}
		nodeTests := map[string]map[string]codes.Code{
			"GetBundle":         others(map[string]codes.Code{"node": notFound}),
			"PutBundle":         others(map[string]codes.Code{"node": invalid}),
			"GetBundleVersions": others(map[string]codes.Code{"node": ok}),
		}
		adminTests := map[string]map[string]codes.Code{
			"PutBundle":         others(map[string]codes.Code{"admin": invalid}),
			"GetBundleInfo":     others(map[string]codes.Code{"admin": notFound}),
			"ListBundleHistory": others(map[string]codes.Code{"admin": ok}),
			"ApproveBundle":     others(map[string]codes.Code{"admin": notFound}),
			"ResetBundle":       others(map[string]codes.Code{"admin": notFound}),
			"GetSealedBundle":   others(map[string]codes.Code{"admin": notFound, "registration": notFound}),
			"ListSealedBundles": others(map[string]codes.Code{"admin": ok, "registration": ok}),
			"DeleteBundles":     others(map[string]codes.Code{"admin": ok, "registration": ok}),
			"GetBundleSettings": others(map[string]codes.Code{"admin": ok}),
			"SetBundleSettings": others(map[string]codes.Code{"admin": invalid}),
		}
		if len(adminCalls) != len(berthv1.BundleAdminService_ServiceDesc.Methods) || len(nodeCalls) != len(berthv1.BundleService_ServiceDesc.Methods) {
			t.Fatal("a method of the services is not covered")
		}

		certs := e.identities(t)
		certs["node"] = a.cert
		for method, want := range nodeTests {
			for who, code := range want {
				t.Run("BundleService."+method+"/"+who, func(t *testing.T) {
					c := berthv1.NewBundleServiceClient(e.conn(t, certs[who]))
					wantCode(t, nodeCalls[method](c), code)
				})
			}
		}
		for method, want := range adminTests {
			for who, code := range want {
				t.Run("BundleAdminService."+method+"/"+who, func(t *testing.T) {
					wantCode(t, adminCalls[method](e.adminClient(t, certs[who])), code)
				})
			}
		}
		if h := e.history(t, "node-a"); len(h) != 0 {
			t.Errorf("refused calls stored bundles: %v", h)
		}
	})
}

// TestNodeRequestsNameNoNode checks the node API's shape: the node is its
// certificate, and no request field could name another.
func TestNodeRequestsNameNoNode(t *testing.T) {
	for _, m := range []protoreflect.ProtoMessage{&berthv1.GetBundleRequest{}, &berthv1.PutBundleRequest{}, &berthv1.GetBundleVersionsRequest{}} {
		fields := m.ProtoReflect().Descriptor().Fields()
		for i := range fields.Len() {
			if name := string(fields.Get(i).Name()); strings.Contains(name, "node") || strings.Contains(name, "id") {
				t.Errorf("%s has a field %q", m.ProtoReflect().Descriptor().FullName(), name)
			}
		}
	}
}

func TestNodeIsolation(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a, b := e.newNode(t, "node-a", xwing), e.newNode(t, "node-b", p256)
		ca, cb := e.nodeClient(t, a), e.nodeClient(t, b)
		sealedA := e.config(t, a, "I am node A")

		info := putNode(t, ca, 0, sealedA)
		if info.GetNodeId() != "node-a" || info.GetVersion() != 1 || info.GetAuthor() != "node:node-a" || info.GetState() != berthv1.BundleState_BUNDLE_STATE_APPROVED {
			t.Fatalf("node A's upload = %v", info)
		}
		// Node B sees only its own (missing) bundle.
		_, err := cb.GetBundle(context.Background(), &berthv1.GetBundleRequest{})
		wantStatus(t, err, codes.NotFound, msgNoBundle)
		// Node B's writes land on its own bundle, whatever it expects.
		_, err = cb.PutBundle(context.Background(), &berthv1.PutBundleRequest{ExpectedVersion: 1, Sealed: e.config(t, b, "B")})
		wantStatus(t, err, codes.FailedPrecondition, msgStale)
		if got := putNode(t, cb, 0, e.config(t, b, "I am node B")); got.GetNodeId() != "node-b" || got.GetVersion() != 1 {
			t.Fatalf("node B's upload = %v", got)
		}
		if got := getNode(t, ca); !bytes.Equal(got.GetSealed(), sealedA) || got.GetInfo().GetVersion() != 1 {
			t.Errorf("node A's bundle changed: %v", got.GetInfo())
		}
		// An administrator and the registration service read node A's bundle.
		ids := e.identities(t)
		for _, who := range []string{"admin", "registration"} {
			resp, err := e.adminClient(t, ids[who]).GetSealedBundle(context.Background(), &berthv1.GetSealedBundleRequest{NodeId: "node-a"})
			if err != nil {
				t.Fatalf("%s: GetSealedBundle: %v", who, err)
			}
			if !bytes.Equal(resp.GetBundle().GetSealed(), sealedA) {
				t.Errorf("%s: GetSealedBundle returned other bytes", who)
			}
		}
	})
}

// TestSealStoreFetchOpen is the whole trip: sealed on the client, stored,
// fetched, opened by the node. The server and its database only ever hold
// ciphertext.
func TestSealStoreFetchOpen(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		for _, n := range []*node{e.newNode(t, "node-a", xwing), e.newNode(t, "node-b", p256)} {
			t.Run(n.id, func(t *testing.T) {
				secret := "db_password = " + rand.Text()
				files := []bundle.File{
					{Path: "etc/app/app.conf", Mode: 0o640, Owner: "root", Group: "app", Content: []byte(secret + "\n")},
					{Path: "etc/hostname", Mode: 0o644, Content: []byte(n.id + "\n")},
				}
				sealed := e.sealFor(t, n, byAdmin, files...)
				// An administrator writes it (as the engine would), the node reads it.
				info := putAdmin(t, e.admin(t), n.id, 0, sealed)
				want := &berthv1.BundleInfo{
					NodeId: n.id, Version: 1, State: berthv1.BundleState_BUNDLE_STATE_APPROVED, Size: int64(len(sealed)),
					Sha256: bundle.Digest(sealed), KemId: uint32(n.bundleKey.KEM().ID()), Author: "admin:admin",
					CreatedAt: timestamppb.New(e.clock.Now()), SignedBy: "spiffe://" + e.layout.TrustDomain + "/admin/admin",
				}
				if d := cmp.Diff(want, info, protocmp.Transform()); d != "" {
					t.Errorf("PutBundle info (-want +got):\n%s", d)
				}
				got := getNode(t, e.nodeClient(t, n))
				// A node is not told the signer: it verifies the signature itself.
				served := proto.Clone(want).(*berthv1.BundleInfo)
				served.SignedBy = ""
				if d := cmp.Diff(&berthv1.SealedBundle{Info: served, Sealed: sealed}, got, protocmp.Transform()); d != "" {
					t.Errorf("GetBundle (-want +got):\n%s", d)
				}
				v := bundle.Verifier{TrustDomain: e.layout.TrustDomain, NodeID: n.id, Version: 1, Roots: e.layout.RootPool()}
				opened, err := bundle.Open(n.bundleKey, got.GetSealed(), v)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if d := cmp.Diff([]bundle.File{files[0], files[1]}, opened.Files); d != "" {
					t.Errorf("opened files (-want +got):\n%s", d)
				}
				// Claimed for another node, the same bytes do not open.
				v.NodeID = "node-c"
				if _, err := bundle.Open(n.bundleKey, got.GetSealed(), v); !errors.Is(err, bundle.ErrWrongTarget) {
					t.Errorf("Open as another node: err = %v, want ErrWrongTarget", err)
				}

				stored, err := e.store.Get(context.Background(), n.id)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(stored.Sealed, sealed) || bytes.Contains(stored.Sealed, []byte(secret)) {
					t.Error("the store holds something other than the sealed bytes")
				}
				// SQLite's files can be searched; the store check above
				// covers PostgreSQL.
				if e.dbDir != "" {
					if where := grepDir(t, e.dbDir, secret); where != "" {
						t.Errorf("the plaintext is in the database file %s", where)
					}
				}
				if strings.Contains(e.logs.String(), secret) {
					t.Error("the plaintext is in the logs")
				}
			})
		}
	})
}

// grepDir returns the first file under dir that contains s.
func grepDir(t *testing.T, dir, s string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			return de.Name()
		}
	}
	return ""
}

func TestPutSizeLimit(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", p256)
		header := e.config(t, a, "x")[:bundle.HeaderSize]
		sized := func(n int) []byte {
			b := make([]byte, n)
			rand.Read(b)
			return append(bytes.Clone(header), b[len(header):]...)
		}
		c, admin := e.nodeClient(t, a), e.admin(t)

		_, err := c.PutBundle(context.Background(), &berthv1.PutBundleRequest{Sealed: sized(1<<20 + 1)})
		wantStatus(t, err, codes.ResourceExhausted, "bundle is 1048577 bytes; the limit is 1048576")
		_, err = admin.PutBundle(context.Background(), &berthv1.BundleAdminServicePutBundleRequest{NodeId: "node-a", Sealed: sized(1<<20 + 1)})
		wantStatus(t, err, codes.ResourceExhausted, "bundle is 1048577 bytes; the limit is 1048576")
		if h := e.history(t, "node-a"); len(h) != 0 {
			t.Fatalf("an oversized bundle was stored: %v", h)
		}
		// At the limit is fine.
		if info := putNode(t, c, 0, e.sealOfSize(t, a, 1<<20)); info.GetSize() != 1<<20 {
			t.Errorf("size = %d", info.GetSize())
		}
		_, err = c.PutBundle(context.Background(), &berthv1.PutBundleRequest{ExpectedVersion: 1, Sealed: sized(2 << 20)})
		wantStatus(t, err, codes.ResourceExhausted, "bundle is 2097152 bytes; the limit is 1048576")
		if h := e.history(t, "node-a"); len(h) != 1 {
			t.Errorf("history = %v, want the one bundle at the limit", h)
		}

		// A configured limit applies to genuine bundles.
		small := newEnv(t, engine, func(c *Config) { c.MaxBundleSize = 4096 })
		b := small.newNode(t, "node-b", xwing)
		random := make([]byte, 4096)
		rand.Read(random)
		sealed := small.sealFor(t, b, byNode, bundle.File{Path: "blob", Mode: 0o600, Content: random})
		_, err = small.nodeClient(t, b).PutBundle(context.Background(), &berthv1.PutBundleRequest{Sealed: sealed})
		wantStatus(t, err, codes.ResourceExhausted, "bundle is "+strconv.Itoa(len(sealed))+" bytes; the limit is 4096")
		if h := small.history(t, "node-b"); len(h) != 0 {
			t.Errorf("an oversized bundle was stored: %v", h)
		}
	})
}

// sealOfSize seals random content for n's next version, signed by n, to a
// bundle of exactly size bytes. (The signature's length varies by a byte
// or two, so it tries until one fits.)
func (e *env) sealOfSize(t *testing.T, n *node, size int) []byte {
	t.Helper()
	content := make([]byte, size)
	rand.Read(content) // incompressible
	n0 := size
	for range 100 {
		b := e.sealFor(t, n, byNode, bundle.File{Path: "blob", Mode: 0o600, Content: content[:n0]})
		if len(b) == size {
			return b
		}
		n0 = min(size, max(0, n0+(size-len(b))))
	}
	t.Fatalf("no bundle of %d bytes", size)
	return nil
}

func TestPutInvalid(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", xwing)
		good := e.config(t, a, "x")
		edit := func(f func([]byte)) []byte {
			b := bytes.Clone(good)
			f(b)
			return b
		}
		tests := []struct {
			name     string
			expected int64
			sealed   []byte
			wantMsg  string
		}{
			{"empty", 0, nil, "sealed " + ruleSealed},
			{"garbage", 0, []byte("#cloud-config\npassword: hunter2\n"), "sealed " + ruleSealed},
			{"plain text of the size of a bundle", 0, bytes.Repeat([]byte("a"), len(good)), "sealed " + ruleSealed},
			{"format version 3", 0, edit(func(b []byte) { b[8] = 3 }), "sealed " + ruleSealed},
			{"unsigned (format version 1)", 0, unsignedV1(good), "sealed " + ruleUnsigned},
			{"no signature block", 0, good[:len(good)-len(signatureBlock(t, good))], "sealed " + ruleSealed},
			{"unknown KEM", 0, edit(func(b []byte) { b[9], b[10] = 0xff, 0xff }), "sealed " + ruleSealed},
			{"truncated", 0, good[:bundle.HeaderSize+10], "sealed " + ruleSealed},
			{"negative expected version", -1, good, "expected_version " + ruleExpected},
		}
		c, admin := e.nodeClient(t, a), e.admin(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := c.PutBundle(context.Background(), &berthv1.PutBundleRequest{ExpectedVersion: tt.expected, Sealed: tt.sealed})
				wantStatus(t, err, codes.InvalidArgument, tt.wantMsg)
				_, err = admin.PutBundle(context.Background(), &berthv1.BundleAdminServicePutBundleRequest{NodeId: "node-a", ExpectedVersion: tt.expected, Sealed: tt.sealed})
				wantStatus(t, err, codes.InvalidArgument, tt.wantMsg)
				if h := e.history(t, "node-a"); len(h) != 0 {
					t.Fatalf("an invalid bundle was stored: %v", h)
				}
			})
		}
	})
}

func TestCompareAndSwap(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", xwing)
		c, admin := e.nodeClient(t, a), e.admin(t)
		v1 := e.config(t, a, "v1")
		putNode(t, c, 0, v1)
		for _, expected := range []int64{0, 2, 9} {
			_, err := c.PutBundle(context.Background(), &berthv1.PutBundleRequest{ExpectedVersion: expected, Sealed: e.config(t, a, "lost")})
			wantStatus(t, err, codes.FailedPrecondition, msgStale)
			_, err = admin.PutBundle(context.Background(), &berthv1.BundleAdminServicePutBundleRequest{NodeId: "node-a", ExpectedVersion: expected, Sealed: e.adminConfig(t, a, "lost")})
			wantStatus(t, err, codes.FailedPrecondition, msgStale)
		}
		if got := getNode(t, c); !bytes.Equal(got.GetSealed(), v1) {
			t.Fatal("a stale write changed the bundle")
		}
		if info := putNode(t, c, 1, e.config(t, a, "v2")); info.GetVersion() != 2 {
			t.Errorf("version = %d, want 2", info.GetVersion())
		}
		if info := putAdmin(t, admin, "node-a", 2, e.adminConfig(t, a, "v3")); info.GetVersion() != 3 || info.GetAuthor() != "admin:admin" {
			t.Errorf("admin write = %v", info)
		}
		want := []string{"3:approved:admin:admin", "2:superseded:node:node-a", "1:superseded:node:node-a"}
		if d := cmp.Diff(want, e.history(t, "node-a")); d != "" {
			t.Errorf("history (-want +got):\n%s", d)
		}
	})
}

// TestConcurrentWrites races uploads that all expect the same version:
// exactly one wins.
func TestConcurrentWrites(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", p256)
		c := e.nodeClient(t, a)
		putNode(t, c, 0, e.config(t, a, "v1"))
		const n = 6
		sealed := make([][]byte, n)
		for i := range sealed {
			sealed[i] = e.config(t, a, "racer "+strconv.Itoa(i))
		}
		codesSeen := make([]codes.Code, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, err := c.PutBundle(context.Background(), &berthv1.PutBundleRequest{ExpectedVersion: 1, Sealed: sealed[i]})
				codesSeen[i] = status.Code(err)
			})
		}
		wg.Wait()
		won := 0
		for _, code := range codesSeen {
			switch code {
			case codes.OK:
				won++
			case codes.FailedPrecondition:
			default:
				t.Errorf("code %v", code)
			}
		}
		if won != 1 {
			t.Errorf("%d writes won, want 1", won)
		}
	})
}

func TestNew(t *testing.T) {
	s, err := bundlestore.Open(context.Background(), db.SQLite, filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	tests := []struct {
		name    string
		c       Config
		wantErr bool
	}{
		{"defaults", Config{Store: s, TrustDomain: "berth.test", Roots: x509.NewCertPool()}, false},
		{"no store", Config{TrustDomain: "berth.test", Roots: x509.NewCertPool()}, true},
		{"no trust domain", Config{Store: s, Roots: x509.NewCertPool()}, true},
		{"no roots", Config{Store: s, TrustDomain: "berth.test"}, true},
		{"negative limit", Config{Store: s, TrustDomain: "berth.test", Roots: x509.NewCertPool(), MaxBundleSize: -1}, true},
		{"negative keep", Config{Store: s, TrustDomain: "berth.test", Roots: x509.NewCertPool(), Keep: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, err := New(tt.c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (svc.maxSize != DefaultMaxBundleSize || svc.keep != DefaultKeep || svc.log == nil || svc.clock == nil) {
				t.Errorf("defaults not filled in: %+v", svc)
			}
		})
	}
}

// TestLogs checks that logs carry fingerprints, never bundle bytes.
func TestLogs(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", xwing)
		sealed := e.config(t, a, "x")
		putNode(t, e.nodeClient(t, a), 0, sealed)
		logs := e.logs.String()
		for _, enc := range []string{base64.StdEncoding.EncodeToString(sealed[bundle.HeaderSize:]), hex.EncodeToString(sealed[bundle.HeaderSize:])} {
			if strings.Contains(logs, enc[:32]) {
				t.Error("logs contain the sealed bundle")
			}
		}
		if !strings.Contains(logs, attrDigest+"="+bundle.Digest(sealed)) || !strings.Contains(logs, attrNode+"=node-a") {
			t.Errorf("the upload is not logged with its node and digest:\n%s", logs)
		}
	})
}

// TestStoreUnavailable: when the database cannot serve, every call that
// needs it says Unavailable, to be retried, never Internal.
func TestStoreUnavailable(t *testing.T) {
	down := grpctest.DatabaseDown(t)
	e := newEnv(t, pgtest.SQLite, func(c *Config) { c.Store = downStore{Store: c.Store, err: down} })
	a := e.newNode(t, "node-a", p256)
	node, admin := e.nodeClient(t, a), e.admin(t)
	sealed, adminSealed := e.sealAt(t, a, byNode, 1, confFile("x")), e.sealAt(t, a, byAdmin, 1, confFile("x"))
	ctx := context.Background()
	calls := map[string]func() error{
		"GetBundle": func() error { _, err := node.GetBundle(ctx, &berthv1.GetBundleRequest{}); return err },
		"PutBundle": func() error {
			_, err := node.PutBundle(ctx, &berthv1.PutBundleRequest{Sealed: sealed})
			return err
		},
		"admin PutBundle": func() error {
			_, err := admin.PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{NodeId: a.id, Sealed: adminSealed})
			return err
		},
		"GetBundleVersions": func() error {
			_, err := node.GetBundleVersions(ctx, &berthv1.GetBundleVersionsRequest{})
			return err
		},
		"GetBundleInfo": func() error {
			_, err := admin.GetBundleInfo(ctx, &berthv1.GetBundleInfoRequest{NodeId: a.id})
			return err
		},
		"ListBundleHistory": func() error {
			_, err := admin.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: a.id})
			return err
		},
		"ApproveBundle": func() error {
			_, err := admin.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: a.id, Version: 1})
			return err
		},
		"ResetBundle": func() error {
			_, err := admin.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: a.id})
			return err
		},
		"GetSealedBundle": func() error {
			_, err := admin.GetSealedBundle(ctx, &berthv1.GetSealedBundleRequest{NodeId: a.id})
			return err
		},
		"DeleteBundles": func() error {
			_, err := admin.DeleteBundles(ctx, &berthv1.DeleteBundlesRequest{NodeId: a.id})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			grpctest.WantStatus(t, call(), codes.Unavailable, rpcerr.MsgDatabaseUnavailable)
		})
	}
	if h := e.history(t, a.id); len(h) != 0 {
		t.Errorf("history = %v, want none", h)
	}
}
