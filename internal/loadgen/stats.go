package loadgen

import (
	"context"
	"errors"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/agent"
)

// latencies summarises durations.
type latencies struct {
	P50, P90, P99, Max float64 // milliseconds
}

func summarize(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	// Nearest rank: the smallest value with at least p of the samples at
	// or below it.
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return ms(s[min(max(i, 0), len(s)-1)])
	}
	return latencies{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 1) }

func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}

// Error classes besides the gRPC codes.
const (
	classPending   = "Pending"   // still pending approval after --wait
	classUntrusted = "Untrusted" // a server failed CA pinning or verification
	classConfig    = "Config"    // the agent refused its configuration
	classUnknown   = "Unknown"
)

// codeNames maps "Unavailable" and the like back to their codes.
var codeNames = func() map[string]codes.Code {
	m := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[c.String()] = c
	}
	return m
}()

// trailingCode matches the "(Code)" the agent ends an RPC's error with.
var trailingCode = regexp.MustCompile(`\(([A-Za-z]+)\)\s*$`)

// errorClass names what went wrong: the gRPC code of the failed call where
// there is one, else one of the classes above.
func errorClass(err error) string {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown && st.Code() != codes.OK {
		return st.Code().String()
	}
	switch {
	case errors.Is(err, agent.ErrDenied):
		return codes.PermissionDenied.String()
	case errors.Is(err, agent.ErrPending):
		return classPending
	case errors.Is(err, agent.ErrUntrusted):
		return classUntrusted
	case errors.Is(err, agent.ErrConfig):
		return classConfig
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded.String()
	case errors.Is(err, context.Canceled):
		return codes.Canceled.String()
	}
	msg := err.Error()
	if m := trailingCode.FindStringSubmatch(msg); m != nil {
		if _, ok := codeNames[m[1]]; ok {
			return m[1]
		}
	}
	// Gave up on a server that did not answer within --wait.
	if strings.Contains(msg, "unreachable for") || strings.Contains(msg, "connect to ") {
		return codes.Unavailable.String()
	}
	return classUnknown
}

// tally counts errors by class and keeps one message of each, so that a
// report says what the errors were.
type tally struct {
	mu      sync.Mutex
	counts  map[string]int
	samples map[string]string
}

func newTally() *tally { return &tally{counts: map[string]int{}, samples: map[string]string{}} }

func (t *tally) add(err error) { t.addClass(errorClass(err), err) }

// addClass counts err as class, for errors other than the boots' (the
// HTTP statuses of step-ca).
func (t *tally) addClass(class string, err error) {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts[class]++
	if _, ok := t.samples[class]; !ok {
		t.samples[class] = msg
	}
}

func (t *tally) total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.counts {
		n += c
	}
	return n
}

func (t *tally) snapshot() (map[string]int, map[string]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	samples := maps.Clone(t.samples)
	if len(samples) == 0 {
		samples = nil
	}
	return maps.Clone(t.counts), samples
}

// counter counts strings, for the outcomes of the boots.
type counter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counter) add(k string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
	c.mu.Unlock()
}

func (c *counter) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}
