package tpm

import "errors"

// Errors returned by this package, wrapped with detail.
var (
	// ErrDevice: the TPM could not be reached or the device string is bad.
	ErrDevice = errors.New("tpm device")
	// ErrInvalid: a caller passed an argument the TPM cannot act on (a
	// nonce too long, a PCR out of range, an unsupported hash).
	ErrInvalid = errors.New("invalid tpm request")
	// ErrKeyChanged: a primary key came back different from the one this
	// process first derived, so the TPM's owner hierarchy changed under it
	// (TPM2_Clear). The node's identity is gone; a new process will
	// derive, and must register, the new one.
	ErrKeyChanged = errors.New("tpm key changed while in use")
	// ErrNoEK: the TPM has no endorsement key this package can use.
	ErrNoEK = errors.New("no usable endorsement key")
	// ErrActivation: the TPM refused to activate a credential, because it
	// was not made for this TPM's EK and this key.
	ErrActivation = errors.New("credential activation refused")
	// ErrClosed: the TPM was used after Close.
	ErrClosed = errors.New("tpm closed")
)
