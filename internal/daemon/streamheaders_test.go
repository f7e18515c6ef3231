package daemon

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/lifecycle"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestEventStreamsSendHeadersFirst: the REST event streams answer with
// their headers as soon as the watch is in place, before any event, so a
// client that bounds its wait for headers (ResponseHeaderTimeout) does not
// give up on a quiet log. No event is made until every stream has
// answered, so a stream that held its headers back until its first event
// would fail here whatever the machine's speed; the events made then
// still arrive on the open streams. A bad cursor is still an HTTP error.
// Through the front door of a split deployment, gRPC watches get their
// headers before any event too.
func TestEventStreamsSendHeadersFirst(t *testing.T) {
	t.Run("all in one process", func(t *testing.T) {
		l := newPKI(t, "")
		testStreamHeaders(t, l, serve(t, Config{Role: RoleAll, PKIDir: l.Dir}))
	})
	t.Run("split on postgres: gRPC through the front door", func(t *testing.T) {
		cluster := pgtest.NewCluster(t)
		l := newPKI(t, "")
		d := startSplit(t, l, cluster.DSN())
		adminCert, err := l.AdminCertificate()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		nodes, err := berthv1.NewNodeAdminServiceClient(d.dialFront(t, pki.ServiceRegistration, adminCert)).
			WatchNodeEvents(ctx, &berthv1.WatchNodeEventsRequest{Filter: &berthv1.LifecycleFilter{FromNow: true}})
		if err != nil {
			t.Fatal(err)
		}
		health, err := berthv1.NewHeartbeatAdminServiceClient(d.dialFront(t, pki.ServiceHeartbeat, adminCert)).
			WatchHealth(ctx, &berthv1.WatchHealthRequest{FromNow: true})
		if err != nil {
			t.Fatal(err)
		}
		for name, header := range map[string]func() (map[string][]string, error){
			"WatchNodeEvents": func() (map[string][]string, error) { md, err := nodes.Header(); return md, err },
			"WatchHealth":     func() (map[string][]string, error) { md, err := health.Header(); return md, err },
		} {
			md, err := header()
			if err != nil || len(md[lifecycle.StartHeader]) != 1 {
				t.Errorf("%s through the front door: headers %v, %v; want %s before any event", name, md, err, lifecycle.StartHeader)
			}
		}
	})
}

func testStreamHeaders(t *testing.T, l *pki.Layout, addr string) {
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	admin := newRESTClient(t, l, addr, adminCert)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: l.RootPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{adminCert}},
		ForceAttemptHTTP2: true,
		// Shorter than the wait for any event here, which never comes
		// until the headers did.
		ResponseHeaderTimeout: 20 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	open := func(path string) *bufio.Scanner {
		req, err := http.NewRequestWithContext(ctx, "GET", "https://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s on a quiet log: %v", path, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("GET %s: %d %q, want 200 application/json", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return bufio.NewScanner(resp.Body)
	}
	streams := map[string]*bufio.Scanner{
		"registered":                         open("/v1/events?from_now=true&type=registered"),
		"bundle_settings_changed":            open("/v1/bundle-events?from_now=true"),
		"HEALTH_EVENT_TYPE_SETTINGS_CHANGED": open("/v1/health-events?from_now=true"),
	}
	// Now the events, one per log.
	registerPending(t, l, addr, admin)
	if code, body := admin.do(t, "PUT", "/v1/settings/bundles", `{"approval": "required"}`); code != http.StatusOK {
		t.Fatalf("PUT /v1/settings/bundles: %d %v", code, body)
	}
	if code, body := admin.do(t, "PUT", "/v1/settings/heartbeat", `{"interval": "30s"}`); code != http.StatusOK {
		t.Fatalf("PUT /v1/settings/heartbeat: %d %v", code, body)
	}
	for want, sc := range streams {
		if !sc.Scan() {
			t.Fatalf("stream for %s ended: %v", want, sc.Err())
		}
		var line struct {
			Result struct {
				Event struct {
					Type string `json:"type"`
				} `json:"event"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Result.Event.Type != want {
			t.Errorf("first line %q (%v), want a %s event", sc.Text(), err, want)
		}
	}
	// A cursor ahead of the log is refused before the stream starts: an
	// HTTP error status, not a 200 followed by an error line.
	code, body := admin.do(t, "GET", "/v1/events?after=999999", "")
	if st, _ := body["error"].(map[string]any); code != http.StatusBadRequest || st["code"] != float64(11) {
		t.Errorf("a cursor ahead of the log: %d %v, want 400 with the stream's error, OutOfRange", code, body)
	}
}
