package ca

import (
	"context"
	"crypto/rand"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/store/castore"
)

// failingStore is a store whose RecordIssued fails, for the case of a
// certificate signed but not recorded.
type failingStore struct {
	castore.Store
	recordErr error
}

func (f failingStore) RecordIssued(context.Context, castore.Issued) error { return f.recordErr }

// downStore is a store whose database cannot serve: every call fails with
// err.
type downStore struct {
	castore.Store
	err error
}

func (d downStore) RecordIssued(context.Context, castore.Issued) error { return d.err }
func (d downStore) ListIssued(context.Context, string, time.Time) ([]castore.Issued, error) {
	return nil, d.err
}
func (d downStore) CountIssued(context.Context, string, time.Time) (int64, error) { return 0, d.err }
func (d downStore) Revoke(context.Context, castore.Revocation) (castore.Revocation, error) {
	return castore.Revocation{}, d.err
}
func (d downStore) ListRevocations(context.Context, time.Time) ([]castore.Revocation, error) {
	return nil, d.err
}

// rid returns a fresh request ID, as the registration service makes one
// per issuance.
func rid() string { return "req-" + strings.ToLower(rand.Text()) }
