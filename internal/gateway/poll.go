package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/client/watch"
	"github.com/berth-dev/berth/internal/rpc"
)

// GET /v1/events?wait=D is a long poll of every service's events, for
// clients that would rather not hold a stream: it answers at once with the
// events after the cursor, or, when there are none yet, as soon as one
// comes, or with none after D. One cursor covers the three logs:
// "bundles=4,heartbeat=17,registration=3" (client/watch's Cursors), which
// each answer returns for the next poll. Without wait, /v1/events is the
// registration service's stream (WatchNodeEvents).

// Bounds of a long poll.
const (
	maxPollWait = 60 * time.Second
	// pollLinger is how long a poll that has an event collects more before
	// it answers: a replay after the cursor comes at once, live events one
	// by one.
	pollLinger = 50 * time.Millisecond
	// maxPollEvents ends a poll: the next one starts after them.
	maxPollEvents = 1000
	msgBadWait    = "wait must be a duration from 1s to 60s, such as 30s"
	msgBadAfter   = "after must be service=cursor pairs, such as registration=12,bundles=3 (or one registration cursor)"
)

// pollEvent is one event of a long poll's answer; the field names are
// berthctl watch -o json's.
type pollEvent struct {
	Cursor  int64             `json:"cursor,string"`
	Service string            `json:"service"`
	Type    string            `json:"type"`
	NodeID  string            `json:"node_id"`
	Time    string            `json:"time"`
	Details map[string]string `json:"details"`
}

type pollAnswer struct {
	Events []pollEvent `json:"events"`
	// Cursor resumes after the last event of each service answered, and
	// keeps the cursors the poll was given for the others.
	Cursor string `json:"cursor"`
}

// events serves /v1/events: a long poll with wait, else the stream.
func (g *Gateway) events(stream http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.Query().Has("wait") {
			stream.ServeHTTP(w, r)
			return
		}
		g.poll(w, r)
	})
}

func (g *Gateway) poll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	wait, err := time.ParseDuration(q.Get("wait"))
	if n, nerr := strconv.Atoi(q.Get("wait")); nerr == nil {
		wait, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || wait < time.Second || wait > maxPollWait {
		g.writeError(w, r, status.Error(codes.InvalidArgument, msgBadWait))
		return
	}
	after, err := pollCursors(q.Get("after"))
	if err != nil {
		g.writeError(w, r, status.Error(codes.InvalidArgument, msgBadAfter))
		return
	}
	cfg := watch.Config{
		After: after, FromNow: q.Get("from_now") == "true",
		NodeIDs: q["node_id"], Types: q["type"], MaxFailures: 1,
	}
	conns := map[watch.Service]grpc.ClientConnInterface{
		watch.Registration: g.c.Registration, watch.Bundles: g.c.Bundles, watch.Heartbeat: g.c.Heartbeat,
	}
	services := q["service"]
	for _, s := range watch.Services() {
		if len(services) == 0 || contains(services, string(s)) {
			switch s {
			case watch.Registration:
				cfg.Registration = conns[s]
			case watch.Bundles:
				cfg.Bundles = conns[s]
			case watch.Heartbeat:
				cfg.Heartbeat = conns[s]
			}
		}
	}
	wt, err := watch.New(cfg)
	if err != nil {
		g.writeError(w, r, status.Error(codes.InvalidArgument, strings.TrimPrefix(err.Error(), "watch: ")))
		return
	}
	id, _ := callerFrom(r.Context())
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(rpc.ForwardedCallerKey, rpc.ForwardedCaller(id)))
	ctx, done := context.WithCancel(ctx)
	defer done()
	var mu sync.Mutex
	out := pollAnswer{Events: []pollEvent{}}
	errFull := errors.New("poll full")
	err = wt.Run(ctx, func(e watch.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if len(out.Events) == 0 {
			time.AfterFunc(pollLinger, done)
		}
		t := ""
		if !e.Time.IsZero() {
			t = e.Time.UTC().Format(time.RFC3339Nano)
		}
		out.Events = append(out.Events, pollEvent{Cursor: e.Cursor, Service: string(e.Service), Type: e.Type, NodeID: e.NodeID, Time: t, Details: e.Details})
		if len(out.Events) >= maxPollEvents {
			return errFull
		}
		return nil
	})
	if r.Context().Err() != nil {
		return // the client went away
	}
	var se *watch.ServiceError
	switch {
	case err == nil, errors.Is(err, errFull), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
	case errors.As(err, &se):
		g.writeError(w, r, se.Err)
		return
	default:
		// A cursor the log no longer has (OutOfRange) and the like.
		g.writeError(w, r, status.Convert(err).Err())
		return
	}
	mu.Lock()
	defer mu.Unlock()
	out.Cursor = wt.Cursors().String()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(out)
}

// pollCursors reads after: service=cursor pairs, or a bare registration
// cursor as the stream of /v1/events takes.
func pollCursors(v string) (watch.Cursors, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return nil, errors.New("negative cursor")
		}
		return watch.Cursors{watch.Registration: n}, nil
	}
	return watch.ParseCursors(v)
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}
