package gateway

import (
	"net/url"
	"testing"
)

func TestExpandQuery(t *testing.T) {
	tests := []struct {
		path, in, want string
	}{
		{"/v1/nodes", "status=pending", "status=NODE_STATUS_PENDING"},
		{"/v1/nodes", "status=NODE_STATUS_REVOKED", "status=NODE_STATUS_REVOKED"},
		{"/v1/nodes", "status=2", "status=2"},
		{"/v1/nodes", "status=sleeping", "status=sleeping"},
		{"/v1/nodes", "page_size=5", "page_size=5"},
		{"/v1/events", "after=42&type=approved", "filter.after_cursor=42&filter.types=approved"},
		{"/v1/health-events", "after=7&type=rebooted", "after_cursor=7&types=HEALTH_EVENT_TYPE_REBOOTED"},
		{"/v1/health", "state=suspect", "state=LIVENESS_STATE_SUSPECT"},
	}
	for _, tt := range tests {
		in, err := url.ParseQuery(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := expandQuery(queryMessages[tt.path], in).Encode(); got != tt.want {
			t.Errorf("%s?%s = %s, want %s", tt.path, tt.in, got, tt.want)
		}
	}
}
