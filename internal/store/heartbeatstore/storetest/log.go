package storetest

import (
	"context"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// eventQuery and eventPage read the health log as typed events.
type eventQuery struct {
	After   int64
	NodeIDs []string
	Types   []heartbeatstore.EventType
	Limit   int
}

type eventPage struct {
	Events         []heartbeatstore.Event
	Next           int64
	DeletedThrough int64
}

func readEvents(ctx context.Context, s heartbeatstore.Store, q eventQuery) (eventPage, error) {
	types := make([]string, len(q.Types))
	for i, t := range q.Types {
		types[i] = string(t)
	}
	p, err := s.Events().Read(ctx, eventlog.Query{After: q.After, NodeIDs: q.NodeIDs, Types: types, Limit: q.Limit})
	out := eventPage{Next: p.Next, DeletedThrough: p.DeletedThrough}
	for _, e := range p.Events {
		out.Events = append(out.Events, heartbeatstore.EventOf(e))
	}
	return out, err
}

func eventBounds(ctx context.Context, s heartbeatstore.Store) (deleted, head int64, err error) {
	b, err := s.Events().Bounds(ctx)
	return b.DeletedThrough, b.Head, err
}

func deleteEventsBefore(ctx context.Context, s heartbeatstore.Store, t time.Time) (int64, error) {
	return s.Events().DeleteBefore(ctx, t)
}
