// Package castore is the CA service's store: the record of every certificate
// issued and of every revocation, from which revocation lists are built.
package castore

import (
	"context"
	"errors"
	"time"
)

// Issued is a certificate the CA signed.
type Issued struct {
	Serial    string // lower-case hex
	NodeID    string
	NotBefore time.Time
	NotAfter  time.Time
	IssuedAt  time.Time
	DER       []byte
	// RequestID is the registration service's ID of the request that asked
	// for it; Sign is idempotent on it. Empty for certificates recorded
	// before request IDs existed.
	RequestID string
	// KeySHA256 is the SHA-256 of the certificate's public key (SPKI).
	KeySHA256 []byte
	// Revocation is the certificate's revocation, nil while it is valid.
	// GetIssued and ListIssued fill it; RecordIssued ignores it.
	Revocation *Revocation
}

// Revocation records that an issued certificate must no longer be trusted.
type Revocation struct {
	Serial    string
	NodeID    string // always that of the issued certificate
	Reason    string
	RevokedAt time.Time
	// Node says the node itself was revoked or deleted, so that services
	// deny its node ID, not only this certificate. It is false when only
	// the certificate was revoked: a replaced board's, whose node lives on
	// under a new key.
	Node bool
}

// Errors returned, wrapped, by every Store.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// Store holds the CA service's state. Implementations are safe for concurrent
// use by several goroutines and several processes (replicas) on one database.
// Times are stored in UTC at microsecond precision.
type Store interface {
	// RecordIssued stores c; ErrConflict if its serial, or its non-empty
	// RequestID, is already recorded. Two replicas racing on one request
	// therefore record one certificate; the loser reads the winner's with
	// GetIssuedByRequest.
	RecordIssued(ctx context.Context, c Issued) error
	// GetIssued returns the certificate with the given serial.
	GetIssued(ctx context.Context, serial string) (Issued, error)
	// GetIssuedByRequest returns the certificate issued for a request ID;
	// ErrNotFound if none (an empty ID never matches).
	GetIssuedByRequest(ctx context.Context, requestID string) (Issued, error)
	// ListIssued returns the certificates issued to nodeID ("" = any) at or
	// after since (zero = ever), oldest first (ties by serial).
	ListIssued(ctx context.Context, nodeID string, since time.Time) ([]Issued, error)
	// CountIssued counts what ListIssued would return, for rate limits.
	CountIssued(ctx context.Context, nodeID string, since time.Time) (int64, error)
	// Revoke records a revocation of an issued serial (ErrNotFound if never
	// issued); revoking again returns the existing revocation unchanged. The
	// NodeID is taken from the issued certificate, whatever r says.
	Revoke(ctx context.Context, r Revocation) (Revocation, error)
	// RevokeNode revokes, in one statement, every certificate issued to
	// nodeID whose key hash is not keep (nil keep: every one), with r's
	// Reason, RevokedAt and Node; certificates already revoked keep their
	// revocation. It returns how many it revoked now. A node with no
	// certificates is not an error.
	RevokeNode(ctx context.Context, nodeID string, keep []byte, r Revocation) (int64, error)
	// ListRevocations returns revocations made at or after since (zero =
	// all), oldest first (ties by serial).
	ListRevocations(ctx context.Context, since time.Time) ([]Revocation, error)
	// Close releases the database.
	Close()
}
