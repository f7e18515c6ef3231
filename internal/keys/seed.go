package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MinSeedSize is the least number of bytes a seed file or site secret must
// hold: 256 bits, the strength of the keys derived from it.
const MinSeedSize = 32

// The HKDF labels below are part of berth's on-the-wire contract: changing
// any of them changes the keys of every seed-based node in every fleet, so
// they carry a version and are never edited, only superseded.
const (
	// seedSalt is the HKDF-Extract salt over a node seed.
	seedSalt = "berth seed v1"
	// infoIdentity derives identity key candidates; a counter byte follows.
	infoIdentity = "berth/v1 identity-key ecdsa-p256 "
	// infoBundle derives the bundle key's input keying material; the HPKE
	// KEM ID follows, so each KEM gets an independent key.
	infoBundle = "berth/v1 bundle-key hpke kem="
	// siteSalt and infoSite turn a site secret and a hardware UUID into a
	// node seed.
	siteSalt = "berth/v1 site secret"
	infoSite = "berth/v1 node seed hardware-uuid="
)

// NewSeed derives both key pairs from seed, the same every time for the
// same seed and KEM. seed must hold at least MinSeedSize bytes.
func NewSeed(seed []byte, kem hpke.KEM) (Source, error) {
	if len(seed) < MinSeedSize {
		return nil, fmt.Errorf("seed holds %d bytes; need at least %d", len(seed), MinSeedSize)
	}
	if kem == nil {
		kem = DefaultKEM()
	}
	prk, err := hkdf.Extract(sha256.New, seed, []byte(seedSalt))
	if err != nil {
		return nil, fmt.Errorf("derive keys: %w", err)
	}
	id, err := deriveIdentity(prk)
	if err != nil {
		return nil, err
	}
	ikm, err := hkdf.Expand(sha256.New, prk, fmt.Sprintf("%s0x%04x", infoBundle, kem.ID()), 32)
	if err != nil {
		return nil, fmt.Errorf("derive bundle key: %w", err)
	}
	bundle, err := kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, fmt.Errorf("derive bundle key: %w", err)
	}
	return &keyPair{id: id, bundle: bundle}, nil
}

// deriveIdentity turns 32-byte HKDF outputs into a P-256 scalar, trying the
// next counter in the (about 2^-32 likely) case that one is zero or not
// below the group order.
func deriveIdentity(prk []byte) (*ecdsa.PrivateKey, error) {
	for counter := range 256 {
		d, err := hkdf.Expand(sha256.New, prk, infoIdentity+string([]byte{byte(counter)}), 32)
		if err != nil {
			return nil, fmt.Errorf("derive identity key: %w", err)
		}
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("derive identity key: no valid scalar in 256 candidates")
}

// SiteSeed combines a site secret baked into a boot image with a machine's
// hardware UUID into that machine's seed. The secret must hold at least
// MinSeedSize bytes. UUIDs that firmware vendors leave unset (all zeros, all
// ones) are refused, since every such machine would get the same keys.
func SiteSeed(secret []byte, hardwareUUID string) ([]byte, error) {
	if len(secret) < MinSeedSize {
		return nil, fmt.Errorf("site secret holds %d bytes; need at least %d", len(secret), MinSeedSize)
	}
	uuid, err := NormalizeHardwareUUID(hardwareUUID)
	if err != nil {
		return nil, err
	}
	return hkdf.Key(sha256.New, secret, []byte(siteSalt), infoSite+uuid, 32)
}

// NormalizeHardwareUUID trims and lower-cases a hardware UUID and refuses
// empty and placeholder values.
func NormalizeHardwareUUID(s string) (string, error) {
	u := strings.ToLower(strings.TrimSpace(s))
	if u == "" {
		return "", errors.New("hardware UUID is empty")
	}
	digits := strings.ReplaceAll(u, "-", "")
	if strings.Trim(digits, "0") == "" || strings.Trim(digits, "f") == "" {
		return "", fmt.Errorf("hardware UUID %q is a firmware placeholder, not unique to this machine; pass --hardware-uuid or use --seed-file", u)
	}
	return u, nil
}

// ReadHardwareUUID reads and normalises the SMBIOS UUID from path
// (DefaultHardwareUUIDFile when empty). On Linux the file is readable by
// root only.
func ReadHardwareUUID(path string) (string, error) {
	if path == "" {
		path = DefaultHardwareUUIDFile
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read hardware UUID: %w (pass --hardware-uuid)", err)
	}
	return NormalizeHardwareUUID(string(b))
}

// loadSeed reads the seed that cfg names.
func loadSeed(cfg Config) ([]byte, error) {
	switch {
	case cfg.SeedFile != "" && cfg.SiteSecretFile != "":
		return nil, errors.New("identity source seed takes --seed-file or --site-secret-file, not both")
	case cfg.SeedFile != "":
		seed, err := os.ReadFile(cfg.SeedFile)
		if err != nil {
			return nil, fmt.Errorf("read seed file: %w", err)
		}
		if len(seed) < MinSeedSize {
			return nil, fmt.Errorf("seed file %s holds %d bytes; need at least %d", cfg.SeedFile, len(seed), MinSeedSize)
		}
		return seed, nil
	case cfg.SiteSecretFile != "":
		secret, err := os.ReadFile(cfg.SiteSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read site secret: %w", err)
		}
		if len(secret) < MinSeedSize {
			return nil, fmt.Errorf("site secret file %s holds %d bytes; need at least %d", cfg.SiteSecretFile, len(secret), MinSeedSize)
		}
		uuid := cfg.HardwareUUID
		if uuid == "" {
			if uuid, err = ReadHardwareUUID(cfg.HardwareUUIDFile); err != nil {
				return nil, err
			}
		}
		return SiteSeed(secret, uuid)
	}
	return nil, errors.New("identity source seed needs --seed-file (BERTH_SEED_FILE) or --site-secret-file (BERTH_SITE_SECRET_FILE)")
}
