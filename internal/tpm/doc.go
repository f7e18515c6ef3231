// Package tpm holds a node's identity in its TPM: the agent side of
// `berth-agent --identity tpm`. It is pure Go (github.com/google/go-tpm's
// tpm2 API) and builds with CGO_ENABLED=0.
//
// # Devices
//
// Open talks to a TPM character device (DefaultDevice, /dev/tpmrm0, the
// kernel's resource manager) or to a software TPM at mssim://HOST:PORT over
// the Microsoft simulator protocol on the command port PORT (swtpm's
// --server port). The simulator's platform port, PORT+1, is not used: a
// TPM must be powered on by whoever runs it (swtpm --flags
// not-need-init), and swtpm's control port speaks swtpm's own protocol,
// not the simulator's platform commands. A TPM that has had no
// TPM2_Startup gets one.
//
// # Keys and why they are primary keys
//
// The node's keys are primary keys in the owner hierarchy, created with
// TPM2_CreatePrimary from fixed templates (templates.go). A primary key is
// a function of the hierarchy's seed, which never leaves the TPM and
// survives reboots, and of the template, so the same template gives the
// same key on every boot, with no key blob stored on disk or in NV. The
// private halves never leave the TPM. A TPM2_Clear replaces the owner seed
// and so gives the node a new identity, as it should.
//
//   - Identity key: ECDSA P-256, unrestricted signing (it signs TLS
//     handshakes, whose digests the TPM did not compute), exposed as a
//     crypto.Signer over TPM2_Sign.
//   - Bundle key: ECDH P-256, unrestricted decryption with the ECDH
//     scheme, exposed as an HPKE DHKEM(P-256) private key over
//     TPM2_ECDH_ZGen.
//   - Attestation key (AK): ECDSA P-256, restricted signing. It signs
//     quotes. It must be restricted: a restricted key signs only digests
//     the TPM computed and refuses data that starts like a TPM
//     attestation, whereas the unrestricted identity key would sign a
//     forged quote structure handed to TPM2_Sign.
//
// All three are fixedTPM, fixedParent (never duplicated), sensitiveDataOrigin
// (generated inside), userWithAuth with an empty auth value, and noDA. Each
// template's unique field holds the SHA-256 of a versioned berth label so
// that berth's keys are not any other program's key with the same shape.
//
// # Endorsement key and credential activation
//
// The EK is the TCG's RSA 2048 (or, failing that, ECC P-256) EK: the
// provisioned one at persistent handle 0x81010001 (0x81010002) when its
// public area is the default template's, else created from that template
// in the endorsement hierarchy. Its certificate, when the manufacturer
// stored one, is read from NV index 0x01c00002 (0x01c0000a). The EK's
// policy is PolicySecret(TPM_RH_ENDORSEMENT), satisfied by a policy session
// for each use. ActivateCredential proves to the server that a key lives in
// the same TPM as the EK.
//
// # Handles
//
// Without a resource manager (a simulator, /dev/tpm0) the TPM has only a
// few object slots and this process is its sole client, so Open flushes
// transient objects and sessions an earlier process left behind, and
// keys are flushed and re-created on demand to keep at most three loaded.
// A re-created key must be identical to the first (ErrKeyChanged).
package tpm
