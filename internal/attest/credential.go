package attest

import (
	"crypto/subtle"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
)

// SecretSize is the size of a credential's secret: the EK's name
// algorithm (SHA-256) digest size, the most a credential may hold.
const SecretSize = 32

// MakeCredential makes a credential for key under ek, holding a fresh
// random secret (TPM2_MakeCredential, computed in software). Only a TPM
// that holds the EK's private half and has a key with exactly key's Name
// loaded can recover the secret with TPM2_ActivateCredential. Keep the
// secret on the server; compare the node's answer with CheckSecret.
func MakeCredential(rand io.Reader, ek *EK, key *Key) (Challenge, []byte, error) {
	if ek == nil || key == nil {
		return Challenge{}, nil, fmt.Errorf("make credential: missing EK or key")
	}
	secret := make([]byte, SecretSize)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return Challenge{}, nil, fmt.Errorf("make credential: %w", err)
	}
	enc, err := tpm2.ImportEncapsulationKey(ek.pub)
	if err != nil {
		return Challenge{}, nil, fmt.Errorf("make credential: %w", err)
	}
	blob, encSecret, err := tpm2.CreateCredential(rand, enc, key.name, secret)
	if err != nil {
		return Challenge{}, nil, fmt.Errorf("make credential: %w", err)
	}
	return Challenge{CredentialBlob: blob, EncryptedSecret: encSecret}, secret, nil
}

// CheckSecret compares, in constant time, the secret a node returned with
// the one its credential held.
func CheckSecret(want, got []byte) error {
	if len(want) != SecretSize {
		return fmt.Errorf("check credential: the expected secret is %d bytes, not %d", len(want), SecretSize)
	}
	if len(got) != len(want) {
		return fmt.Errorf("%w: the returned secret is %d bytes, want %d", ErrCredential, len(got), len(want))
	}
	if subtle.ConstantTimeCompare(want, got) != 1 {
		return fmt.Errorf("%w: the returned secret is wrong", ErrCredential)
	}
	return nil
}
