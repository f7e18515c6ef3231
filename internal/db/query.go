package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Scanner is a row to read: a *sql.Row or *sql.Rows. Stores write one scan
// function per row type and use it for single rows and lists alike.
type Scanner interface{ Scan(dest ...any) error }

// Collect runs query on q and reads every row with scan; nil when there is
// none.
func Collect[T any](ctx context.Context, q Querier, scan func(Scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Found is err, except that a single-row query that found nothing
// (sql.ErrNoRows) becomes notFound, the store's own error.
func Found(err, notFound error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return notFound
	}
	return err
}

// RowsAffected is how many rows the statement that returned res and err
// changed; err, and 0, when it failed. Pass it ExecContext's results.
func RowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Result is the end of most store methods: v when err is nil, else the
// zero value and err wrapped as "<format>: <err>", so that a caller never
// sees a half-read value next to an error.
func Result[T any](v T, err error, format string, args ...any) (T, error) {
	if err != nil {
		var zero T
		return zero, fmt.Errorf(format+": %w", append(args, err)...)
	}
	return v, nil
}

// Wrap is err wrapped as "<format>: <err>", or nil when err is nil.
func Wrap(err error, format string, args ...any) error {
	_, err = Result(struct{}{}, err, format, args...)
	return err
}

// Params collects the arguments of a statement built piece by piece; each
// Add returns the placeholder that binds the value it added. Finish the
// statement before passing p...: Go leaves unordered the read of p and a
// call to Add in the same argument list.
type Params []any

// Add binds v and returns its placeholder ("$3").
func (p *Params) Add(v any) string {
	*p = append(*p, v)
	return "$" + strconv.Itoa(len(*p))
}

// Values binds vs and returns their placeholders in parentheses,
// "($i, …)": a row of a VALUES list, or the list of an IN.
func (p *Params) Values(vs ...any) string {
	s := "("
	for i, v := range vs {
		if i > 0 {
			s += ", "
		}
		s += p.Add(v)
	}
	return s + ")"
}

// Limit is " LIMIT $i" binding n, or nothing when n <= 0 (no limit).
func (p *Params) Limit(n int) string {
	if n <= 0 {
		return ""
	}
	return " LIMIT " + p.Add(n)
}

// In is "col IN ($i, …)" binding vs, or FALSE when vs is empty.
func (p *Params) In(col string, vs []string) string {
	if len(vs) == 0 {
		return "FALSE"
	}
	args := make([]any, len(vs))
	for i, v := range vs {
		args[i] = v
	}
	return col + " IN " + p.Values(args...)
}

// UTC is t as both engines store it: UTC at microsecond precision. A value
// a store returns after writing equals what it reads back later.
func UTC(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Bytes is b for a NOT NULL byte-string column: nil becomes empty.
func Bytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// JSON encodes v for a JSON column (JSONB on PostgreSQL, TEXT on SQLite).
// Nil maps and slices become {} and [], so that the column is never JSON
// null; byte strings encode as base64.
func JSON(v any) string {
	switch x := v.(type) {
	case map[string]string:
		if x == nil {
			return "{}"
		}
	case []string:
		if x == nil {
			return "[]"
		}
	case [][]byte:
		if x == nil {
			return "[]"
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and slices of strings or bytes always encode
	}
	return string(b)
}

// ScanJSON reads a JSON column into *p (a pointer to a map, slice or
// struct pointer). NULL, "" and an empty object or array leave *p at its
// zero value, so both engines return nil for "none".
func ScanJSON[T any](p *T) sql.Scanner { return jsonScanner[T]{p} }

type jsonScanner[T any] struct{ p *T }

func (s jsonScanner[T]) Scan(src any) error {
	var zero T
	*s.p = zero
	var b []byte
	switch v := src.(type) {
	case nil:
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("scan JSON: unexpected %T", src)
	}
	switch string(b) {
	case "", "{}", "[]", "null":
		return nil
	}
	if err := json.Unmarshal(b, s.p); err != nil {
		return fmt.Errorf("scan JSON: %w", err)
	}
	return nil
}

// ScanBytes reads a byte-string column into *b; an empty value reads as
// nil, so both engines return the same.
func ScanBytes(b *[]byte) sql.Scanner { return bytesScanner{b} }

type bytesScanner struct{ b *[]byte }

func (s bytesScanner) Scan(src any) error {
	*s.b = nil
	switch v := src.(type) {
	case nil:
	case []byte:
		if len(v) > 0 {
			*s.b = append([]byte(nil), v...)
		}
	case string:
		if v != "" {
			*s.b = []byte(v)
		}
	default:
		return fmt.Errorf("scan bytes: unexpected %T", src)
	}
	return nil
}
