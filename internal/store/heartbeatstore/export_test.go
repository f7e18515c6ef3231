package heartbeatstore

// SetAfterBootsRead makes f run in every RecordBoots transaction between
// its read of the liveness rows and its write, where another writer can
// create a row the read did not see.
func SetAfterBootsRead(s *SQLStore, f func()) { s.afterBootsRead = f }
