package console

import (
	"net/http/httptest"
	"net/url"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestFleetFilter: the Fleet page's query, good and bad; a bad one is
// InvalidArgument saying what is wrong, never a silent default.
func TestFleetFilter(t *testing.T) {
	for _, tc := range []struct {
		query   string
		wantErr string
		check   func(fleetFilter) bool
	}{
		{"", "", func(f fleetFilter) bool { return f.Size == defaultPageSize && f.status() == 0 && f.health() == 0 }},
		{"status=pending&health=suspect&size=500", "", func(f fleetFilter) bool {
			return f.status() == berthv1.NodeStatus_NODE_STATUS_PENDING && f.health() == berthv1.LivenessState_LIVENESS_STATE_SUSPECT && f.Size == 500
		}},
		{"label=rack%3Dr1,role%3Ddb", "", func(f fleetFilter) bool {
			l, _ := f.labels()
			return len(l) == 2 && l["rack"] == "r1" && l["role"] == "db"
		}},
		{"status=lost", `status "lost" is not one of pending, approved, rejected, revoked`, nil},
		{"health=dead", `health "dead" is not one of healthy, suspect, unreachable`, nil},
		{"size=0", "size must be a number from 1 to 500", nil},
		{"size=501", "size must be a number from 1 to 500", nil},
		{"size=ten", "size must be a number from 1 to 500", nil},
		{"label=rack", `label filter "rack" is not key=value[,key=value]`, nil},
		{"label=%3Dr1", `label filter "=r1" is not key=value[,key=value]`, nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			f, err := parseFleetFilter(q)
			if tc.wantErr != "" {
				if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != tc.wantErr {
					t.Fatalf("err = %v, want InvalidArgument %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(f) {
				t.Fatalf("filter %+v, %v", f, err)
			}
		})
	}
}

// TestStreamFilter: the live stream's query, cursors from the query or
// the browser's Last-Event-ID, and which logs it opens.
func TestStreamFilter(t *testing.T) {
	r := httptest.NewRequest("GET", "/ui/stream?type=approved&node=n1&after=node:7,health:9,bogus:1,bundle:-2", nil)
	f, logs, err := streamFilter(r)
	if err != nil || f.Node != "n1" || len(logs) != 1 || logs[0] != logNode || len(f.After) != 2 || f.After[logNode] != 7 || f.After[logHealth] != 9 {
		t.Fatalf("filter %+v logs %v err %v", f, logs, err)
	}
	r = httptest.NewRequest("GET", "/ui/stream?logs=node,health&after=node:1", nil)
	r.Header.Set("Last-Event-ID", "node:12,health:3")
	f, logs, err = streamFilter(r)
	if err != nil || len(logs) != 2 || f.After[logNode] != 12 || f.After[logHealth] != 3 {
		t.Fatalf("reconnect: filter %+v logs %v err %v", f, logs, err)
	}
	if got := cursorsParam(f.After); got != "node:12,health:3" {
		t.Errorf("cursors render as %q", got)
	}
	_, _, err = streamFilter(httptest.NewRequest("GET", "/ui/stream?type=exploded", nil))
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != `type "exploded" is not an event type berth records` {
		t.Errorf("unknown type: %v", err)
	}
}

// TestLogOf: the Events filter knows every type the services send, the
// administrators' events of no node included, and which log holds it.
func TestLogOf(t *testing.T) {
	for _, tt := range []struct{ typ, log string }{
		{"registered", logNode},
		{"pcr_policy_deleted", logNode},
		{"sign_in_link_created", logNode},
		{"healthy", logHealth},
		{"settings_changed", logHealth},
		{"bundle_updated", logBundle},
		{"bundle_settings_changed", logBundle},
		{"no_such_type", ""},
	} {
		if got := logOf(tt.typ); got != tt.log {
			t.Errorf("logOf(%q) = %q, want %q", tt.typ, got, tt.log)
		}
	}
}
