package ca

import (
	"context"

	"github.com/berth-dev/berth/internal/store/castore"
)

// failingStore is a store whose RecordIssued fails, for the case of a
// certificate signed but not recorded.
type failingStore struct {
	castore.Store
	recordErr error
}

func (f failingStore) RecordIssued(context.Context, castore.Issued) error { return f.recordErr }
