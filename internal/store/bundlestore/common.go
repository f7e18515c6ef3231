package bundlestore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
)

// events names the bundle log's tables.
var events = eventlog.NewTable("bundle")

// Valid reports whether s is one of the four states.
func (s State) Valid() bool {
	switch s {
	case StateApproved, StatePending, StateSuperseded, StateReset:
		return true
	}
	return false
}

// columns is the column list every version query selects, in the order the
// scan functions expect.
const columns = `node_id, version, state, size, digest, kem_id, author, created_at, sealed`

// metaColumns is columns without the content.
const metaColumns = `node_id, version, state, size, digest, kem_id, author, created_at`

// checkPut refuses what the schema would refuse anyway, with an error that
// says why rather than a constraint name.
func checkPut(nodeID string, expected int64, b Bundle) error {
	switch {
	case nodeID == "":
		return errors.New("node ID is empty")
	case expected < 0:
		return fmt.Errorf("expected version %d is negative", expected)
	case len(b.Sealed) == 0:
		return errors.New("sealed bundle is empty")
	case b.Digest == "":
		return errors.New("digest is empty")
	case b.Author == "":
		return errors.New("author is empty")
	case b.CreatedAt.IsZero():
		return errors.New("creation time is missing")
	}
	return nil
}

func keepOrDefault(keep int) int64 {
	if keep <= 0 {
		return DefaultKeep
	}
	return int64(keep)
}

// put is Store.Put inside a transaction.
func put(ctx context.Context, s txn, nodeID string, expected int64, b Bundle, opts PutOptions) (Bundle, error) {
	last, err := s.lock(ctx, nodeID)
	if err != nil {
		return Bundle{}, err
	}
	current, pending, err := s.live(ctx, nodeID)
	if err != nil {
		return Bundle{}, err
	}
	// A pending upload is reported first: it is why the node cannot write,
	// whatever version it expected.
	if pending != 0 && !opts.ReplacePending {
		return Bundle{}, fmt.Errorf("%w: version %d", ErrPendingExists, pending)
	}
	if current != expected {
		return Bundle{}, fmt.Errorf("%w: current is %d, expected %d", ErrStale, current, expected)
	}
	if opts.Version != 0 && opts.Version != last+1 {
		return Bundle{}, &VersionError{Version: opts.Version, Next: last + 1}
	}
	if pending != 0 {
		if err := s.setState(ctx, nodeID, pending, StateSuperseded); err != nil {
			return Bundle{}, err
		}
	}
	b.NodeID, b.Version, b.Size, b.State = nodeID, last+1, int64(len(b.Sealed)), StateApproved
	b.CreatedAt = utc(b.CreatedAt)
	if opts.RequireApproval {
		b.State = StatePending
	} else if current != 0 {
		if err := s.setState(ctx, nodeID, current, StateSuperseded); err != nil {
			return Bundle{}, err
		}
	}
	if err := s.insert(ctx, b); err != nil {
		return Bundle{}, err
	}
	if err := finish(ctx, s, nodeID, b.Version, opts.Keep); err != nil {
		return Bundle{}, err
	}
	e := eventlog.Event{Type: EventUpdated, NodeID: nodeID, Time: b.CreatedAt, Details: details(
		DetailVersion, version(b.Version), DetailState, string(b.State), DetailAuthor, b.Author,
		DetailDroppedPending, version(pending))}
	if err := s.appendEvent(ctx, e); err != nil {
		return Bundle{}, err
	}
	return b, nil
}

// finish records version as the highest used and trims history.
func finish(ctx context.Context, s txn, nodeID string, version int64, keep int) error {
	if err := s.setLast(ctx, nodeID, version); err != nil {
		return err
	}
	return s.trim(ctx, nodeID, version-keepOrDefault(keep))
}

// approve is Store.Approve inside a transaction.
func approve(ctx context.Context, s txn, nodeID string, v int64, author string, now time.Time) (Bundle, error) {
	if _, err := s.lock(ctx, nodeID); err != nil {
		return Bundle{}, err
	}
	st, err := s.state(ctx, nodeID, v)
	if err != nil {
		return Bundle{}, err
	}
	switch st {
	case StateApproved:
		return s.get(ctx, nodeID, v)
	case StatePending:
	default:
		return Bundle{}, fmt.Errorf("%w: version %d is %s", ErrNotPending, v, st)
	}
	// While a version is pending the current one cannot change (node
	// uploads are refused; administrator writes and resets supersede the
	// pending version), so it is still the version the upload replaces.
	current, _, err := s.live(ctx, nodeID)
	if err != nil {
		return Bundle{}, err
	}
	if current != 0 {
		if err := s.setState(ctx, nodeID, current, StateSuperseded); err != nil {
			return Bundle{}, err
		}
	}
	if err := s.setState(ctx, nodeID, v, StateApproved); err != nil {
		return Bundle{}, err
	}
	b, err := s.get(ctx, nodeID, v)
	if err != nil {
		return Bundle{}, err
	}
	e := eventlog.Event{Type: EventApproved, NodeID: nodeID, Time: utc(now), Details: details(
		DetailVersion, version(v), DetailAuthor, author, DetailPreviousVersion, version(current))}
	if err := s.appendEvent(ctx, e); err != nil {
		return Bundle{}, err
	}
	return b, nil
}

// reset is Store.Reset inside a transaction.
func reset(ctx context.Context, s txn, nodeID, author string, now time.Time, keep int) (Meta, error) {
	if author == "" {
		return Meta{}, errors.New("author is empty")
	}
	last, err := s.lock(ctx, nodeID)
	if err != nil {
		return Meta{}, err
	}
	current, pending, err := s.live(ctx, nodeID)
	if err != nil {
		return Meta{}, err
	}
	if current == 0 && pending == 0 {
		return Meta{}, ErrNotFound
	}
	for _, v := range []int64{current, pending} {
		if v != 0 {
			if err := s.setState(ctx, nodeID, v, StateSuperseded); err != nil {
				return Meta{}, err
			}
		}
	}
	m := Meta{NodeID: nodeID, Version: last + 1, State: StateReset, Author: author, CreatedAt: utc(now)}
	if err := s.insert(ctx, Bundle{Meta: m}); err != nil {
		return Meta{}, err
	}
	if err := finish(ctx, s, nodeID, m.Version, keep); err != nil {
		return Meta{}, err
	}
	e := eventlog.Event{Type: EventReset, NodeID: nodeID, Time: m.CreatedAt, Details: details(
		DetailVersion, version(m.Version), DetailAuthor, author)}
	if err := s.appendEvent(ctx, e); err != nil {
		return Meta{}, err
	}
	return m, nil
}

// version formats a version number for event details; "" (left out) for 0.
func version(v int64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatInt(v, 10)
}

// details builds event details from key/value pairs, leaving out empty
// values.
func details(kv ...string) map[string]string {
	d := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			d[kv[i]] = kv[i+1]
		}
	}
	return d
}

// utc normalises a time for storage: UTC, microsecond precision, which both
// backends can hold exactly.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
