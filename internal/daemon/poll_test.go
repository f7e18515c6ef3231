package daemon

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"testing"

	"github.com/berth-dev/berth/client/watch"
)

// poll is one long poll of /v1/events.
func poll(t *testing.T, c *restClient, query string) (int, map[string]any) {
	t.Helper()
	return c.do(t, "GET", "/v1/events?"+query, "")
}

func pollEvents(t testing.TB, body map[string]any) []map[string]any {
	t.Helper()
	raw, _ := body["events"].([]any)
	var out []map[string]any
	for _, e := range raw {
		out = append(out, e.(map[string]any))
	}
	return out
}

// TestEventsLongPoll: GET /v1/events?wait=D answers at once with the
// events after its cursor, of every service, with one cursor for the next
// poll; a poll with nothing new waits until an event comes (the approval
// made meanwhile); bad waits and cursors are 400.
func TestEventsLongPoll(t *testing.T) {
	l := newPKI(t, "")
	addr := serve(t, Config{Role: RoleAll, PKIDir: l.Dir})
	adminCert, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	admin := newRESTClient(t, l, addr, adminCert)
	id := registerPending(t, l, addr, admin)

	code, body := poll(t, admin, "wait=30s")
	events := pollEvents(t, body)
	// The token the registration used, created by the admin, then the node.
	if code != http.StatusOK || len(events) < 2 || events[0]["type"] != "token_created" || events[0]["node_id"] != "" ||
		events[1]["type"] != "registered" || events[1]["node_id"] != id || events[1]["service"] != "registration" {
		t.Fatalf("first poll: %d %v, want the token's creation and the registration of %s", code, body, id)
	}
	cursor, _ := body["cursor"].(string)
	cs, err := watch.ParseCursors(cursor)
	if err != nil || cs[watch.Registration] < 1 {
		t.Fatalf("first poll's cursor %q: %v, want one with the registration log's position", cursor, err)
	}

	// Nothing new after the cursor: the poll waits for the approval.
	type answer struct {
		code int
		body map[string]any
	}
	got := make(chan answer, 1)
	go func() {
		code, body := poll(t, admin, "wait=60s&after="+url.QueryEscape(cursor))
		got <- answer{code, body}
	}()
	if code, body := admin.do(t, "POST", "/v1/nodes/"+id+":approve", ""); code != http.StatusOK {
		t.Fatalf("approve: %d %v", code, body)
	}
	a := <-got
	events = pollEvents(t, a.body)
	if a.code != http.StatusOK || len(events) == 0 || events[0]["type"] != "approved" || events[0]["node_id"] != id {
		t.Fatalf("waiting poll: %d %v, want the approval of %s", a.code, a.body, id)
	}
	if d, _ := events[0]["details"].(map[string]any); d["actor"] != "admin:admin" {
		t.Errorf("the approval is by %v, want admin:admin", d["actor"])
	}
	if next, _ := a.body["cursor"].(string); next == cursor {
		t.Errorf("the cursor did not move: %q", next)
	}

	// Filters: only approvals, of the registration service, from its start.
	code, body = poll(t, admin, "wait=10s&service=registration&type=approved&after=registration=0")
	events = pollEvents(t, body)
	if code != http.StatusOK || len(events) != 1 || events[0]["type"] != "approved" {
		t.Errorf("filtered poll: %d %v, want the one approval", code, body)
	}

	for _, bad := range []struct{ query, msg string }{
		{"wait=2h", "wait must be a duration from 1s to 60s"},
		{"wait=0", "wait must be a duration from 1s to 60s"},
		{"wait=soon", "wait must be a duration from 1s to 60s"},
		{"wait=5s&after=registration", "after must be service=cursor pairs"},
		{"wait=5s&after=-1", "after must be service=cursor pairs"},
		{"wait=5s&type=exploded", "unknown event type"},
	} {
		code, body := poll(t, admin, bad.query)
		wantStatus(t, "poll "+bad.query, code, body, http.StatusBadRequest, 3, bad.msg)
	}
	// A cursor ahead of the log: OutOfRange, as the stream answers it.
	code, body = poll(t, admin, "wait=5s&service=registration&after=registration=999999")
	wantStatus(t, "poll after a cursor ahead", code, body, http.StatusBadRequest, 11, "ahead of the event log")
	// A node may not read the events: 403, and no credentials at all 401.
	code, body = poll(t, newRESTClient(t, l, addr, nodeCert(t, l, id)), "wait=5s")
	wantStatus(t, "a node's poll", code, body, http.StatusForbidden, 7, "")
	code, body = poll(t, newRESTClient(t, l, addr, tls.Certificate{}), "wait=5s")
	wantStatus(t, "a poll without credentials", code, body, http.StatusUnauthorized, 16, "")
}
