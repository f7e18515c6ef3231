package tpm

import (
	"context"
	"crypto"
	"crypto/hpke"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Config says which TPM to open and how.
type Config struct {
	// Device is a device path or mssim://HOST:PORT; empty means
	// DefaultDevice.
	Device string
	// EK selects the endorsement key type; empty means EKAuto.
	EK EKType
	// OpTimeout bounds the operations that take no context: TLS signatures
	// and bundle ECDH. Zero means DefaultOpTimeout.
	OpTimeout time.Duration
	// Logger receives the few decisions worth knowing (which EK is used,
	// leftovers flushed). Nil discards them.
	Logger *slog.Logger
}

// DefaultOpTimeout bounds a signature or ECDH when the caller gives no
// context: long enough for a slow TPM chip, short enough that a dead
// simulator cannot hang a TLS handshake forever.
const DefaultOpTimeout = 30 * time.Second

// Key names one of the node's TPM keys.
type Key int

// The node's keys.
const (
	KeyIdentity Key = iota + 1 // the TLS identity key
	KeyBundle                  // the HPKE bundle key
	KeyAK                      // the attestation key, for quotes
)

func (k Key) String() string {
	switch k {
	case KeyIdentity:
		return "identity key"
	case KeyBundle:
		return "bundle key"
	case KeyAK:
		return "attestation key"
	}
	return fmt.Sprintf("key(%d)", int(k))
}

// TPM is an open TPM holding the node's keys. Its methods are safe for
// concurrent use; the TPM runs one command at a time, so they serialise.
type TPM struct {
	dev       Device
	opTimeout time.Duration
	log       *slog.Logger

	signer signer
	bundle hpke.PrivateKey

	mu     sync.Mutex // guards everything below and the TPM itself
	conn   conn       // nil after Close
	objs   objects
	keys   map[Key]*object
	ekType EKType
	ek     *object // resolved on first use
	ekKind ekKind
}

// Open connects to the TPM, derives the node's three primary keys and
// returns them ready for use. The keys are the same on every call for the
// same TPM, across reboots, with nothing stored anywhere.
func Open(ctx context.Context, cfg Config) (*TPM, error) {
	dev, err := ParseDevice(cfg.Device)
	if err != nil {
		return nil, err
	}
	ekType, err := ParseEKType(string(cfg.EK))
	if err != nil {
		return nil, err
	}
	t := &TPM{
		dev:       dev,
		opTimeout: cfg.OpTimeout,
		log:       cfg.Logger,
		ekType:    ekType,
		objs:      objects{max: maxLoaded},
	}
	if t.opTimeout <= 0 {
		t.opTimeout = DefaultOpTimeout
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.conn, err = dev.dial(ctx)
	if err != nil {
		return nil, err
	}
	t.keys = map[Key]*object{
		KeyIdentity: {what: KeyIdentity.String(), hierarchy: tpm2.TPMRHOwner, template: identityTemplate()},
		KeyBundle:   {what: KeyBundle.String(), hierarchy: tpm2.TPMRHOwner, template: bundleTemplate()},
		KeyAK:       {what: KeyAK.String(), hierarchy: tpm2.TPMRHOwner, template: akTemplate()},
	}
	if err := t.do(ctx, func(tp transport.TPM) error {
		if err := startup(tp); err != nil {
			return err
		}
		if !dev.resourceManaged() {
			if err := t.flushLeftovers(tp); err != nil {
				return err
			}
		}
		for _, k := range []Key{KeyIdentity, KeyBundle, KeyAK} {
			if err := t.objs.ensure(tp, t.keys[k]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		_ = t.conn.Close()
		return nil, fmt.Errorf("open tpm %s: %w", dev, err)
	}
	if t.signer, err = newSigner(t); err != nil {
		_ = t.conn.Close()
		return nil, err
	}
	if t.bundle, err = newBundleKey(t); err != nil {
		_ = t.conn.Close()
		return nil, err
	}
	return t, nil
}

// Device returns the TPM's location.
func (t *TPM) Device() Device { return t.dev }

// Identity returns the node identity key as a crypto.Signer backed by
// TPM2_Sign. It signs ECDSA P-256 with SHA-256, SHA-384 or SHA-512
// digests and returns ASN.1 signatures, as crypto/tls expects.
func (t *TPM) Identity() crypto.Signer { return t.signer }

// BundleKey returns the bundle key as a DHKEM(P-256, HKDF-SHA256) HPKE
// private key whose ECDH runs in the TPM (TPM2_ECDH_ZGen).
func (t *TPM) BundleKey() hpke.PrivateKey { return t.bundle }

// PublicArea returns a key's TPM public area (a marshalled TPMT_PUBLIC).
// The server parses it, checks its attributes, and names the key by its
// hash in the credential it makes (see internal/attest).
func (t *TPM) PublicArea(k Key) []byte {
	o := t.keys[k]
	if o == nil {
		return nil
	}
	return append([]byte(nil), o.pubBytes...)
}

// Close flushes the keys this process loaded and closes the connection.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.conn.setContext(ctx)
	var flushErr error
	if t.conn.broke() == nil { // a broken connection has nothing left to flush
		flushErr = t.objs.flushAll(t.conn)
	}
	err := errors.Join(flushErr, t.conn.Close())
	t.conn = nil
	return err
}

// do runs fn with the TPM to itself, its commands bound to ctx.
func (t *TPM) do(ctx context.Context, fn func(tp transport.TPM) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return ErrClosed
	}
	t.conn.setContext(ctx)
	defer t.conn.setContext(context.Background())
	return fn(t.conn)
}

// doTimeout is do for the operations whose interface takes no context.
func (t *TPM) doTimeout(fn func(tp transport.TPM) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.opTimeout)
	defer cancel()
	return t.do(ctx, fn)
}

// startup sends TPM2_Startup(CLEAR) if the TPM has not had one yet. A
// platform's firmware normally does this; a bare simulator needs it.
func startup(tp transport.TPM) error {
	_, err := tpm2.GetRandom{BytesRequested: 8}.Execute(tp)
	if !errors.Is(err, tpm2.TPMRCInitialize) {
		return err
	}
	if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(tp); err != nil {
		return fmt.Errorf("startup: %w", err)
	}
	return nil
}

// flushLeftovers flushes the transient objects and sessions a previous
// client left behind; without a resource manager they would use up the
// TPM's slots until its next reset. Only done when this process is the
// TPM's sole client (see Device.resourceManaged).
func (t *TPM) flushLeftovers(tp transport.TPM) error {
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		first := tpm2.TPMHandle(ht) << 24
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(first), PropertyCount: 64}.Execute(tp)
		if err != nil {
			return fmt.Errorf("list handles: %w", err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return fmt.Errorf("list handles: %w", err)
		}
		for _, h := range hs.Handle {
			if h>>24 != first>>24 {
				continue
			}
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(tp); err != nil {
				return fmt.Errorf("flush leftover handle 0x%08x: %w", uint32(h), err)
			}
			t.log.Info("flushed a handle left loaded in the TPM", "handle", fmt.Sprintf("0x%08x", uint32(h)))
		}
	}
	return nil
}
