package castore

import "time"

// utc normalises a time for storage: UTC, microsecond precision, which both
// backends can hold exactly.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// micros and fromMicros are the SQLite time encoding.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
