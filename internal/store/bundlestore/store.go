// Package bundlestore is the bundles service's store: the sealed
// configuration bundles of every node, in versions, with the one a node
// gets, the one waiting for approval, and a short history.
//
// Every version of a node's bundle is one record, numbered from 1 up per
// node; a number is never used twice for one node (until Delete forgets the
// node). Its State says what it is:
//
//   - approved: the current version, the one the node gets. At most one.
//   - pending: a node's upload held for approval. At most one. The node
//     keeps getting the approved version meanwhile, and cannot upload
//     another until this one is approved or dropped.
//   - superseded: a version that was current and was replaced, or a
//     pending one that an administrator's write or a reset dropped.
//   - reset: a marker that the bundle was reset (by Author, at CreatedAt).
//     It has no content. After a reset the node has no current version, so
//     Get says ErrNotFound and the next Put expects version 0, as for a
//     node that never had a bundle.
//
// Writes compare and swap on the current version: Put names the version it
// replaces (0 for none) and fails with ErrStale if that is not the current
// one. Every error leaves the store as it was.
//
// History is trimmed on every write that adds a version: superseded and
// reset records older than the newest keep versions go; the current and
// pending versions stay whatever their age. Versions in history keep their
// sealed bytes, so a node takes the space of at most keep+1 bundles.
//
// # Events
//
// The store keeps an event log (package eventlog) that the management
// engine follows by cursor. Every write appends its event in the
// transaction that makes the change, so the two commit together, and a
// refused write appends nothing:
//
//	Put      bundle_updated: version, state (approved or pending), author,
//	         and dropped_pending (the version an administrator's write
//	         superseded) when there was one
//	Approve  bundle_approved: version, author, and previous_version (the
//	         version it superseded) when there was one; approving the
//	         current version again changes nothing and appends nothing
//	Reset    bundle_reset: version (of the reset record), author
//
// Delete, which forgets a deleted node, appends nothing: the registration
// service's log records the deletion. Details whose value would be empty
// are left out.
package bundlestore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
)

// State is where a version stands; see the package documentation.
type State string

// The states of a version.
const (
	StateApproved   State = "approved"
	StatePending    State = "pending"
	StateSuperseded State = "superseded"
	StateReset      State = "reset"
)

// DefaultKeep is how many versions history keeps when not told.
const DefaultKeep = 10

// Meta describes a version without its content.
type Meta struct {
	NodeID  string
	Version int64
	State   State
	// Size is the length of the sealed bundle in bytes; 0 for a reset.
	Size int64
	// Digest is the lower-case hex SHA-256 of the sealed bundle; empty for
	// a reset.
	Digest string
	// KEMID is the HPKE KEM the bundle is sealed with; 0 for a reset.
	KEMID uint16
	// Author is who wrote (or reset) it, e.g. "node:<id>" or "admin:<name>".
	Author    string
	CreatedAt time.Time
}

// Bundle is a version with its content.
type Bundle struct {
	Meta
	// Sealed is the sealed bundle, ciphertext the store cannot read.
	Sealed []byte
}

// PutOptions says how Put stores a new version.
type PutOptions struct {
	// RequireApproval holds the new version as pending. Without it the
	// version becomes current at once.
	RequireApproval bool
	// ReplacePending lets the write go ahead while a version is pending,
	// superseding it: an administrator's write wins over a node's upload.
	// Without it Put fails with ErrPendingExists.
	ReplacePending bool
	// Keep is how many versions history keeps; 0 or less means DefaultKeep.
	Keep int
	// Version, when not 0, is the number the new version must get: Put
	// fails with a *VersionError unless it is the node's next number. A
	// bundle signed for a version number sets it, so that a write racing
	// it (a reset, another write) cannot make it land under a number it
	// is not signed for.
	Version int64
}

// VersionError is a Put whose PutOptions.Version is not the node's next
// version number, Next.
type VersionError struct{ Version, Next int64 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("version %d is not the next version, %d", e.Version, e.Next)
}

// Event types of the bundle log; see the package documentation.
const (
	EventUpdated  = "bundle_updated"
	EventApproved = "bundle_approved"
	EventReset    = "bundle_reset"
)

// EventTypes returns every event type the store appends.
func EventTypes() []string { return []string{EventUpdated, EventApproved, EventReset} }

// Keys of event details.
const (
	DetailVersion         = "version"
	DetailState           = "state"
	DetailAuthor          = "author"
	DetailDroppedPending  = "dropped_pending"
	DetailPreviousVersion = "previous_version"
)

// Errors returned, wrapped, by every Store.
var (
	// ErrNotFound: no such bundle or version.
	ErrNotFound = errors.New("not found")
	// ErrStale: the expected version of a Put is not the current one.
	ErrStale = errors.New("expected version is not the current version")
	// ErrPendingExists: a version already waits for approval.
	ErrPendingExists = errors.New("a version is already pending approval")
	// ErrNotPending: Approve named a version that is neither pending nor current.
	ErrNotPending = errors.New("version is not pending approval")
)

// Store holds the bundles service's state. Implementations are safe for
// concurrent use by several goroutines and several processes (replicas) on
// one database: every write to a node's bundles is serialised. Times are
// stored in UTC at microsecond precision.
type Store interface {
	// Put stores a new version of nodeID's bundle if the current version is
	// expected (0 = none): current at once, or pending with
	// opts.RequireApproval. The caller fills in Sealed, Digest, KEMID,
	// Author and CreatedAt; the store sets NodeID, Version, State and Size
	// and returns the version stored. ErrPendingExists if a version is
	// pending (unless opts.ReplacePending), else ErrStale if expected is not
	// current, else a *VersionError if opts.Version is set and is not the
	// next number; whatever the error, nothing changes. A malformed bundle (no content,
	// digest, author or creation time, a negative expected version) is
	// refused with a plain error.
	Put(ctx context.Context, nodeID string, expected int64, b Bundle, opts PutOptions) (Bundle, error)
	// Get returns the current (approved) version; ErrNotFound if there is
	// none: never written, only pending, or reset.
	Get(ctx context.Context, nodeID string) (Bundle, error)
	// Pending returns the version waiting for approval; ErrNotFound if none.
	Pending(ctx context.Context, nodeID string) (Bundle, error)
	// History describes the versions kept, newest first; none for a node
	// without any.
	History(ctx context.Context, nodeID string) ([]Meta, error)
	// Approve makes pending version `version` current and supersedes the
	// previous current one, recording who approved (author) at now.
	// Approving the current version again returns it unchanged.
	// ErrNotFound if there is no such version, ErrNotPending if it is
	// neither pending nor current.
	Approve(ctx context.Context, nodeID string, version int64, author string, now time.Time) (Bundle, error)
	// Reset supersedes the current and the pending version and records a
	// reset version by author at now; the node then has no bundle until the
	// next Put (which expects 0). ErrNotFound if there is neither a current
	// nor a pending version. keep trims history as for Put.
	Reset(ctx context.Context, nodeID, author string, now time.Time, keep int) (Meta, error)
	// Delete forgets every version of nodeID, for a node that is deleted. It
	// is not an error if there are none. Version numbers start at 1 again.
	Delete(ctx context.Context, nodeID string) error
	// Events is the bundle event log, which the writes above append to.
	Events() eventlog.Log
	// Close releases the database.
	Close()
}
