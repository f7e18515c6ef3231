package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/tpm/tpmtest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openSim(t testing.TB, sim *tpmtest.Sim) *TPM {
	t.Helper()
	tp, err := Open(testCtx(t), Config{Device: sim.Device()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = tp.Close() })
	return tp
}

// transients lists the transient objects loaded in the TPM.
func transients(t testing.TB, tp transport.TPM) []tpm2.TPMHandle {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTTransient) << 24, PropertyCount: 64}.Execute(tp)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	return hs.Handle
}

// TestLeftoversFlushed: an agent that crashed left its keys loaded in a
// TPM without a resource manager, filling its object slots. The next
// agent must still start.
func TestLeftoversFlushed(t *testing.T) {
	sim := tpmtest.Start(t)
	crashed, err := Open(testCtx(t), Config{Device: sim.Device()})
	if err != nil {
		t.Fatal(err)
	}
	// Crash: the connection goes away without flushing anything.
	if err := crashed.conn.Close(); err != nil {
		t.Fatal(err)
	}

	dev, _ := ParseDevice(sim.Device())
	raw, err := dev.dial(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(transients(t, raw)); n != maxLoaded {
		t.Fatalf("%d objects left loaded, want the crashed agent's %d", n, maxLoaded)
	}
	// With the slots full, a fresh key cannot be created...
	if _, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(identityTemplate())}).Execute(raw); !errors.Is(err, tpm2.TPMRCObjectMemory) {
		t.Fatalf("create primary with full slots = %v, want TPM_RC_OBJECT_MEMORY", err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	// ...but Open clears them out first.
	tp := openSim(t, sim)
	d := sha256.Sum256([]byte("x"))
	if _, err := tp.Identity().Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatalf("sign: %v", err)
	}
	if err := tp.do(testCtx(t), func(c transport.TPM) error {
		if n := len(transients(t, c)); n != maxLoaded {
			t.Errorf("%d objects loaded, want %d", n, maxLoaded)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestCredentialNeedsTheKeyInTheTPM is the attack credential activation
// exists to stop: a node holds a genuine TPM (and its EK) but wants to
// register a software key. It builds a public area that claims the TPM
// attributes, loads only that public part into the genuine TPM with
// TPM2_LoadExternal, and asks the TPM to activate the credential for it.
// The TPM must refuse: it cannot authorise a public-only object.
func TestCredentialNeedsTheKeyInTheTPM(t *testing.T) {
	tp := openSim(t, tpmtest.Start(t))
	soft, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fake := identityTemplate()
	fake.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: soft.X.FillBytes(make([]byte, 32))},
		Y: tpm2.TPM2BECCParameter{Buffer: soft.Y.FillBytes(make([]byte, 32))},
	})
	fakeRaw := tpm2.Marshal(fake)

	// The server's checks pass: the public area claims everything.
	key, err := attest.ParseIdentityKey(fakeRaw, &soft.PublicKey)
	if err != nil {
		t.Fatalf("the forged public area should pass the attribute checks: %v", err)
	}
	e, err := tp.Endorsement(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	ek, err := attest.ParseEK(e.Public)
	if err != nil {
		t.Fatal(err)
	}
	ch, _, err := attest.MakeCredential(rand.Reader, ek, key)
	if err != nil {
		t.Fatal(err)
	}

	err = tp.do(testCtx(t), func(c transport.TPM) error {
		ekObj, _, err := tp.endorsementKey(c)
		if err != nil {
			return err
		}
		if err := tp.objs.ensure(c, ekObj); err != nil {
			return err
		}
		if err := tp.objs.makeRoom(c, 1, ekObj); err != nil {
			return err
		}
		loaded, err := tpm2.LoadExternal{InPublic: tpm2.New2B(fake), Hierarchy: tpm2.TPMRHNull}.Execute(c)
		if err != nil {
			return err // refused already at loading: the attack fails
		}
		defer tpm2.FlushContext{FlushHandle: loaded.ObjectHandle}.Execute(c)
		if !bytes.Equal(loaded.Name.Buffer, key.Name()) {
			t.Fatalf("loaded object's Name %x, the credential names %x", loaded.Name.Buffer, key.Name())
		}
		_, err = tpm2.ActivateCredential{
			ActivateHandle: tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
			KeyHandle: tpm2.AuthHandle{
				Handle: ekObj.named().Handle, Name: ekObj.name,
				Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, endorsementPolicy),
			},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: ch.CredentialBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: ch.EncryptedSecret},
		}.Execute(c)
		if err == nil {
			t.Fatal("the TPM activated a credential for a key it does not hold")
		}
		// Refused for the right reason, not, say, a broken EK session.
		if !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
			t.Fatalf("activation = %v, want TPM_RC_AUTH_UNAVAILABLE", err)
		}
		return nil
	})
	if err != nil {
		t.Logf("the TPM refused the public-only key at once: %v", err)
	}
}

// TestKeyChangedAfterClear: TPM2_Clear replaces the owner seed, so the
// node's keys are gone. A running agent must notice rather than silently
// sign with a different key.
func TestKeyChangedAfterClear(t *testing.T) {
	tp := openSim(t, tpmtest.Start(t))
	err := tp.do(testCtx(t), func(c transport.TPM) error {
		if err := tp.objs.flushAll(c); err != nil {
			return err
		}
		_, err := tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)}}.Execute(c)
		return err
	})
	if err != nil {
		t.Fatalf("clear: %v", err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := tp.Identity().Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("sign after TPM2_Clear = %v, want ErrKeyChanged", err)
	}
}

// TestPersistentEKIsTheTemplateEK: a provisioned TPM's persistent EK, which
// Endorsement prefers, is the key the default template derives, so an
// agent gives the same EK whichever way it finds it.
func TestPersistentEKIsTheTemplateEK(t *testing.T) {
	tp := openSim(t, tpmtest.StartProvisioned(t, tpmtest.NewManufacturer(t, "Acme")))
	e, err := tp.Endorsement(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if tp.ek.persistent != 0x81010001 {
		t.Fatalf("EK at 0x%08x, want the provisioned 0x81010001", uint32(tp.ek.persistent))
	}
	err = tp.do(testCtx(t), func(c transport.TPM) error {
		o := &object{what: "template EK", hierarchy: tpm2.TPMRHEndorsement, template: tpm2.RSAEKTemplate}
		if err := tp.objs.ensure(c, o); err != nil {
			return err
		}
		if !bytes.Equal(o.pubBytes, e.Public) {
			t.Error("the template EK differs from the persistent one")
		}
		return tp.objs.flush(c, o)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNoEKWithEndorsementAuth: where the machine's owner protected the
// endorsement hierarchy with a password, this package cannot create the
// EK, and says so in one line.
func TestNoEKWithEndorsementAuth(t *testing.T) {
	tp := openSim(t, tpmtest.Start(t))
	err := tp.do(testCtx(t), func(c transport.TPM) error {
		_, err := tpm2.HierarchyChangeAuth{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			NewAuth:    tpm2.TPM2BAuth{Buffer: []byte("owner's secret")},
		}.Execute(c)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tp.Endorsement(testCtx(t))
	if !errors.Is(err, ErrNoEK) {
		t.Fatalf("endorsement = %v, want ErrNoEK", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %q is not one line", err)
	}
}
