package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// keepAlive is how often an idle stream sends a comment, so that proxies
// and the browser keep it open.
const keepAlive = 15 * time.Second

// streamFilter reads the stream's query: node, type, logs (which logs,
// comma-separated) and after (per-log cursors, also read from the
// browser's Last-Event-ID when it reconnects).
func streamFilter(r *http.Request) (eventFilter, []string, error) {
	q := r.URL.Query()
	f := eventFilter{Node: q.Get("node"), Type: q.Get("type")}
	if f.Type != "" && logOf(f.Type) == "" {
		return f, nil, status.Errorf(codes.InvalidArgument, "type %q is not an event type berth records", f.Type)
	}
	after := q.Get("after")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		after = id
	}
	f.After = parseCursors(after)
	logs := f.logs()
	if v := q.Get("logs"); v != "" {
		var want []string
		for _, l := range allLogs {
			for _, x := range splitComma(v) {
				if x == l && (f.Type == "" || logOf(f.Type) == l) {
					want = append(want, l)
				}
			}
		}
		logs = want
	}
	return f, logs, nil
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// stream serves events as server-sent events: one watch per log, as the
// principal, merged. Each message's id holds every log's cursor, so a
// browser that reconnects (EventSource sends Last-Event-ID) resumes
// without a gap. A log the principal may not watch sends one "denied"
// message with the server's error, and the others go on.
func (s *Console) stream(w http.ResponseWriter, r *http.Request, ss *session) {
	f, logs, err := streamFilter(r)
	if err != nil {
		s.fail(w, r, ss, httpStatus(err), errorText(err))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ctx = as(ctx, ss.principal)
	type msg struct {
		ev  event
		err error
		log string
	}
	msgs := make(chan msg)
	for _, l := range logs {
		go func() {
			wt, err := s.api.watch(ctx, l, f)
			for err == nil {
				var ev event
				if ev, err = wt.recv(); err == nil {
					select {
					case msgs <- msg{ev: ev, log: l}:
					case <-ctx.Done():
						return
					}
				}
			}
			select {
			case msgs <- msg{err: err, log: l}:
			case <-ctx.Done():
			}
		}()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	fmt.Fprint(w, ": berth events\n\n")
	if rc.Flush() != nil {
		return
	}
	cursors := map[string]int64{}
	for l, c := range f.After {
		cursors[l] = c
	}
	open := len(logs)
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for open > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case m := <-msgs:
			if m.err != nil {
				open--
				if ctx.Err() != nil {
					return
				}
				// The browser shows why a log stopped; reconnecting is its
				// EventSource's job once every log has stopped.
				b, _ := json.Marshal(map[string]string{"log": m.log, "error": errorText(m.err)})
				fmt.Fprintf(w, "event: stopped\ndata: %s\n\n", b)
				break
			}
			cursors[m.log] = m.ev.Cursor
			b, _ := json.Marshal(m.ev)
			fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", cursorsParam(cursors), m.ev.Log, b)
		}
		if rc.Flush() != nil {
			return
		}
	}
}
