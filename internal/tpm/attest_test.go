package tpm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/attest"
	"github.com/berth-dev/berth/internal/tpm"
	"github.com/berth-dev/berth/internal/tpm/tpmtest"
)

// node is what the server learns from a TPM node at registration.
type node struct {
	tp       *tpm.TPM
	ek       *attest.EK
	identity *attest.Key
	ak       *attest.Key
	bundle   *attest.Key
	ekCert   []byte
}

func register(t *testing.T, tp *tpm.TPM) node {
	t.Helper()
	e, err := tp.Endorsement(testCtx(t))
	if err != nil {
		t.Fatalf("endorsement: %v", err)
	}
	n := node{tp: tp, ekCert: e.Cert}
	if n.ek, err = attest.ParseEK(e.Public); err != nil {
		t.Fatalf("parse EK: %v", err)
	}
	if n.identity, err = attest.ParseIdentityKey(tp.PublicArea(tpm.KeyIdentity), tp.Identity().Public()); err != nil {
		t.Fatalf("parse identity key: %v", err)
	}
	if n.ak, err = attest.ParseAK(tp.PublicArea(tpm.KeyAK)); err != nil {
		t.Fatalf("parse AK: %v", err)
	}
	if n.bundle, err = attest.ParseBundleKey(tp.PublicArea(tpm.KeyBundle), tp.BundleKey().PublicKey()); err != nil {
		t.Fatalf("parse bundle key: %v", err)
	}
	return n
}

func TestActivateCredential(t *testing.T) {
	acme := tpmtest.NewManufacturer(t, "Acme")
	a := register(t, open(t, tpmtest.StartProvisioned(t, acme), tpm.Config{}))
	b := register(t, open(t, tpmtest.Start(t), tpm.Config{}))

	for _, c := range []struct {
		key   tpm.Key
		named func(node) *attest.Key
	}{
		{tpm.KeyIdentity, func(n node) *attest.Key { return n.identity }},
		{tpm.KeyAK, func(n node) *attest.Key { return n.ak }},
		{tpm.KeyBundle, func(n node) *attest.Key { return n.bundle }},
	} {
		t.Run(c.key.String(), func(t *testing.T) {
			for _, n := range []node{a, b} {
				ch, secret, err := attest.MakeCredential(rand.Reader, n.ek, c.named(n))
				if err != nil {
					t.Fatalf("make credential: %v", err)
				}
				got, err := n.tp.ActivateCredential(testCtx(t), c.key, ch)
				if err != nil {
					t.Fatalf("activate in the EK's own TPM: %v", err)
				}
				if err := attest.CheckSecret(secret, got); err != nil {
					t.Fatalf("check secret: %v", err)
				}
			}
		})
	}

	t.Run("credential for another TPM's EK", func(t *testing.T) {
		// The server made the credential for A's EK and A's key; B tries.
		ch, _, err := attest.MakeCredential(rand.Reader, a.ek, a.identity)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.tp.ActivateCredential(testCtx(t), tpm.KeyIdentity, ch); !errors.Is(err, tpm.ErrActivation) {
			t.Fatalf("activate in TPM B = %v, want ErrActivation", err)
		}
	})
	t.Run("identity key from another TPM", func(t *testing.T) {
		// A node claims A's EK but presents B's identity key: the
		// credential names B's key, which A does not hold.
		ch, _, err := attest.MakeCredential(rand.Reader, a.ek, b.identity)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.tp.ActivateCredential(testCtx(t), tpm.KeyIdentity, ch); !errors.Is(err, tpm.ErrActivation) {
			t.Fatalf("activate in TPM A = %v, want ErrActivation", err)
		}
		if _, err := b.tp.ActivateCredential(testCtx(t), tpm.KeyIdentity, ch); !errors.Is(err, tpm.ErrActivation) {
			t.Fatalf("activate in TPM B = %v, want ErrActivation", err)
		}
	})
	t.Run("credential for another key of the same TPM", func(t *testing.T) {
		ch, _, err := attest.MakeCredential(rand.Reader, a.ek, a.ak)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.tp.ActivateCredential(testCtx(t), tpm.KeyIdentity, ch); !errors.Is(err, tpm.ErrActivation) {
			t.Fatalf("activate the AK's credential with the identity key = %v, want ErrActivation", err)
		}
	})
	t.Run("tampered credential", func(t *testing.T) {
		ch, _, err := attest.MakeCredential(rand.Reader, a.ek, a.identity)
		if err != nil {
			t.Fatal(err)
		}
		ch.CredentialBlob = bytes.Clone(ch.CredentialBlob)
		ch.CredentialBlob[len(ch.CredentialBlob)-1] ^= 1
		if _, err := a.tp.ActivateCredential(testCtx(t), tpm.KeyIdentity, ch); !errors.Is(err, tpm.ErrActivation) {
			t.Fatalf("activate a tampered credential = %v, want ErrActivation", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		for _, ch := range []attest.Challenge{{}, {CredentialBlob: []byte{1, 2, 3}, EncryptedSecret: []byte{4}}} {
			if _, err := a.tp.ActivateCredential(testCtx(t), tpm.KeyIdentity, ch); !errors.Is(err, tpm.ErrActivation) {
				t.Fatalf("activate %+v = %v, want ErrActivation", ch, err)
			}
		}
		if _, err := a.tp.ActivateCredential(testCtx(t), tpm.Key(42), attest.Challenge{}); !errors.Is(err, tpm.ErrInvalid) {
			t.Fatalf("activate with an unknown key = %v, want ErrInvalid", err)
		}
	})
	t.Run("survives a reboot", func(t *testing.T) {
		// The server stores the EK and key from registration; after a
		// reboot the TPM still answers for them.
		sim := tpmtest.Start(t)
		before := register(t, open(t, sim, tpm.Config{}))
		ch, secret, err := attest.MakeCredential(rand.Reader, before.ek, before.identity)
		if err != nil {
			t.Fatal(err)
		}
		if err := before.tp.Close(); err != nil {
			t.Fatal(err)
		}
		sim.Restart(t)
		got, err := open(t, sim, tpm.Config{}).ActivateCredential(testCtx(t), tpm.KeyIdentity, ch)
		if err != nil {
			t.Fatalf("activate after reboot: %v", err)
		}
		if err := attest.CheckSecret(secret, got); err != nil {
			t.Fatal(err)
		}
	})
}

func TestECCEndorsementKey(t *testing.T) {
	tp := open(t, tpmtest.Start(t), tpm.Config{EK: tpm.EKECC})
	n := register(t, tp)
	rsaEK := register(t, open(t, tpmtest.Start(t), tpm.Config{EK: tpm.EKRSA}))
	if _, ok := n.ek.Public().(*ecdsa.PublicKey); !ok {
		t.Fatalf("EK is %T, want an ECC key", n.ek.Public())
	}
	if _, ok := rsaEK.ek.Public().(*rsa.PublicKey); !ok {
		t.Fatalf("EK is %T, want an RSA key", rsaEK.ek.Public())
	}
	if n.ek.Hash() == rsaEK.ek.Hash() {
		t.Fatal("ECC and RSA EKs of different TPMs share a hash")
	}
	ch, secret, err := attest.MakeCredential(rand.Reader, n.ek, n.identity)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tp.ActivateCredential(testCtx(t), tpm.KeyIdentity, ch)
	if err != nil {
		t.Fatalf("activate under an ECC EK: %v", err)
	}
	if err := attest.CheckSecret(secret, got); err != nil {
		t.Fatal(err)
	}
}

func TestEKCertificate(t *testing.T) {
	acme := tpmtest.NewManufacturer(t, "Acme")
	other := tpmtest.NewManufacturer(t, "Other")
	acmeRoots, err := attest.ParseEKRoots(acme.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	otherRoots, err := attest.ParseEKRoots(other.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	n := register(t, open(t, tpmtest.StartProvisioned(t, acme), tpm.Config{}))
	if len(n.ekCert) == 0 {
		t.Fatal("a provisioned swtpm has no EK certificate")
	}
	cert, err := attest.ParseEKCert(n.ekCert)
	if err != nil {
		t.Fatalf("parse EK certificate: %v", err)
	}
	if err := n.ek.CheckCert(cert); err != nil {
		t.Fatalf("EK certificate is not for the EK: %v", err)
	}
	if err := acmeRoots.Verify(cert, time.Now()); err != nil {
		t.Fatalf("EK certificate does not chain to its manufacturer: %v", err)
	}
	if err := otherRoots.Verify(cert, time.Now()); !errors.Is(err, attest.ErrUntrustedEK) {
		t.Fatalf("verify against another manufacturer = %v, want ErrUntrustedEK", err)
	}
	// Go alone refuses an EK certificate: its critical SAN names the TPM,
	// not a host. The package's leniency is needed, and limited to that.
	if len(cert.UnhandledCriticalExtensions) == 0 {
		t.Error("swtpm's EK certificate has no unhandled critical extension; the SAN leniency is untested")
	}
	info, err := attest.ReadTPMInfo(cert)
	if err != nil {
		t.Fatal(err)
	}
	if info.Model != "swtpm" || info.Manufacturer == "" || info.Version == "" {
		t.Errorf("TPM info = %+v, want swtpm's manufacturer, model and version", info)
	}
	// The EK hash is the SPKI hash of the certificate's key too, so an
	// operator can enrol a machine from its EK certificate alone.
	if h, err := attest.EKHash(cert.PublicKey); err != nil || h != n.ek.Hash() {
		t.Errorf("EK hash from the certificate = %s (%v), want %s", h, err, n.ek.Hash())
	}
	// Another TPM's EK does not match this certificate.
	b := register(t, open(t, tpmtest.StartProvisioned(t, acme), tpm.Config{}))
	if err := b.ek.CheckCert(cert); !errors.Is(err, attest.ErrKeyMismatch) {
		t.Fatalf("another EK against this certificate = %v, want ErrKeyMismatch", err)
	}

	t.Run("unprovisioned TPM has none", func(t *testing.T) {
		e, err := open(t, tpmtest.Start(t), tpm.Config{}).Endorsement(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if e.Cert != nil {
			t.Fatalf("an unprovisioned swtpm returned a %d-byte EK certificate", len(e.Cert))
		}
	})
}

func TestQuote(t *testing.T) {
	sim := tpmtest.Start(t)
	tp := open(t, sim, tpm.Config{})
	n := register(t, tp)
	other := register(t, open(t, tpmtest.Start(t), tpm.Config{}))

	quote := func(tp *tpm.TPM) ([]byte, attest.Quote) {
		t.Helper()
		nonce := make([]byte, attest.NonceSize)
		rand.Read(nonce)
		q, err := tp.Quote(testCtx(t), nonce, nil)
		if err != nil {
			t.Fatalf("quote: %v", err)
		}
		return nonce, q
	}
	nonce, q := quote(tp)
	first, err := attest.VerifyQuote(n.ak, nonce, nil, q)
	if err != nil {
		t.Fatalf("verify quote: %v", err)
	}
	if len(first.PCRs) != 8 {
		t.Fatalf("quoted %d PCRs, want 0-7", len(first.PCRs))
	}
	nonce, q = quote(tp)
	if again, err := attest.VerifyQuote(n.ak, nonce, nil, q); err != nil || again.PCRDigest != first.PCRDigest {
		t.Fatalf("second quote of the same boot: %s, %v; want %s", again.PCRDigest, err, first.PCRDigest)
	}

	t.Run("refused", func(t *testing.T) {
		nonce, q := quote(tp)
		flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
		otherPCRs := func(p int, v []byte) map[int][]byte {
			m := map[int][]byte{}
			for k, x := range q.PCRs {
				m[k] = x
			}
			m[p] = v
			return m
		}
		_, otherQuote := quote(other.tp)
		for _, c := range []struct {
			name  string
			ak    *attest.Key
			nonce []byte
			pcrs  []int
			q     attest.Quote
			want  error
		}{
			{"wrong nonce", n.ak, []byte("another nonce"), nil, q, attest.ErrQuote},
			{"tampered attestation", n.ak, nonce, nil, attest.Quote{Attest: flip(q.Attest, len(q.Attest)-1), Signature: q.Signature, PCRs: q.PCRs}, attest.ErrQuote},
			{"tampered signature", n.ak, nonce, nil, attest.Quote{Attest: q.Attest, Signature: flip(q.Signature, len(q.Signature)-1), PCRs: q.PCRs}, attest.ErrQuote},
			{"a PCR value changed", n.ak, nonce, nil, attest.Quote{Attest: q.Attest, Signature: q.Signature, PCRs: otherPCRs(7, bytes.Repeat([]byte{0xff}, 32))}, attest.ErrQuote},
			{"another TPM's AK", other.ak, nonce, nil, q, attest.ErrQuote},
			{"another TPM's quote", n.ak, nonce, nil, otherQuote, attest.ErrQuote},
			{"other PCRs than asked", n.ak, nonce, []int{0, 1, 2}, q, attest.ErrQuote},
			{"signed by the identity key", n.identity, nonce, nil, q, attest.ErrQuote},
			{"no signature", n.ak, nonce, nil, attest.Quote{Attest: q.Attest, PCRs: q.PCRs}, attest.ErrMalformed},
			{"a PCR value missing", n.ak, nonce, nil, attest.Quote{Attest: q.Attest, Signature: q.Signature, PCRs: map[int][]byte{0: q.PCRs[0]}}, attest.ErrMalformed},
		} {
			t.Run(c.name, func(t *testing.T) {
				if _, err := attest.VerifyQuote(c.ak, c.nonce, c.pcrs, c.q); !errors.Is(err, c.want) {
					t.Fatalf("verify = %v, want %v", err, c.want)
				}
			})
		}
	})

	t.Run("extended PCR changes the digest", func(t *testing.T) {
		if err := tp.ExtendPCR(testCtx(t), 7, sha256.Sum256([]byte("another boot loader"))); err != nil {
			t.Fatalf("extend: %v", err)
		}
		nonce, q := quote(tp)
		changed, err := attest.VerifyQuote(n.ak, nonce, nil, q)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if changed.PCRDigest == first.PCRDigest {
			t.Fatal("the PCR digest did not change after extending PCR 7")
		}
		if bytes.Equal(changed.PCRs[7], first.PCRs[7]) || !bytes.Equal(changed.PCRs[0], first.PCRs[0]) {
			t.Fatal("PCR 7 should have changed and PCR 0 not")
		}
		// Presenting the old boot's PCR values with the new quote fails.
		if _, err := attest.VerifyQuote(n.ak, nonce, nil, attest.Quote{Attest: q.Attest, Signature: q.Signature, PCRs: first.PCRs}); !errors.Is(err, attest.ErrQuote) {
			t.Fatalf("new quote with the old PCR values = %v, want ErrQuote", err)
		}
	})

	t.Run("a reboot resets the PCRs", func(t *testing.T) {
		if err := tp.Close(); err != nil {
			t.Fatal(err)
		}
		sim.Restart(t)
		nonce, q := quote(open(t, sim, tpm.Config{}))
		got, err := attest.VerifyQuote(n.ak, nonce, nil, q)
		if err != nil {
			t.Fatalf("verify after reboot with the registered AK: %v", err)
		}
		if got.PCRDigest != first.PCRDigest {
			t.Fatalf("digest after reboot = %s, want the first boot's %s", got.PCRDigest, first.PCRDigest)
		}
	})
}

func TestQuoteRefusesBadRequests(t *testing.T) {
	tp := open(t, tpmtest.Start(t), tpm.Config{})
	for _, c := range []struct {
		name  string
		nonce []byte
		pcrs  []int
	}{
		{"no nonce", nil, nil},
		{"nonce too long", make([]byte, tpm.MaxNonce+1), nil},
		{"PCR out of range", []byte("n"), []int{24}},
		{"negative PCR", []byte("n"), []int{-1}},
		{"PCR twice", []byte("n"), []int{1, 1}},
		{"empty selection", []byte("n"), []int{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := tp.Quote(testCtx(t), c.nonce, c.pcrs); !errors.Is(err, tpm.ErrInvalid) {
				t.Fatalf("quote = %v, want ErrInvalid", err)
			}
		})
	}
	if err := tp.ExtendPCR(testCtx(t), 24, [32]byte{}); !errors.Is(err, tpm.ErrInvalid) {
		t.Fatalf("extend PCR 24 = %v, want ErrInvalid", err)
	}
}

func TestReadAllPCRs(t *testing.T) {
	tp := open(t, tpmtest.Start(t), tpm.Config{})
	all := make([]int, 24)
	for i := range all {
		all[i] = i
	}
	// More than the eight values one TPM2_PCR_Read returns.
	got, err := tp.ReadPCRs(testCtx(t), all)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 24 {
		t.Fatalf("read %d PCRs, want 24", len(got))
	}
	nonce := []byte("all")
	q, err := tp.Quote(testCtx(t), nonce, all)
	if err != nil {
		t.Fatal(err)
	}
	n := register(t, tp)
	if _, err := attest.VerifyQuote(n.ak, nonce, all, q); err != nil {
		t.Fatalf("verify a quote of all 24 PCRs: %v", err)
	}
}
