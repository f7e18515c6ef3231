package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// scrape is one read of /metrics.
type scrape struct {
	raw      []byte
	families map[string]*dto.MetricFamily
}

func scrapeMetrics(t *testing.T, addr string) scrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("/metrics is not the text format: %v", err)
	}
	return scrape{raw: raw, families: fams}
}

// value is the first sample of family name whose labels include want; ok
// is false when there is none.
func (s scrape) value(name string, want map[string]string) (float64, bool) {
	f := s.families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// waitMetrics scrapes until every condition holds, for a generous minute.
func waitMetrics(t *testing.T, addr string, conds map[string]func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s := scrapeMetrics(t, addr)
		var failing []string
		for name, ok := range conds {
			if !ok(s) {
				failing = append(failing, name)
			}
		}
		if len(failing) == 0 {
			return s
		}
		if time.Now().After(deadline) {
			sort.Strings(failing)
			t.Fatalf("after a minute /metrics still lacks: %s\n%s", strings.Join(failing, "; "), berthLines(s.raw))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func berthLines(raw []byte) string {
	var out []string
	for l := range strings.SplitSeq(string(raw), "\n") {
		if strings.HasPrefix(l, "berth_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// is says a sample equals want.
func is(name string, labels map[string]string, want float64) func(scrape) bool {
	return func(s scrape) bool { v, ok := s.value(name, labels); return ok && v == want }
}

// TestBerthMetrics drives a process serving every role through what its
// metrics count and checks that /metrics says so: a registration approved
// with its certificate, a refused resume, a bundle fetched that does not
// exist, a connected heartbeat stream and its node's health, nodes by
// status and identity source, the event logs' heads and an open watch;
// then promtool checks the scrape.
func TestBerthMetrics(t *testing.T) {
	l := newPKI(t, "")
	metricsAddr := freeAddr(t)
	p := start(t, Config{Role: RoleAll, PKIDir: l.Dir, DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		MetricsListen: metricsAddr, GaugePeriod: 20 * time.Millisecond})
	ctx := context.Background()
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{layout: l, addrs: map[string]string{RoleRegistration: p.addr, RoleBundles: p.addr, RoleHeartbeat: p.addr}}
	admin := d.dial(t, RoleRegistration, adminCert)
	waitHealth(t, admin, "", serving)
	tok, err := berthv1.NewNodeAdminServiceClient(admin).CreateToken(ctx, &berthv1.CreateTokenRequest{TtlSeconds: 600, Uses: 1, AutoApprove: true})
	if err != nil {
		t.Fatal(err)
	}
	id := registerWith(t, d, tok.GetSecretToken())

	// A key berth does not know resumes: not found.
	self, err := mtls.SelfSigned(grpctest.NewKey(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = berthv1.NewRegistrationServiceClient(d.dial(t, RoleRegistration, self)).Resume(ctx, &berthv1.ResumeRequest{})
	grpctest.WantCode(t, err, codes.NotFound)

	node := nodeCert(t, l, id)
	_, err = berthv1.NewBundleServiceClient(d.dial(t, RoleBundles, node)).GetBundle(ctx, &berthv1.GetBundleRequest{})
	grpctest.WantCode(t, err, codes.NotFound)

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	hb, err := berthv1.NewHeartbeatServiceClient(d.dial(t, RoleHeartbeat, node)).Heartbeat(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hb.Recv(); err != nil { // the interval: the stream is connected
		t.Fatal(err)
	}
	if err := hb.Send(&berthv1.HeartbeatRequest{BootId: "boot-1", Sequence: 1, Status: berthv1.ReportedStatus_REPORTED_STATUS_UP}); err != nil {
		t.Fatal(err)
	}
	watch, err := berthv1.NewNodeAdminServiceClient(admin).WatchNodeEvents(sctx, &berthv1.WatchNodeEventsRequest{Filter: &berthv1.LifecycleFilter{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}

	s := waitMetrics(t, metricsAddr, map[string]func(scrape) bool{
		"a certificate issued at registration": is(metrics.CertificatesIssued, map[string]string{"reason": "register"}, 1),
		"an approved registration":             is(metrics.Registrations, map[string]string{"result": "approved"}, 1),
		"an unknown key's resume":              is(metrics.Resumes, map[string]string{"method": "resume", "result": "not_found"}, 1),
		"an approved seed-file node":           is(metrics.Nodes, map[string]string{"status": "approved", "identity_source": "seed-file"}, 1),
		"a bundle fetch not found":             is(metrics.BundleFetches, map[string]string{"by": "node", "result": "not_found"}, 1),
		"a heartbeat stream":                   is(metrics.HeartbeatStreams, nil, 1),
		// Counted once, healthy once its beat is recorded (until then a
		// node never heard from counts as unreachable).
		"one healthy node": func(s scrape) bool {
			var sum float64
			for _, st := range []string{"healthy", "suspect", "unreachable"} {
				v, _ := s.value(metrics.NodeHealth, map[string]string{"state": st})
				sum += v
			}
			healthy, _ := s.value(metrics.NodeHealth, map[string]string{"state": "healthy"})
			return sum == 1 && healthy == 1
		},
		"an open registration watch": is(metrics.EventWatchers, map[string]string{"service": "registration"}, 1),
		"the registration log's head": func(s scrape) bool {
			v, ok := s.value(metrics.EventLogHead, map[string]string{"service": "registration"})
			return ok && v >= 2 // registered (approved by its token), certificate_issued
		},
		"the build": func(s scrape) bool {
			v, ok := s.value(metrics.BuildInfo, nil)
			return ok && v == 1
		},
		// The watch has been sent everything: no lag, once the gauges are
		// refreshed after it caught up (a refresh between its opening and
		// its first send counts the whole log as its lag).
		"no lag of the registration watch": is(metrics.EventWatcherLag, map[string]string{"service": "registration"}, 0),
	})
	checkWithPromtool(t, s.raw)
	for _, store := range []string{"registration", "bundles", "heartbeat"} {
		if v, ok := s.value(metrics.GaugeRefreshFailures, map[string]string{"store": store}); !ok || v != 0 {
			t.Errorf("refreshes of the %s gauges failed %v times (%v)", store, v, ok)
		}
	}
	checkDashboard(t, s)

	// The stream ends: the gauge follows.
	stop()
	waitMetrics(t, metricsAddr, map[string]func(scrape) bool{
		"no heartbeat stream": is(metrics.HeartbeatStreams, nil, 0),
		"no open watch":       is(metrics.EventWatchers, map[string]string{"service": "registration"}, 0),
	})
}

// checkDashboard checks that every metric the Grafana dashboard queries is
// in the scrape: a renamed metric breaks the test, not the dashboard.
func checkDashboard(t *testing.T, s scrape) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "berth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("deploy/grafana/berth.json: %v", err)
	}
	series := map[string]bool{}
	for name, f := range s.families {
		series[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				series[name+suffix] = true
			}
		}
	}
	n := 0
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := promQLMetrics(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: no metric in %q", p.Title, tg.Expr)
			}
			for _, m := range names {
				n++
				if !series[m] {
					t.Errorf("panel %q queries %s, which the scrape does not have", p.Title, m)
				}
			}
		}
	}
	if len(d.Panels) < 10 || n < 10 {
		t.Errorf("the dashboard has %d panels querying %d metrics; want berth's", len(d.Panels), n)
	}
}

var (
	promQLGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promQLRange    = regexp.MustCompile(`\[[^\]]*\]|\{[^}]*\}|"[^"]*"`)
	promQLIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
)

// promQLMetrics returns the metric names of a PromQL expression: its
// identifiers that are not functions, aggregations' labels, selectors or
// keywords.
func promQLMetrics(expr string) []string {
	e := promQLRange.ReplaceAllString(promQLGrouping.ReplaceAllString(expr, " "), " ")
	var out []string
	for _, m := range promQLIdent.FindAllString(e, -1) {
		if strings.HasSuffix(m, "(") || m == "and" || m == "or" || m == "unless" || m == "offset" {
			continue
		}
		out = append(out, m)
	}
	return out
}
