// Package metrics is berth's own Prometheus metrics: what berth does, in
// its terms (certificates issued, registrations and resumes by result,
// nodes by status and health, heartbeat streams, bundles, event logs),
// beside the gRPC and Go runtime metrics. Every name is defined here, so
// that the dashboard (deploy/grafana) and its test have one list. A nil
// *Metrics records nothing: services built without it (tests) need no
// registry.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/buildinfo"
)

// Names of berth's metrics.
const (
	BuildInfo            = "berth_build_info"
	CertificatesIssued   = "berth_certificates_issued_total"
	Registrations        = "berth_registrations_total"
	Resumes              = "berth_resumes_total"
	Nodes                = "berth_nodes"
	NodeHealth           = "berth_node_health"
	HeartbeatStreams     = "berth_heartbeat_streams"
	BundlePuts           = "berth_bundle_puts_total"
	BundleFetches        = "berth_bundle_fetches_total"
	EventLogHead         = "berth_event_log_head_cursor"
	EventWatchers        = "berth_event_watchers"
	EventWatcherLag      = "berth_event_watcher_lag_events"
	GaugesRefreshed      = "berth_gauges_refreshed_timestamp_seconds"
	GaugeRefreshFailures = "berth_gauge_refresh_failures_total"
)

// Results of a registration, a resume or a bundle call.
const (
	ResultApproved = "approved"
	ResultPending  = "pending"
	// ResultChallenge is a TPM challenge answered instead of credentials:
	// credential activation at Register, a boot quote at Resume.
	ResultChallenge = "tpm_challenge"
	ResultOK        = "ok"
	ResultRenewed   = "renewed"
	ResultRefused   = "refused"
	ResultError     = "error"
	ResultNotFound  = "not_found"
)

// Metrics holds one process's berth metrics.
type Metrics struct {
	certs         *prometheus.CounterVec
	registrations *prometheus.CounterVec
	resumes       *prometheus.CounterVec
	nodes         *prometheus.GaugeVec
	health        *prometheus.GaugeVec
	streams       prometheus.Gauge
	puts          *prometheus.CounterVec
	fetches       *prometheus.CounterVec
	head          *prometheus.GaugeVec
	watchers      *prometheus.GaugeVec
	lag           *prometheus.GaugeVec
	refreshed     *prometheus.GaugeVec
	refreshFailed *prometheus.CounterVec

	mu    sync.Mutex
	sets  map[string]*WatcherSet // by service
	heads map[string]int64
}

// New makes the metrics and registers them, with berth_build_info, on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		certs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: CertificatesIssued,
			Help: "Node certificates issued and installed, by reason: register (a node's first) or renew."}, []string{"reason"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: Registrations,
			Help: "Register calls by result: approved, pending, tpm_challenge, refused (the caller's doing: bad token, request or key), not_found or error (berth's or a dependency's)."}, []string{"result"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: Resumes,
			Help: "Resume (at boot) and Renew (running) calls by result: ok, renewed (a new certificate), tpm_challenge (a boot quote asked for), not_found (a key berth does not know), refused (a node not approved, revoked...) or error."}, []string{"method", "result"}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: Nodes,
			Help: "Registered nodes by status and identity source, as of the last refresh."}, []string{"status", "identity_source"}),
		health: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NodeHealth,
			Help: "Nodes that ever sent a heartbeat, by liveness state (healthy, suspect, unreachable), as of the last refresh."}, []string{"state"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: HeartbeatStreams,
			Help: "Heartbeat streams connected to this process."}),
		puts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: BundlePuts,
			Help: "Bundle uploads by who put them (admin or node) and result."}, []string{"by", "result"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: BundleFetches,
			Help: "Sealed bundles served, by who asked (node, or registration inline in Resume, or admin) and result."}, []string{"by", "result"}),
		head: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: EventLogHead,
			Help: "Cursor of the newest event of each service's event log, as of the last refresh."}, []string{"service"}),
		watchers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: EventWatchers,
			Help: "Watches of each service's event log open in this process."}, []string{"service"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: EventWatcherLag,
			Help: "Events the slowest open watch of each service's log has yet to read, as of the last refresh."}, []string{"service"}),
		refreshed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: GaugesRefreshed,
			Help: "When the gauges read from each store were last refreshed (Unix seconds)."}, []string{"store"}),
		refreshFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: GaugeRefreshFailures,
			Help: "Refreshes of the gauges read from each store that failed (the store was unavailable)."}, []string{"store"}),
		sets:  map[string]*WatcherSet{},
		heads: map[string]int64{},
	}
	// The usual series exist from the start, at 0, so that rates and the
	// dashboard have them before the first event.
	for _, r := range []string{"register", "renew"} {
		m.certs.WithLabelValues(r)
	}
	for _, r := range []string{ResultApproved, ResultPending} {
		m.registrations.WithLabelValues(r)
	}
	for _, method := range []string{"resume", "renew"} {
		m.resumes.WithLabelValues(method, ResultOK)
		m.resumes.WithLabelValues(method, ResultRenewed)
	}
	for _, by := range []string{"admin", "node"} {
		m.puts.WithLabelValues(by, ResultOK)
	}
	for _, by := range []string{"node", "registration"} {
		m.fetches.WithLabelValues(by, ResultOK)
	}
	bi := buildinfo.Get()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: BuildInfo,
		Help: "The running build of berth: always 1, labelled with version, commit and Go version."}, []string{"version", "commit", "go_version"})
	build.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	for _, c := range []prometheus.Collector{m.certs, m.registrations, m.resumes, m.nodes, m.health, m.streams,
		m.puts, m.fetches, m.head, m.watchers, m.lag, m.refreshed, m.refreshFailed, build} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// CertificateIssued counts a certificate installed for a node.
func (m *Metrics) CertificateIssued(reason string) {
	if m != nil {
		m.certs.WithLabelValues(reason).Inc()
	}
}

// Registration counts a Register call by its result.
func (m *Metrics) Registration(result string) {
	if m != nil {
		m.registrations.WithLabelValues(result).Inc()
	}
}

// Resume counts a Resume or Renew call (method "resume" or "renew").
func (m *Metrics) Resume(method, result string) {
	if m != nil {
		m.resumes.WithLabelValues(method, result).Inc()
	}
}

// StreamOpened and StreamClosed track connected heartbeat streams.
func (m *Metrics) StreamOpened() {
	if m != nil {
		m.streams.Inc()
	}
}

// StreamClosed is StreamOpened's pair.
func (m *Metrics) StreamClosed() {
	if m != nil {
		m.streams.Dec()
	}
}

// BundlePut counts a bundle upload.
func (m *Metrics) BundlePut(by, result string) {
	if m != nil {
		m.puts.WithLabelValues(by, result).Inc()
	}
}

// BundleFetch counts a sealed bundle served (or not).
func (m *Metrics) BundleFetch(by, result string) {
	if m != nil {
		m.fetches.WithLabelValues(by, result).Inc()
	}
}

// NodeCount is one cell of the nodes gauge.
type NodeCount struct {
	Status, IdentitySource string
	N                      int64
}

// SetNodes replaces the nodes gauge with a fresh count.
func (m *Metrics) SetNodes(counts []NodeCount) {
	if m == nil {
		return
	}
	m.nodes.Reset()
	for _, c := range counts {
		src := c.IdentitySource
		if src == "" {
			src = "unknown"
		}
		m.nodes.WithLabelValues(c.Status, src).Add(float64(c.N))
	}
}

// SetHealth replaces the node health gauge with a fresh count by state.
func (m *Metrics) SetHealth(byState map[string]int64) {
	if m == nil {
		return
	}
	m.health.Reset()
	for s, n := range byState {
		m.health.WithLabelValues(s).Set(float64(n))
	}
}

// SetHead records the newest cursor of a service's event log, and with it
// the lag of that service's watches.
func (m *Metrics) SetHead(service string, head int64) {
	if m == nil {
		return
	}
	m.head.WithLabelValues(service).Set(float64(head))
	m.mu.Lock()
	set := m.sets[service]
	m.mu.Unlock()
	n, lag := set.Stats(head)
	m.watchers.WithLabelValues(service).Set(float64(n))
	m.lag.WithLabelValues(service).Set(float64(lag))
}

// Refreshed records a refresh of the gauges read from store, or its failure.
func (m *Metrics) Refreshed(store string, unixSeconds float64, err error) {
	if m == nil {
		return
	}
	failed := m.refreshFailed.WithLabelValues(store)
	if err != nil {
		failed.Inc()
		return
	}
	m.refreshed.WithLabelValues(store).Set(unixSeconds)
}

// Watchers returns the set of open watches of service's event log, for its
// follower to keep; nil (a set that records nothing) without metrics.
func (m *Metrics) Watchers(service string) *WatcherSet {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sets[service] == nil {
		m.sets[service] = &WatcherSet{pos: map[*int64]struct{}{}}
	}
	return m.sets[service]
}

// Result is the result label of a call that answered err: ok, not_found,
// error (berth's or a dependency's failure) or refused (the caller's: a
// bad request, signature, version or credential).
func Result(err error) string {
	switch status.Code(err) {
	case codes.OK:
		return ResultOK
	case codes.NotFound:
		return ResultNotFound
	case codes.Internal, codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.Aborted, codes.Canceled, codes.DataLoss:
		return ResultError
	}
	return ResultRefused
}
