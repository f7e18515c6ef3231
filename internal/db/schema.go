package db

import (
	"fmt"
	"io/fs"
)

// Schema is a store's embedded migrations: FS holds migrations/sqlite and
// migrations/postgres, and Service names the store in schema_migrations.
type Schema struct {
	Service string
	FS      fs.FS
}

func (s Schema) dialect(name string) (fs.FS, error) {
	sub, err := fs.Sub(s.FS, "migrations/"+name)
	if err != nil {
		return nil, fmt.Errorf("%s migrations for %s: %w", s.Service, name, err)
	}
	return sub, nil
}
