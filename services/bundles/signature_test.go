package bundles

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// unsignedV1 turns a sealed bundle into one of format version 1, as stores
// hold them from before signing: a 15-byte header and the HPKE output. It
// is structurally sound; only the node could tell it does not decrypt.
func unsignedV1(sealed []byte) []byte {
	p, err := bundle.Parse(sealed)
	if err != nil {
		panic(err)
	}
	b := append([]byte(bundle.Magic), bundle.VersionUnsigned)
	b = append(b, sealed[9:15]...)
	return append(b, p.Sealed[bundle.HeaderSize:]...)
}

// signatureBlock returns the signature block of a sealed bundle.
func signatureBlock(t *testing.T, sealed []byte) []byte {
	t.Helper()
	p, err := bundle.Parse(sealed)
	if err != nil {
		t.Fatal(err)
	}
	return sealed[len(p.Sealed):]
}

// TestPutSignatures puts bundles signed by every signer that must be
// refused, on both APIs: each fails with its status and stores nothing.
func TestPutSignatures(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a, b := e.newNode(t, "node-a", xwing), e.newNode(t, "node-b", p256)
		nodeA, admin := e.nodeClient(t, a), e.admin(t)
		foreign, err := grpctest.NewPKI(t).AdminCertificate()
		if err != nil {
			t.Fatal(err)
		}
		// A node certificate of this deployment, passed off as an admin
		// signer's chain.
		nodeAsAdmin := func() []byte {
			good := e.sealAt(t, a, byAdmin, 1, confFile("x"))
			p, _ := bundle.Parse(good)
			p.Signature.Chain = [][]byte{b.cert.Certificate[0], e.layout.Intermediate.Raw}
			return append(p.Sealed, p.Signature.Encode()...)
		}()
		// Signed by the admin, then the sealed part swapped for another.
		transplanted := func() []byte {
			one := e.sealAt(t, a, byAdmin, 1, confFile("one"))
			two := e.sealAt(t, a, byAdmin, 1, confFile("two"))
			p, _ := bundle.Parse(two)
			return append(bytes.Clone(p.Sealed), signatureBlock(t, one)...)
		}()
		sealFor := func(n *node, by signers, v int64, s *bundle.Signer) []byte {
			if s == nil {
				return e.sealAt(t, n, by, v, confFile("x"))
			}
			sealed, err := bundle.Seal(bundle.Target{NodeID: n.id, KEM: n.bundleKey.KEM().ID(), Public: n.bundleKey.PublicKey().Bytes(), Version: v},
				bundle.Contents{Files: []bundle.File{confFile("x")}}, s)
			if err != nil {
				t.Fatal(err)
			}
			return sealed
		}
		nodeBSigner := e.signer(t, b, byNode)
		tests := []struct {
			name   string
			admin  bool // through the admin API; else node A's own upload
			sealed []byte
			code   codes.Code
			msg    string
		}{
			{"node: signed by the admin", false, sealFor(a, byAdmin, 1, nil), codes.InvalidArgument, "sealed " + ruleNodeSigned},
			{"node: signed by another node's key", false, sealFor(a, byNode, 1, nodeBSigner), codes.InvalidArgument, msgSignature},
			{"node: for another node", false, sealFor(b, byNode, 1, e.signer(t, a, byNode)), codes.InvalidArgument, msgWrongTarget},
			{"node: for version 2", false, sealFor(a, byNode, 2, nil), codes.FailedPrecondition, versionError{signed: 2, next: 1}.Error()},
			{"node: unsigned", false, unsignedV1(sealFor(a, byNode, 1, nil)), codes.InvalidArgument, "sealed " + ruleUnsigned},
			{"admin: self-signed by the node", true, sealFor(a, byNode, 1, nil), codes.InvalidArgument, "sealed " + ruleAdminSigned},
			{"admin: an admin of another deployment", true, sealFor(a, byAdmin, 1, adminSigner(t, foreign)), codes.InvalidArgument, msgSigner},
			{"admin: a node certificate as the signer", true, nodeAsAdmin, codes.InvalidArgument, msgSigner},
			{"admin: signature over other bytes", true, transplanted, codes.InvalidArgument, msgSignature},
			{"admin: for another node", true, sealFor(b, byAdmin, 1, nil), codes.InvalidArgument, msgWrongTarget},
			{"admin: for version 0 of the store's count", true, func() []byte {
				p, _ := bundle.Parse(sealFor(a, byAdmin, 1, nil))
				p.Signature.Version = 7
				return append(p.Sealed, p.Signature.Encode()...)
			}(), codes.FailedPrecondition, versionError{signed: 7, next: 1}.Error()},
			{"admin: unsigned", true, unsignedV1(sealFor(a, byAdmin, 1, nil)), codes.InvalidArgument, "sealed " + ruleUnsigned},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var err error
				if tt.admin {
					_, err = admin.PutBundle(context.Background(), &berthv1.BundleAdminServicePutBundleRequest{NodeId: a.id, Sealed: tt.sealed})
				} else {
					_, err = nodeA.PutBundle(context.Background(), &berthv1.PutBundleRequest{Sealed: tt.sealed})
				}
				wantStatus(t, err, tt.code, tt.msg)
				if h := e.history(t, a.id); len(h) != 0 {
					t.Fatalf("a refused bundle was stored: %v", h)
				}
			})
		}
		// The good ones, for contrast: node A's own, then the admin's.
		if info := putNode(t, nodeA, 0, sealFor(a, byNode, 1, nil)); info.GetSignedBy() != "node" {
			t.Errorf("node upload signed_by = %q", info.GetSignedBy())
		}
		info := putAdmin(t, admin, a.id, 1, sealFor(a, byAdmin, 2, nil))
		if want := "spiffe://" + e.layout.TrustDomain + "/admin/admin"; info.GetSignedBy() != want {
			t.Errorf("admin write signed_by = %q, want %q", info.GetSignedBy(), want)
		}
	})
}

// TestVersionNumbers checks what writers are told to sign for: the next
// number after everything used, resets and superseded uploads included,
// on both APIs, and that writes land on exactly that number.
func TestVersionNumbers(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, func(c *Config) { c.RequireApproval = true })
		a := e.newNode(t, "node-a", p256)
		nodeA, admin := e.nodeClient(t, a), e.admin(t)
		ctx := context.Background()
		check := func(current, pending, next int64) {
			t.Helper()
			v, err := nodeA.GetBundleVersions(ctx, &berthv1.GetBundleVersionsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if v.GetCurrent() != current || v.GetPending() != pending || v.GetNext() != next {
				t.Fatalf("GetBundleVersions = %v, want current %d pending %d next %d", v, current, pending, next)
			}
			h, err := admin.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: a.id})
			if err != nil {
				t.Fatal(err)
			}
			if h.GetNextVersion() != next {
				t.Fatalf("ListBundleHistory next_version = %d, want %d", h.GetNextVersion(), next)
			}
		}
		check(0, 0, 1)
		putNode(t, nodeA, 0, e.sealAt(t, a, byNode, 1, confFile("1"))) // held
		check(0, 1, 2)
		putAdmin(t, admin, a.id, 0, e.sealAt(t, a, byAdmin, 2, confFile("2"))) // supersedes the upload
		check(2, 0, 3)
		if _, err := admin.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: a.id}); err != nil {
			t.Fatal(err)
		}
		check(0, 0, 4)
		// After the reset the node has no version, but the number goes on:
		// a bundle signed for 1 again (a replay of the first) is refused.
		_, err := nodeA.PutBundle(ctx, &berthv1.PutBundleRequest{Sealed: e.sealAt(t, a, byNode, 1, confFile("1"))})
		wantStatus(t, err, codes.FailedPrecondition, versionError{signed: 1, next: 4}.Error())
		putNode(t, nodeA, 0, e.sealAt(t, a, byNode, 4, confFile("4")))
		if _, err := admin.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: a.id, Version: 4}); err != nil {
			t.Fatal(err)
		}
		check(4, 0, 5)
		// A replayed older version, however validly signed, is refused.
		old := getNode(t, nodeA).GetSealed()
		_, err = admin.PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{NodeId: a.id, ExpectedVersion: 4, Sealed: old})
		wantStatus(t, err, codes.InvalidArgument, "sealed "+ruleAdminSigned)
		_, err = nodeA.PutBundle(ctx, &berthv1.PutBundleRequest{ExpectedVersion: 4, Sealed: old})
		wantStatus(t, err, codes.FailedPrecondition, versionError{signed: 4, next: 5}.Error())
		check(4, 0, 5)
	})
}

// TestConcurrentWriteTakesTheNumber races an administrator's write, signed
// for the next number, with a write that takes that number first.
func TestConcurrentWriteTakesTheNumber(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		var racing *racingStore
		e := newEnv(t, engine, func(c *Config) {
			racing = &racingStore{Store: c.Store}
			c.Store = racing
		})
		a := e.newNode(t, "node-a", p256)
		nodeA, admin := e.nodeClient(t, a), e.admin(t)
		ctx := context.Background()
		putAdmin(t, admin, a.id, 0, e.sealAt(t, a, byAdmin, 1, confFile("1")))

		// A node upload held for approval takes version 2 first: the
		// administrator's write, signed for 2, is refused, and the upload
		// is not superseded by a write that was never meant to replace it.
		racing.race = func() {
			_, err := racing.Store.Put(ctx, a.id, 1, bundlestore.Bundle{Meta: bundlestore.Meta{
				Digest: "d", Author: "node:" + a.id, CreatedAt: e.clock.Now()}, Sealed: e.sealAt(t, a, byNode, 2, confFile("2"))},
				bundlestore.PutOptions{RequireApproval: true})
			if err != nil {
				t.Error(err)
			}
		}
		_, err := admin.PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{NodeId: a.id, ExpectedVersion: 1, Sealed: e.sealAt(t, a, byAdmin, 2, confFile("admin 2"))})
		wantStatus(t, err, codes.FailedPrecondition, versionError{signed: 2, next: 3}.Error())
		want := []string{"2:pending:node:node-a", "1:approved:admin:admin"}
		if d := cmp.Diff(want, e.history(t, a.id)); d != "" {
			t.Errorf("history (-want +got):\n%s", d)
		}

		// The race the compare-and-swap on the current version cannot see: a
		// reset of a node whose only version is pending, then the write. The
		// store compares the signed number too: the write is refused and
		// nothing of it is stored.
		if _, err := admin.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: a.id}); err != nil {
			t.Fatal(err)
		}
		putNode(t, nodeA, 0, e.sealAt(t, a, byNode, 4, confFile("4"))) // pending, no current
		racing.race = func() {
			if _, err := racing.Store.Reset(ctx, a.id, "admin:other", e.clock.Now(), 0); err != nil {
				t.Error(err)
			}
		}
		_, err = admin.PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{NodeId: a.id, Sealed: e.sealAt(t, a, byAdmin, 5, confFile("5"))})
		wantStatus(t, err, codes.FailedPrecondition, versionError{signed: 5, next: 6}.Error())
		want = []string{"5:reset:admin:other", "4:superseded:node:node-a", "3:reset:admin:admin"}
		if d := cmp.Diff(want, e.history(t, a.id)[:3]); d != "" {
			t.Errorf("history after the refused write (-want +got):\n%s", d)
		}
	})
}
