package tpm_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"testing"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/tpm"
	"github.com/berth-dev/berth/internal/tpm/tpmtest"
)

func TestBundleKeyOpensOnlyInItsTPM(t *testing.T) {
	a := open(t, tpmtest.Start(t), tpm.Config{})
	b := open(t, tpmtest.Start(t), tpm.Config{})
	if got := a.BundleKey().KEM().ID(); got != hpke.DHKEM(ecdh.P256()).ID() {
		t.Fatalf("bundle key KEM = 0x%04x, want DHKEM(P-256)", got)
	}

	t.Run("crypto/hpke", func(t *testing.T) {
		kdf, aead := hpke.HKDFSHA256(), hpke.AES256GCM()
		info, msg := []byte("berth bundle"), []byte("node configuration")
		ct, err := hpke.Seal(a.BundleKey().PublicKey(), kdf, aead, info, msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := hpke.Open(a.BundleKey(), kdf, aead, info, ct)
		if err != nil {
			t.Fatalf("open in the TPM it was sealed to: %v", err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("opened %q, want %q", got, msg)
		}
		if _, err := hpke.Open(b.BundleKey(), kdf, aead, info, ct); err == nil {
			t.Fatal("another TPM opened the bundle")
		}
	})

	t.Run("berth bundle", func(t *testing.T) {
		kemID, pub := a.BundleKey().KEM().ID(), a.BundleKey().PublicKey().Bytes()
		files := []bundle.File{{Path: "etc/berth/role", Mode: 0o644, Content: []byte("compute\n")}}
		// The node signs its own bundle with its identity key, in the TPM.
		signer, err := bundle.NewNodeSigner("berth.test", a.Identity())
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := bundle.Seal(bundle.Target{NodeID: "node-1", KEM: kemID, Public: pub, Version: 1}, bundle.Contents{Files: files}, signer)
		if err != nil {
			t.Fatal(err)
		}
		v := bundle.Verifier{TrustDomain: "berth.test", NodeID: "node-1", Version: 1, NodeKey: a.Identity().Public()}
		got, err := bundle.Open(a.BundleKey(), sealed, v)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if len(got.Files) != 1 || !bytes.Equal(got.Files[0].Content, files[0].Content) || got.SignedBy.String() != "node" {
			t.Fatalf("opened %+v", got)
		}
		if _, err := bundle.Open(b.BundleKey(), sealed, v); !errors.Is(err, bundle.ErrDecrypt) {
			t.Fatalf("open with another TPM's key = %v, want ErrDecrypt", err)
		}
		// Checked against another TPM's identity key, the self-signature fails.
		v.NodeKey = b.Identity().Public()
		if _, err := bundle.Open(a.BundleKey(), sealed, v); !errors.Is(err, bundle.ErrSignature) {
			t.Fatalf("verify with another TPM's identity key = %v, want ErrSignature", err)
		}
	})

	t.Run("after a reboot", func(t *testing.T) {
		sim := tpmtest.Start(t)
		before := open(t, sim, tpm.Config{})
		kdf, aead := hpke.HKDFSHA256(), hpke.AES256GCM()
		ct, err := hpke.Seal(before.BundleKey().PublicKey(), kdf, aead, nil, []byte("kept"))
		if err != nil {
			t.Fatal(err)
		}
		if err := before.Close(); err != nil {
			t.Fatal(err)
		}
		sim.Restart(t)
		after := open(t, sim, tpm.Config{})
		if got, err := hpke.Open(after.BundleKey(), kdf, aead, nil, ct); err != nil || string(got) != "kept" {
			t.Fatalf("open after reboot = %q, %v", got, err)
		}
	})
}
