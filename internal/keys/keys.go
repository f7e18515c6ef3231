// Package keys provides a node's two key pairs: the identity key (ECDSA
// P-256, the key of its TLS client certificate) and the bundle key (HPKE,
// the key its configuration bundles are sealed to). Both come back the same
// on every boot of a stateless machine, from one of several sources.
//
// Sources:
//
//   - seed: derived with HKDF-SHA256 from a per-node seed file, or from a
//     site secret combined with the machine's hardware UUID;
//   - file: generated once and kept under a state directory (stateful nodes);
//   - tpm: deterministic primary keys in the TPM (package internal/tpm),
//     the same every boot with nothing stored.
package keys

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hpke"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/tpm"
)

// Source holds a node's identity and bundle keys.
type Source interface {
	// Identity returns the identity key, an ECDSA P-256 signer. For a
	// hardware-backed source the private half never leaves the device.
	Identity() crypto.Signer
	// BundleKey returns the HPKE private key that bundles are sealed to.
	BundleKey() hpke.PrivateKey
	// Close releases the source (a TPM handle, for example).
	Close() error
}

// Kind names a key source, as given to berth-agent --identity.
type Kind string

// Key sources.
const (
	KindSeed Kind = "seed"
	KindFile Kind = "file"
	KindTPM  Kind = "tpm"
)

// ParseKind parses a --identity value.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(strings.ToLower(strings.TrimSpace(s))); k {
	case KindSeed, KindFile, KindTPM:
		return k, nil
	}
	return "", fmt.Errorf("unknown identity source %q (want seed, tpm or file)", s)
}

// Bundle KEM names, as given to berth-agent --bundle-kem.
const (
	KEMMLKEM768X25519 = "mlkem768x25519"
	KEMDHKEMP256      = "dhkem-p256"
)

// DefaultKEM is the bundle key's KEM unless told otherwise: the
// post-quantum hybrid ML-KEM-768 + X25519.
func DefaultKEM() hpke.KEM { return hpke.MLKEM768X25519() }

// ParseKEM maps a --bundle-kem name to its KEM. The empty string is the
// default. "x-wing" and "p256" are accepted as aliases.
func ParseKEM(name string) (hpke.KEM, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", KEMMLKEM768X25519, "x-wing", "xwing":
		return hpke.MLKEM768X25519(), nil
	case KEMDHKEMP256, "p256", "p-256":
		return hpke.DHKEM(ecdh.P256()), nil
	}
	return nil, fmt.Errorf("unknown bundle KEM %q (want %s or %s)", name, KEMMLKEM768X25519, KEMDHKEMP256)
}

// Config says where the keys come from. It is built from berth-agent's flags.
type Config struct {
	// Kind is the key source.
	Kind Kind
	// SeedFile is a per-node seed of at least MinSeedSize bytes (seed source).
	SeedFile string
	// SiteSecretFile is a site-wide secret of at least MinSeedSize bytes,
	// combined with HardwareUUID (seed source, instead of SeedFile).
	SiteSecretFile string
	// HardwareUUID is the machine's SMBIOS UUID. When empty it is read
	// from HardwareUUIDFile.
	HardwareUUID string
	// HardwareUUIDFile defaults to DefaultHardwareUUIDFile.
	HardwareUUIDFile string
	// KeyDir holds the keys of the file source; defaults to DefaultKeyDir.
	KeyDir string
	// KEM is the bundle key's KEM; nil means DefaultKEM.
	KEM hpke.KEM
	// TPMDevice is the TPM of the tpm source: a device path or
	// mssim://HOST:PORT; empty means tpm.DefaultDevice.
	TPMDevice string
}

// Defaults for Config.
const (
	DefaultKeyDir           = "/var/lib/berth"
	DefaultHardwareUUIDFile = "/sys/class/dmi/id/product_uuid"
)

// DefaultTPMOpenTimeout bounds opening a TPM and deriving its keys.
const DefaultTPMOpenTimeout = 2 * time.Minute

// Open returns the key source cfg describes. A tpm source is opened on
// cfg.TPMDevice (tpm.DefaultDevice when empty); its keys never leave the
// TPM and its bundle key is DHKEM(P-256), whatever cfg.KEM says.
func Open(ctx context.Context, cfg Config) (Source, error) {
	kem := cfg.KEM
	if kem == nil {
		kem = DefaultKEM()
	}
	switch cfg.Kind {
	case KindSeed, "":
		seed, err := loadSeed(cfg)
		if err != nil {
			return nil, err
		}
		return NewSeed(seed, kem)
	case KindFile:
		dir := cfg.KeyDir
		if dir == "" {
			dir = DefaultKeyDir
		}
		return NewFile(dir, kem)
	case KindTPM:
		ctx, cancel := context.WithTimeout(ctx, DefaultTPMOpenTimeout)
		defer cancel()
		return tpm.Open(ctx, tpm.Config{Device: cfg.TPMDevice})
	}
	return nil, fmt.Errorf("unknown identity source %q", cfg.Kind)
}

// BundlePublic returns the public half of a bundle key as RegisterRequest
// wants it: the HPKE KEM ID and the serialised public key.
func BundlePublic(k hpke.PrivateKey) (kemID uint16, pub []byte) {
	return k.KEM().ID(), k.PublicKey().Bytes()
}

// ErrNotExportable is returned by IdentityPEM for a key that cannot leave
// its device.
var ErrNotExportable = errors.New("identity key is not exportable")

// IdentityPEM encodes a software identity key as a PEM "PRIVATE KEY"
// (PKCS#8). It returns ErrNotExportable for hardware-backed signers.
func IdentityPEM(s crypto.Signer) ([]byte, error) {
	k, ok := s.(*ecdsa.PrivateKey)
	if !ok {
		return nil, ErrNotExportable
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal identity key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// keyPair is the Source of software keys held in memory.
type keyPair struct {
	id     *ecdsa.PrivateKey
	bundle hpke.PrivateKey
}

func (k *keyPair) Identity() crypto.Signer    { return k.id }
func (k *keyPair) BundleKey() hpke.PrivateKey { return k.bundle }
func (k *keyPair) Close() error               { return nil }
