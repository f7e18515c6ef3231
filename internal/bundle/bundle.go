// Package bundle is berth's configuration bundle format: a node's files,
// sealed with HPKE (RFC 9180, crypto/hpke) to the node's bundle public key,
// so that the servers only ever hold ciphertext. It is free of any
// transport: the agent and berthctl seal and open bundles, and the bundles
// service reads no more than the clear-text header.
//
// # Sealed bundle, format version 1
//
// A sealed bundle is a 15-byte header followed by the output of single-shot
// HPKE (base mode), the encapsulated key and then the AEAD ciphertext:
//
//	offset  size  field
//	0       8     magic "BERTHBDL"
//	8       1     format version: 1
//	9       2     KEM ID of the recipient's key, e.g. 0x647a (ML-KEM-768 +
//	              X25519, the default) or 0x0010 (DHKEM(P-256, HKDF-SHA256))
//	11      2     KDF ID: 0x0001, HKDF-SHA256
//	13      2     AEAD ID: 0x0002, AES-256-GCM
//	15      Nenc  enc, the encapsulated key (Nenc depends on the KEM)
//	15+Nenc rest  ciphertext of the compressed payload, 16-byte tag included
//
// Integers are big endian. The HPKE info string is the 15 header bytes
// followed by the node ID the bundle is for. That binds both: a header byte
// changed in transit, or a bundle presented to (or opened as) another node,
// makes decryption fail. HPKE's AEAD then covers every ciphertext byte, so
// any change anywhere is rejected.
//
// The HPKE plaintext is a raw DEFLATE stream (RFC 1951) that inflates to the
// payload, which must end exactly where the stream does:
//
//	payload = count:u32 file*count
//	file    = path_len:u16 path  mode:u16
//	          owner_len:u8 owner  group_len:u8 group
//	          size:u32 content
//
// Files are sorted by path, bytewise, with no repeats, so a set of files
// has exactly one payload. Every file obeys these rules, checked when
// sealing and again when opening:
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
// A later format version changes the version byte; readers refuse versions
// they do not know rather than guess.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
)

// Limits of format version 1.
const (
	// MaxFiles is the most files one bundle holds.
	MaxFiles = 4096
	// MaxPathLen is the longest path, in bytes.
	MaxPathLen = 1024
	// MaxNameLen is the longest owner or group.
	MaxNameLen = 32
	// MaxPayload is the largest payload, in bytes, before compression.
	MaxPayload = 16 << 20
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

// Errors returned, wrapped with the details, by this package.
var (
	// ErrFormat means the bytes are not a sealed bundle this package can
	// read: bad magic, unknown version or algorithm, truncated, or a payload
	// that does not decode.
	ErrFormat = errors.New("not a berth bundle of a supported format")
	// ErrKey means the recipient key is of an unsupported KEM or malformed.
	ErrKey = errors.New("unsupported or malformed bundle key")
	// ErrDecrypt means the bundle does not open: it was sealed to another
	// key or for another node, or it was altered.
	ErrDecrypt = errors.New("bundle does not open with this key for this node")
	// ErrInvalidFile means a file breaks the rules of the format.
	ErrInvalidFile = errors.New("invalid bundle file")
	// ErrTooLarge means a limit of the format is exceeded.
	ErrTooLarge = errors.New("bundle exceeds a format limit")
)

// Digest identifies a sealed bundle: the lower-case hex SHA-256 of its bytes.
func Digest(sealed []byte) string {
	sum := sha256.Sum256(sealed)
	return hex.EncodeToString(sum[:])
}
