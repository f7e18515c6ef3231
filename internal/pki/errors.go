package pki

import "errors"

// Sentinel errors of the CA core. Callers match them with errors.Is; the
// wrapped message says what was wrong but never carries key or CSR bytes.
var (
	// ErrBadCSR means the certificate request does not parse or its
	// signature does not verify.
	ErrBadCSR = errors.New("bad certificate request")
	// ErrPolicy means the request is well formed but not allowed: an
	// unacceptable key, node ID or hostname.
	ErrPolicy = errors.New("not allowed by policy")
	// ErrIncomplete means a PKI directory holds some of berth's files but not
	// all of them.
	ErrIncomplete = errors.New("incomplete PKI directory")
)
