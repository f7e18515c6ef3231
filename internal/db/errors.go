package db

// IsUniqueViolation reports whether err, from either backend, is the database
// refusing a row that would duplicate a UNIQUE or PRIMARY KEY value. Stores
// turn it into their ErrConflict.
func IsUniqueViolation(err error) bool {
	return isPostgresUniqueViolation(err) || isSQLiteUniqueViolation(err)
}
