// Package bundle is berth's configuration bundle format: a node's files and
// post-apply hooks, sealed with HPKE (RFC 9180, crypto/hpke) to the node's
// bundle public key, so that the servers only ever hold ciphertext, and
// signed by who wrote it, so that the node applies nothing a server or a
// database could have made. It is free of any transport: the agent and
// berthctl seal, sign and open bundles, and the bundles service parses and
// checks no more than the clear-text header and the signature.
//
// docs/bundle-format.md is the specification, byte for byte, for
// implementers in other languages, with test vectors in testdata/bundle/.
// This comment is its summary.
//
// # Sealed bundle, format version 2
//
// A sealed bundle is the sealed part (a 19-byte header, then the output of
// single-shot HPKE in base mode: the encapsulated key and the AEAD
// ciphertext) followed by the signature block:
//
//	offset   size  field
//	0        8     magic "BERTHBDL"
//	8        1     format version: 2
//	9        2     KEM ID of the recipient's key, e.g. 0x647a (ML-KEM-768 +
//	               X25519, the default) or 0x0010 (DHKEM(P-256, HKDF-SHA256))
//	11       2     KDF ID: 0x0001, HKDF-SHA256
//	13       2     AEAD ID: 0x0002, AES-256-GCM
//	15       4     L, the length of enc and ciphertext together
//	19       Nenc  enc, the encapsulated key (Nenc depends on the KEM)
//	19+Nenc  rest  ciphertext of the compressed payload, 16-byte tag included
//	19+L     ...   signature block, to the end
//
// Integers are big endian. The HPKE info string is "berth bundle v2", a
// zero byte, the 19 header bytes and the node ID; the AAD is empty. That
// binds the header and the node: a header byte changed, or a bundle opened
// as another node, fails to decrypt.
//
// The signature block is
//
//	kind:u8  scheme:u16  version:u64  td_len:u8 trust_domain
//	node_len:u8 node_id  cert_count:u8 (cert_len:u16 cert_der)*cert_count
//	sig_len:u8 signature
//
// kind is 1 for an admin signer, whose certificate chain (leaf first, DER,
// one to four certificates) follows, or 2 for the node's own identity key,
// with no certificate. scheme is 0x0403, ECDSA over P-256 with SHA-256; the
// signature is ASN.1 DER. It signs the message
//
//	"berth bundle signature v1" 0x00  td_len:u8 trust_domain
//	node_len:u8 node_id  version:u64  SHA-256(sealed part):32
//
// A verifier checks the trust domain, node ID and version against what it
// expects (its own, and the version it was served), then the signer: an
// admin leaf that chains to the deployment's pinned root and whose one URI
// SAN is spiffe://<trust domain>/admin/<name>, or the node's own identity
// key; then the signature. Format version 1 (no length, no signature, info
// without the label) is still recognised by [Parse], so a store can say
// what it holds, but [Open] refuses it: it is unsigned.
//
// # Payload
//
// The HPKE plaintext is a raw DEFLATE stream (RFC 1951) that inflates to the
// payload, which must end exactly where the stream does:
//
//	payload = file_count:u32 file*file_count  hook_count:u16 hook*hook_count
//	file    = path_len:u16 path  mode:u16
//	          owner_len:u8 owner  group_len:u8 group
//	          size:u32 content
//	hook    = argc:u8 (arg_len:u16 arg)*argc
//	          path_count:u16 (path_len:u16 path)*path_count
//	          timeout_ms:u32
//
// Files are sorted by path, bytewise, with no repeats; each hook's paths
// likewise; hooks keep their order, which is the order they run in. So a
// bundle's contents have exactly one payload. Every file obeys these rules,
// checked when sealing and again when opening:
//
//   - path is relative and slash separated, with no empty, "." or ".."
//     element, no leading or trailing slash, no NUL or other control
//     character, valid UTF-8, at most [MaxPathLen] bytes and at most 255
//     bytes per element; it is applied under the agent's --root;
//   - no file's path is a directory of another file's path;
//   - mode holds permission bits, setuid, setgid and sticky only (0o7777 in
//     Unix terms; in [io/fs] terms [fs.ModePerm], [fs.ModeSetuid],
//     [fs.ModeSetgid] and [fs.ModeSticky]): bundles carry regular files;
//   - owner and group are empty (the applier's default), a user or group
//     name of at most [MaxNameLen] characters from [A-Za-z0-9._-] not
//     starting with '.' or '-', or a numeric ID below 4294967295 without
//     leading zeros;
//   - at most [MaxFiles] files, and the payload is at most [MaxPayload]
//     bytes, which bounds what a hostile DEFLATE stream may inflate to.
//
// And every hook these:
//
//   - at most [MaxHooks] hooks;
//   - 1 to [MaxHookArgs] arguments, each valid UTF-8 without NUL and at
//     most [MaxHookArgLen] bytes; the first is an absolute, clean path (the
//     program, run without a shell or a PATH search);
//   - 1 to [MaxFiles] paths, each the path of a file of the bundle;
//   - a timeout of 1 ms to [MaxHookTimeout], in whole milliseconds.
//
// A later format version changes the version byte; readers refuse versions
// they do not know rather than guess.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"time"
)

// Limits of the format.
const (
	// MaxFiles is the most files one bundle holds.
	MaxFiles = 4096
	// MaxPathLen is the longest path, in bytes.
	MaxPathLen = 1024
	// MaxNameLen is the longest owner or group.
	MaxNameLen = 32
	// MaxPayload is the largest payload, in bytes, before compression.
	MaxPayload = 16 << 20
	// MaxHooks is the most post-apply hooks one bundle declares.
	MaxHooks = 64
	// MaxHookArgs is the most arguments (program included) of one hook.
	MaxHookArgs = 64
	// MaxHookArgLen is the longest argument of a hook, in bytes.
	MaxHookArgLen = 4096
	// MaxHookTimeout is the longest a hook may be given to run.
	MaxHookTimeout = time.Hour
)

// File is one file of a bundle.
type File struct {
	// Path is relative to the root the bundle is applied under.
	Path string
	// Mode holds the permission bits and optionally setuid, setgid, sticky.
	Mode fs.FileMode
	// Owner and Group are names or numeric IDs; empty leaves the choice to
	// the applier.
	Owner, Group string
	Content      []byte
}

// Hook is a command a bundle asks the node to run after applying it, when
// one of the files it covers changed.
type Hook struct {
	// Command is the program, an absolute path, and its arguments. It runs
	// without a shell.
	Command []string
	// Paths are the bundle files whose change makes the hook run.
	Paths []string
	// Timeout is how long the command may run, in whole milliseconds.
	Timeout time.Duration
}

// Contents is what a bundle carries: files, and hooks that refer to them.
type Contents struct {
	Files []File
	Hooks []Hook
}

// Errors returned, wrapped with the details, by this package.
var (
	// ErrFormat means the bytes are not a sealed bundle this package can
	// read: bad magic, unknown version or algorithm, truncated, a
	// malformed signature block, or a payload that does not decode.
	ErrFormat = errors.New("not a berth bundle of a supported format")
	// ErrKey means the recipient key is of an unsupported KEM or malformed.
	ErrKey = errors.New("unsupported or malformed bundle key")
	// ErrDecrypt means the bundle does not open: it was sealed to another
	// key or for another node, or it was altered.
	ErrDecrypt = errors.New("bundle does not open with this key for this node")
	// ErrInvalidFile means a file breaks the rules of the format.
	ErrInvalidFile = errors.New("invalid bundle file")
	// ErrInvalidHook means a hook breaks the rules of the format.
	ErrInvalidHook = errors.New("invalid bundle hook")
	// ErrTooLarge means a limit of the format is exceeded.
	ErrTooLarge = errors.New("bundle exceeds a format limit")
	// ErrUnsigned means the bundle carries no signature: format version 1.
	ErrUnsigned = errors.New("bundle is unsigned (format version 1); re-put it with a current berthctl, which signs it")
	// ErrSigner means the signer is not one the verifier trusts: a
	// certificate that does not chain to the pinned root, is outside the
	// trust domain or not an admin, or a self-signature by another key.
	ErrSigner = errors.New("bundle signer is not trusted")
	// ErrSignature means the signature does not verify.
	ErrSignature = errors.New("bundle signature does not verify")
	// ErrWrongTarget means the bundle is signed for another node or
	// another trust domain.
	ErrWrongTarget = errors.New("bundle is signed for another node")
	// ErrWrongVersion means the bundle is signed for another version than
	// the one expected.
	ErrWrongVersion = errors.New("bundle is signed for another version")
)

// Digest identifies a sealed bundle: the lower-case hex SHA-256 of its bytes.
func Digest(sealed []byte) string {
	sum := sha256.Sum256(sealed)
	return hex.EncodeToString(sum[:])
}
