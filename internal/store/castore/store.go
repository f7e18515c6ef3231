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
}

// Revocation records that an issued certificate must no longer be trusted.
type Revocation struct {
	Serial    string
	NodeID    string // always that of the issued certificate
	Reason    string
	RevokedAt time.Time
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
	// RecordIssued stores c; ErrConflict if its serial is already recorded.
	RecordIssued(ctx context.Context, c Issued) error
	// GetIssued returns the certificate with the given serial.
	GetIssued(ctx context.Context, serial string) (Issued, error)
	// ListIssued returns the certificates issued to nodeID ("" = any) at or
	// after since (zero = ever), oldest first (ties by serial).
	ListIssued(ctx context.Context, nodeID string, since time.Time) ([]Issued, error)
	// CountIssued counts what ListIssued would return, for rate limits.
	CountIssued(ctx context.Context, nodeID string, since time.Time) (int64, error)
	// Revoke records a revocation of an issued serial (ErrNotFound if never
	// issued); revoking again returns the existing revocation unchanged. The
	// NodeID is taken from the issued certificate, whatever r says.
	Revoke(ctx context.Context, r Revocation) (Revocation, error)
	// ListRevocations returns revocations made at or after since (zero =
	// all), oldest first (ties by serial).
	ListRevocations(ctx context.Context, since time.Time) ([]Revocation, error)
	// Close releases the database.
	Close()
}
