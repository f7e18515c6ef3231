package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/tpm"
	"github.com/berth-dev/berth/internal/tpm/tpmtest"
)

// testCtx bounds every TPM call in a test: generous, only there so a hung
// simulator fails the test instead of the whole run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func open(t testing.TB, sim *tpmtest.Sim, cfg tpm.Config) *tpm.TPM {
	t.Helper()
	cfg.Device = sim.Device()
	tp, err := tpm.Open(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("open %s: %v", sim.Device(), err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return tp
}

// publics is everything a TPM node shows the world about its keys.
type publics struct {
	identity, bundle, ak, ek []byte
}

func readPublics(t testing.TB, tp *tpm.TPM) publics {
	t.Helper()
	ek, err := tp.Endorsement(testCtx(t))
	if err != nil {
		t.Fatalf("endorsement: %v", err)
	}
	return publics{
		identity: tp.PublicArea(tpm.KeyIdentity),
		bundle:   tp.BundleKey().PublicKey().Bytes(),
		ak:       tp.PublicArea(tpm.KeyAK),
		ek:       ek.Public,
	}
}

func TestKeysSurviveReboots(t *testing.T) {
	sim := tpmtest.Start(t)
	first := func() publics {
		tp := open(t, sim, tpm.Config{})
		defer tp.Close()
		return readPublics(t, tp)
	}()
	for boot := 1; boot <= 20; boot++ {
		sim.Restart(t)
		tp, err := tpm.Open(testCtx(t), tpm.Config{Device: sim.Device()})
		if err != nil {
			t.Fatalf("boot %d: open: %v", boot, err)
		}
		got := readPublics(t, tp)
		if err := tp.Close(); err != nil {
			t.Fatalf("boot %d: close: %v", boot, err)
		}
		for _, c := range []struct {
			what      string
			got, want []byte
		}{
			{"identity key", got.identity, first.identity},
			{"bundle key", got.bundle, first.bundle},
			{"attestation key", got.ak, first.ak},
			{"endorsement key", got.ek, first.ek},
		} {
			if !bytes.Equal(c.got, c.want) {
				t.Fatalf("boot %d: the %s changed", boot, c.what)
			}
		}
	}
}

func TestKeysDifferPerTPM(t *testing.T) {
	a := readPublics(t, open(t, tpmtest.Start(t), tpm.Config{}))
	b := readPublics(t, open(t, tpmtest.Start(t), tpm.Config{}))
	for _, c := range []struct {
		what string
		a, b []byte
	}{
		{"identity key", a.identity, b.identity},
		{"bundle key", a.bundle, b.bundle},
		{"attestation key", a.ak, b.ak},
		{"endorsement key", a.ek, b.ek},
	} {
		if len(c.a) == 0 || bytes.Equal(c.a, c.b) {
			t.Errorf("two TPMs have the same %s", c.what)
		}
	}
	// Within one TPM the three templates give three keys.
	if bytes.Equal(a.identity, a.ak) {
		t.Error("identity key and attestation key are the same")
	}
}

func TestSign(t *testing.T) {
	tp := open(t, tpmtest.Start(t), tpm.Config{})
	s := tp.Identity()
	pub := s.Public().(*ecdsa.PublicKey)
	msg := []byte("client handshake transcript")
	for _, c := range []struct {
		hash   crypto.Hash
		digest []byte
	}{
		{crypto.SHA256, sum(sha256.New(), msg)},
		{crypto.SHA384, sum(sha512.New384(), msg)},
		{crypto.SHA512, sum(sha512.New(), msg)},
	} {
		t.Run(c.hash.String(), func(t *testing.T) {
			sig, err := s.Sign(rand.Reader, c.digest, c.hash)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			if !ecdsa.VerifyASN1(pub, c.digest, sig) {
				t.Fatal("signature does not verify")
			}
			// ECDSA is randomised in the TPM too: a second signature
			// differs and verifies.
			sig2, err := s.Sign(rand.Reader, c.digest, c.hash)
			if err != nil || bytes.Equal(sig, sig2) || !ecdsa.VerifyASN1(pub, c.digest, sig2) {
				t.Fatalf("second signature: err %v, equal %v", err, bytes.Equal(sig, sig2))
			}
			if ecdsa.VerifyASN1(pub, sum(sha512.New(), []byte("other")), sig) {
				t.Fatal("signature verifies for another message")
			}
		})
	}
}

func TestSignRefusesBadRequests(t *testing.T) {
	tp := open(t, tpmtest.Start(t), tpm.Config{})
	d := sha256.Sum256([]byte("x"))
	for _, c := range []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"SHA-1", make([]byte, 20), crypto.SHA1},
		{"raw message", []byte("not a digest"), crypto.Hash(0)},
		{"digest shorter than its hash", d[:31], crypto.SHA256},
		{"digest longer than its hash", append(d[:], 0), crypto.SHA256},
		{"nil opts and an odd digest size", d[:20], nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := tp.Identity().Sign(rand.Reader, c.digest, c.opts)
			if !errors.Is(err, tpm.ErrInvalid) {
				t.Fatalf("sign = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	tp := open(t, tpmtest.Start(t), tpm.Config{})
	pub := tp.Identity().Public().(*ecdsa.PublicKey)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Go(func() {
			d := sha256.Sum256([]byte{byte(i)})
			sig, err := tp.Identity().Sign(rand.Reader, d[:], crypto.SHA256)
			if err == nil && !ecdsa.VerifyASN1(pub, d[:], sig) {
				err = errors.New("signature does not verify")
			}
			errs <- err
		})
		wg.Go(func() {
			_, err := tp.Quote(testCtx(t), []byte{byte(i), 1}, nil)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestStartupWhenTheTPMHasHadNone(t *testing.T) {
	sim := tpmtest.Start(t, tpmtest.WithoutStartup())
	tp := open(t, sim, tpm.Config{})
	d := sha256.Sum256([]byte("x"))
	if _, err := tp.Identity().Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatalf("sign after startup: %v", err)
	}
}

func TestUseAfterClose(t *testing.T) {
	sim := tpmtest.Start(t)
	tp, err := tpm.Open(testCtx(t), tpm.Config{Device: sim.Device()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := tp.Identity().Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, tpm.ErrClosed) {
		t.Fatalf("sign after close = %v, want ErrClosed", err)
	}
	if _, err := tp.Endorsement(testCtx(t)); !errors.Is(err, tpm.ErrClosed) {
		t.Fatalf("endorsement after close = %v, want ErrClosed", err)
	}
}

func TestCancelledContext(t *testing.T) {
	tp := open(t, tpmtest.Start(t), tpm.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tp.Quote(ctx, []byte("n"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("quote with a cancelled context = %v, want context.Canceled", err)
	}
	// The TPM is still usable afterwards.
	if _, err := tp.Quote(testCtx(t), []byte("n"), nil); err != nil {
		t.Fatalf("quote after a cancelled one: %v", err)
	}
}

func sum(h interface {
	Write([]byte) (int, error)
	Sum([]byte) []byte
}, msg []byte) []byte {
	h.Write(msg)
	return h.Sum(nil)
}

// TestTPMGoneAway: the simulator restarts under a running agent. Its
// connection is gone and transient handles with it; every later call
// fails plainly until the agent reopens the TPM, which then works.
func TestTPMGoneAway(t *testing.T) {
	sim := tpmtest.Start(t)
	tp, err := tpm.Open(testCtx(t), tpm.Config{Device: sim.Device()})
	if err != nil {
		t.Fatal(err)
	}
	sim.Restart(t)
	d := sha256.Sum256([]byte("x"))
	if _, err := tp.Identity().Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
		t.Fatal("signed over a connection to a TPM that restarted")
	}
	if _, err := tp.Identity().Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, tpm.ErrDevice) {
		t.Fatalf("second sign = %v, want ErrDevice", err)
	}
	if err := tp.Close(); err != nil {
		t.Fatalf("close a broken TPM: %v", err)
	}
	again := open(t, sim, tpm.Config{})
	if _, err := again.Identity().Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatalf("sign after reopening: %v", err)
	}
}

// A TPM is a key source for the agent as it stands: internal/keys can
// return one for --identity tpm without an adapter.
var _ keys.Source = (*tpm.TPM)(nil)
