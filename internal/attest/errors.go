package attest

import "errors"

// Errors returned by this package, each wrapped with what exactly was
// wrong. A transport maps them to its status codes in one place; all of
// them are the client's fault (InvalidArgument or PermissionDenied), never
// the server's.
var (
	// ErrMalformed: bytes that do not parse as the TPM structure or
	// certificate they claim to be.
	ErrMalformed = errors.New("malformed tpm evidence")
	// ErrKeyAttributes: a well-formed key that is the wrong type, curve or
	// size, or lacks the attributes that bind it to its TPM.
	ErrKeyAttributes = errors.New("tpm key not acceptable")
	// ErrKeyMismatch: a TPM key that is not the key it is presented as
	// (the TLS key, the bundle key, the EK certificate's key).
	ErrKeyMismatch = errors.New("tpm key mismatch")
	// ErrCredential: the secret returned from credential activation is not
	// the one the credential held.
	ErrCredential = errors.New("credential activation failed")
	// ErrUntrustedEK: an EK certificate that does not chain to the
	// manufacturer CAs.
	ErrUntrustedEK = errors.New("ek certificate not trusted")
	// ErrQuote: a quote whose signature, nonce, PCR selection or PCR
	// digest does not check out.
	ErrQuote = errors.New("tpm quote rejected")
)
