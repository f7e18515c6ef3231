// Package attest is the server side of TPM-backed node identity: it checks
// what a node's TPM produced, without a TPM and without any transport.
// internal/tpm produces the evidence; this package defines its formats
// (Challenge, Quote) and verifies it.
//
// At registration a node sends its EK public area (ParseEK, whose Hash is
// the node's ek_hash) and, when its TPM has one, the EK certificate
// (ParseEKCert, EK.CheckCert, EKRoots.Verify against the manufacturer
// CAs). It sends the TPM public areas of its identity key
// (ParseIdentityKey: its point must be the TLS key, and it must be fixed
// to its TPM) and of its attestation key (ParseAK: restricted, so its
// quotes cannot be forged). The server makes a credential for each under
// the EK (MakeCredential) and keeps the secrets; the node activates them
// (internal/tpm's ActivateCredential) and returns the secrets
// (CheckSecret). A TPM releases a credential's secret only if it holds the
// EK's private half and a key whose Name, the hash of its public area, is
// the one the credential names. So a returned secret proves the identity
// key, with exactly the attributes checked here, lives in the TPM the EK
// identifies; and the EK's own restricted-decryption attributes (checked
// by ParseEK) mean no one could have decrypted the credential outside
// the TPM.
//
// At a later boot the node quotes its boot PCRs with the server's nonce
// (VerifyQuote), giving the boot's PCR digest.
package attest
