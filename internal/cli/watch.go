package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/client/watch"
	"github.com/berth-dev/berth/internal/mtls"
)

// watchMaxFailures is how many attempts in a row a service's stream may
// fail, before any of its streams worked, for watch to give up on it: an
// unreachable service is reported within a second or so. Once a stream
// worked, watch reconnects for as long as it takes, saying so on stderr,
// so that it outlives a restart of the service.
const watchMaxFailures = 3

// watch's reconnection backoff: quick first retries, and at least one
// attempt every few seconds while a service is away.
const (
	watchInitialBackoff = 250 * time.Millisecond
	watchMaxBackoff     = 5 * time.Second
)

// eventTimeFormat is RFC 3339 with nanoseconds, fixed width, in UTC.
const eventTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func watchCommand() *command {
	var types strings.Builder
	for _, s := range watch.Services() {
		fmt.Fprintf(&types, "\n  %-13s %s", s, strings.Join(watch.EventTypes(s), ", "))
	}
	return &command{
		name:    "watch",
		summary: "Follow node lifecycle, bundle and health events",
		setup:   setupWatch,
		follows: true,
		help: "Print the events of the registration service (node lifecycle), the bundles\n" +
			"service (bundle changes) and the heartbeat service (health) as they happen:\n" +
			"first those each service's log keeps after the starting cursor, then new\n" +
			"ones, until interrupted or until --count events. Each service keeps its own\n" +
			"log and cursors: events of one service come in cursor order, those of\n" +
			"different services as they arrive. A broken stream resumes after the last\n" +
			"event printed, so nothing is missed or printed twice. To resume a later\n" +
			"watch, pass each service's last cursor with --after.\n" +
			"\n" +
			"Event types (--type):" + types.String() + "\n" +
			"\n" +
			"With -o json each event is one JSON object per line: cursor, service, type,\n" +
			"node_id, time (RFC 3339, UTC, nanoseconds) and details. The services are at\n" +
			"--server, --bundles-server and --heartbeat-server. --timeout bounds the watch\n" +
			"only when given.",
	}
}

// listFlag collects a repeatable flag whose values may also be
// comma-separated; check, when set, vets each value.
type listFlag struct {
	values []string
	check  func(string) error
}

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.values, ",")
}

// Type names the value in help and completion.
func (l *listFlag) Type() string { return "value" }

func (l *listFlag) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return errors.New("empty value")
		}
		if l.check != nil {
			if err := l.check(part); err != nil {
				return err
			}
		}
		if !slices.Contains(l.values, part) {
			l.values = append(l.values, part)
		}
	}
	return nil
}

// cursorsFlag collects repeatable --after service=cursor flags.
type cursorsFlag struct{ c watch.Cursors }

func (f *cursorsFlag) String() string {
	if f == nil {
		return ""
	}
	return f.c.String()
}

// Type names the value in help and completion.
func (f *cursorsFlag) Type() string { return "value" }

func (f *cursorsFlag) Set(v string) error {
	c, err := watch.ParseCursors(v)
	if err != nil {
		return errors.New("want service=cursor, such as heartbeat=42, with a cursor of 0 or more")
	}
	for s, cur := range c {
		if _, dup := f.c[s]; dup {
			return fmt.Errorf("cursor of %s given twice", s)
		}
		f.c[s] = cur
	}
	return nil
}

func setupWatch(fs *pflag.FlagSet) action {
	services := &listFlag{check: func(v string) error {
		_, err := watch.ParseService(v)
		if err != nil {
			return errors.New("want registration, bundles or heartbeat")
		}
		return nil
	}}
	nodes := &listFlag{}
	types := &listFlag{check: func(v string) error {
		if _, ok := watch.ServiceOf(v); !ok {
			return errors.New("unknown event type (see berthctl watch -h)")
		}
		return nil
	}}
	after := &cursorsFlag{c: watch.Cursors{}}
	fs.Var(services, "service", "watch only service `S`: registration, bundles or heartbeat (repeatable; default all)")
	fs.Var(nodes, "node", "keep only events of node `ID` (repeatable, at most 100)")
	fs.Var(types, "type", "keep only events of type `T` (repeatable)")
	fs.Var(after, "after", "start a service after a cursor, as `service=cursor` (repeatable)")
	fromNow := fs.Bool("from-now", false, "start services without --after at their newest event, not their oldest")
	count := fs.Int("count", 0, "exit after `N` events (default: run until interrupted)")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		if *count < 0 {
			return s.usagef("invalid --count %d: want 0 (no limit) or more", *count)
		}
		if len(nodes.values) > watch.MaxNodeIDs {
			return s.usagef("%d --node flags: at most %d", len(nodes.values), watch.MaxNodeIDs)
		}
		watched, err := s.watchedServices(services.values, types.values, after.c)
		if err != nil {
			return err
		}
		cfg := watch.Config{
			After: after.c, FromNow: *fromNow, NodeIDs: nodes.values, Types: types.values,
			Backoff: watch.Backoff{Initial: watchInitialBackoff, Max: watchMaxBackoff},
		}
		if s.cfg.WatchBackoff != (watch.Backoff{}) {
			cfg.Backoff = s.cfg.WatchBackoff
		}
		if err := s.watchConns(&cfg, watched); err != nil {
			return err
		}
		return s.runWatch(ctx, cfg, *count)
	}
}

// watchedServices checks the selection of services, types and cursors and
// returns the services to watch: those selected (all by default) that send
// events of a selected type.
func (s *session) watchedServices(selected, types []string, after watch.Cursors) ([]watch.Service, error) {
	sel := watch.Services()
	if len(selected) > 0 {
		sel = nil
		for _, name := range selected {
			svc, _ := watch.ParseService(name) // checked by the flag
			sel = append(sel, svc)
		}
	}
	for _, svc := range slices.Sorted(maps.Keys(after)) {
		if !slices.Contains(sel, svc) {
			return nil, s.usagef("--after %s=%d: %s is not watched (see --service)", svc, after[svc], svc)
		}
	}
	if len(types) == 0 {
		return sel, nil
	}
	var out []watch.Service
	for _, t := range types {
		svc, _ := watch.ServiceOf(t) // checked by the flag
		if !slices.Contains(sel, svc) {
			return nil, s.usagef("--type %s: %s events come from %s, which is not watched (see --service)", t, t, svc)
		}
		if !slices.Contains(out, svc) {
			out = append(out, svc)
		}
	}
	for _, svc := range slices.Sorted(maps.Keys(after)) {
		if !slices.Contains(out, svc) {
			return nil, s.usagef("--after %s=%d: no --type selects %s events", svc, after[svc], svc)
		}
	}
	return out, nil
}

// watchConns connects to the watched services.
func (s *session) watchConns(cfg *watch.Config, watched []watch.Service) error {
	n := need{
		registration: slices.Contains(watched, watch.Registration),
		bundles:      slices.Contains(watched, watch.Bundles),
		heartbeat:    slices.Contains(watched, watch.Heartbeat),
	}
	if missing := s.set.missing(n); missing != "" {
		return usagef(s.path, "missing connection settings: set %s", missing)
	}
	for _, svc := range watched {
		conn, err := s.dial(s.watchAddr(svc), watchedService(svc))
		if err != nil {
			return err
		}
		switch svc {
		case watch.Registration:
			cfg.Registration = conn
		case watch.Bundles:
			cfg.Bundles = conn
		case watch.Heartbeat:
			cfg.Heartbeat = conn
		}
	}
	return nil
}

// watchAddr is the address of svc.
// watchedService is the berth service whose identity a watched
// service's server must have.
func watchedService(svc watch.Service) string {
	switch svc {
	case watch.Bundles:
		return mtls.ServiceBundles
	case watch.Heartbeat:
		return mtls.ServiceHeartbeat
	}
	return mtls.ServiceRegistration
}

func (s *session) watchAddr(svc watch.Service) string {
	switch svc {
	case watch.Bundles:
		return s.set.bundlesServer
	case watch.Heartbeat:
		return s.set.heartbeatServer
	}
	return s.set.server
}

// errCountReached ends a watch that printed its --count events.
var errCountReached = errors.New("count reached")

// runWatch prints events until ctx ends (exit 0), --count events were
// printed (exit 0), or a service fails (exit 1).
func (s *session) runWatch(ctx context.Context, cfg watch.Config, count int) error {
	var mu sync.Mutex // OnRetry runs on the services' goroutines
	cfg.OnRetry = func(r watch.Retry) error {
		if !r.Connected {
			if r.Failures >= watchMaxFailures {
				return &watch.ServiceError{Service: r.Service, Failures: r.Failures, Err: r.Err}
			}
			return nil // the error is reported if watch gives up
		}
		what := "stream broken"
		if r.Failures > 0 {
			what = fmt.Sprintf("attempt %d failed", r.Failures)
		}
		from := fmt.Sprintf("after cursor %d", r.After)
		if r.FromNow {
			from = "from now"
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(s.cfg.Stderr, "berthctl: watch %s: %s (%s); reconnecting %s\n",
			r.Service, what, oneLine(s.statusMessage(s.watchAddr(r.Service), r.Err)), from)
		return nil
	}
	w, err := watch.New(cfg)
	if err != nil {
		return s.usagef("%s", strings.TrimPrefix(err.Error(), "watch: "))
	}
	p := eventPrinter{w: s.cfg.Stdout, json: s.json(), yaml: s.set.output == formatYAML}
	n := 0
	err = w.Run(ctx, func(e watch.Event) error {
		if err := p.print(e); err != nil {
			return fmt.Errorf("write event: %w", err)
		}
		n++
		if count > 0 && n >= count {
			return errCountReached
		}
		return nil
	})
	switch {
	case errors.Is(err, errCountReached), errors.Is(err, context.Canceled):
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		if count > 0 {
			return fmt.Errorf("watch: %d of %d events within %s (%s)", n, count, s.set.timeout, s.set.sources["BERTH_TIMEOUT"])
		}
		return nil
	}
	return s.watchError(err)
}

// watchError explains why a service's watch failed, naming the service.
func (s *session) watchError(err error) error {
	var ce *watch.CursorError
	if errors.As(err, &ce) {
		retry := fmt.Sprintf("with --after %s=0 for the oldest event kept, or with --from-now", ce.Service)
		if ce.Ahead {
			return fmt.Errorf("%s; was the service's database replaced? Start again %s", ce.Error(), retry)
		}
		return fmt.Errorf("%s; events were missed: start again %s", ce.Error(), retry)
	}
	var se *watch.ServiceError
	if !errors.As(err, &se) {
		return err
	}
	svc, addr := string(se.Service), s.watchAddr(se.Service)
	what := "watch " + svc
	hints := map[watch.Service]string{
		watch.Registration: s.addressHint("BERTH_SERVER", "--server"),
		watch.Bundles:      s.addressHint("BERTH_BUNDLES_SERVER", "--bundles-server"),
		watch.Heartbeat:    s.addressHint("BERTH_HEARTBEAT_SERVER", "--heartbeat-server"),
	}
	leaveOut := fmt.Sprintf("leave %s out with --service", svc)
	if found, ok := wrongServer(se.Err); ok {
		return fmt.Errorf("%s: %s is not the %s service: %s (%s, or %s)", what, addr, svc, found, hints[se.Service], leaveOut)
	}
	if status.Code(se.Err) == codes.Unimplemented {
		if !strings.HasPrefix(status.Convert(se.Err).Message(), "unknown service") {
			return fmt.Errorf("%s: %s does not support watching %s events yet (%s)", what, addr, svc, leaveOut)
		}
		return fmt.Errorf("%s: %s has no %s service (%s, or %s)", what, addr, svc, hints[se.Service], leaveOut)
	}
	return s.callErrorAt(addr, what, se.Err)
}

// nodeEventType is the type of the events a node reports itself.
const nodeEventType = "node_event"

// eventJSON is an event in the JSON output contract of watch: one object
// per line. Keep the field names.
type eventJSON struct {
	Cursor  int64             `json:"cursor"`
	Service string            `json:"service"`
	Type    string            `json:"type"`
	NodeID  string            `json:"node_id"`
	Time    string            `json:"time"`
	Details map[string]string `json:"details"`
	// A node_event's own: what the node reported.
	EventType string `json:"event_type,omitempty"`
	Severity  string `json:"severity,omitempty"`
	Message   string `json:"message,omitempty"`
}

// eventPrinter prints events as JSON lines or as aligned text lines under
// a header printed with the first event.
type eventPrinter struct {
	w      io.Writer
	json   bool
	yaml   bool
	header bool
}

// Widths of the text columns; longer values push the rest of their line.
const (
	widthService = len("registration")
	widthType    = len("certificate_renewed")
	widthNode    = 26 // node IDs from the registration service
	widthCursor  = 8
)

func (p *eventPrinter) print(e watch.Event) error {
	if p.json || p.yaml {
		v := eventJSON{Cursor: e.Cursor, Service: string(e.Service), Type: e.Type, NodeID: e.NodeID, Details: e.Details}
		if !e.Time.IsZero() {
			v.Time = e.Time.UTC().Format(eventTimeFormat)
		}
		if v.Details == nil {
			v.Details = map[string]string{}
		}
		if e.Type == nodeEventType {
			// An agent too old to grade its events reported them as info.
			v.EventType, v.Message = e.Details["kind"], e.Details["message"]
			v.Severity = cmp.Or(e.Details["severity"], "info")
		}
		if p.yaml {
			// One YAML document per event.
			if _, err := io.WriteString(p.w, "---\n"); err != nil {
				return err
			}
			return writeYAML(p.w, v)
		}
		enc := json.NewEncoder(p.w)
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	var b strings.Builder
	if !p.header {
		p.header = true
		p.line(&b, "TIME (UTC)", "SERVICE", "CURSOR", "TYPE", "NODE", "DETAILS")
	}
	t := "-"
	if !e.Time.IsZero() {
		t = e.Time.UTC().Format("2006-01-02 15:04:05.000")
	}
	p.line(&b, t, string(e.Service), strconv.FormatInt(e.Cursor, 10), e.Type, dash(e.NodeID), formatDetails(e.Details))
	_, err := io.WriteString(p.w, b.String())
	return err
}

func (p *eventPrinter) line(b *strings.Builder, t, service, cursor, typ, node, details string) {
	l := fmt.Sprintf("%-23s  %-*s  %*s  %-*s  %-*s  %s", t, widthService, service, widthCursor, cursor,
		widthType, typ, widthNode, node, details)
	b.WriteString(strings.TrimRight(l, " "))
	b.WriteByte('\n')
}

// formatDetails renders details sorted by key as k=v separated by spaces,
// quoting values that would not read as one word.
func formatDetails(d map[string]string) string {
	parts := make([]string, 0, len(d))
	for _, k := range slices.Sorted(maps.Keys(d)) {
		v := d[k]
		if v == "" || strings.ContainsFunc(v, func(r rune) bool {
			return r <= ' ' || r == '"' || r == '=' || r == 0x7f || !strconv.IsPrint(r)
		}) {
			v = strconv.Quote(v)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}
