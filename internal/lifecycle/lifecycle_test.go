package lifecycle

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/eventlog"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestParseFilter(t *testing.T) {
	f := &Feed{cfg: Config{Service: "registration", Types: []string{"registered", "deleted"}}}
	many := make([]string, MaxWatchNodes+1)
	for i := range many {
		many[i] = fmt.Sprintf("n%d", i)
	}
	tests := []struct {
		name      string
		filter    *berthv1.LifecycleFilter
		wantField string
	}{
		{"nil filter", nil, ""},
		{"good", &berthv1.LifecycleFilter{AfterCursor: 7, NodeIds: []string{"abc"}, Types: []string{"deleted"}}, ""},
		{"negative cursor", &berthv1.LifecycleFilter{AfterCursor: -1}, "filter.after_cursor"},
		{"cursor with from_now", &berthv1.LifecycleFilter{AfterCursor: 3, FromNow: true}, "filter.after_cursor"},
		{"too many nodes", &berthv1.LifecycleFilter{NodeIds: many}, "filter.node_ids"},
		{"bad node ID", &berthv1.LifecycleFilter{NodeIds: []string{"../x"}}, "filter.node_ids"},
		{"another service's type", &berthv1.LifecycleFilter{Types: []string{"bundle_reset"}}, "filter.types"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := f.parse(tt.filter)
			var fe *FilterError
			switch {
			case tt.wantField == "" && err != nil:
				t.Fatalf("parse: %v", err)
			case tt.wantField != "" && (!errors.As(err, &fe) || fe.Field != tt.wantField):
				t.Fatalf("parse: %v, want a FilterError on %s", err, tt.wantField)
			case tt.wantField == "" && w.After != tt.filter.GetAfterCursor():
				t.Fatalf("After = %d", w.After)
			}
		})
	}
}

func TestGRPCError(t *testing.T) {
	f := &Feed{cfg: Config{Service: "bundles"}}
	broken := status.Error(codes.Canceled, "stream gone")
	tests := []struct {
		name     string
		err      error
		wantOK   bool
		wantCode codes.Code
		wantMsg  string
	}{
		{"bad filter", &FilterError{Field: "filter.types", Rule: "must be known"}, true, codes.InvalidArgument, "filter.types: must be known"},
		{"stale cursor", fmt.Errorf("watch: %w", &eventlog.CursorError{Cursor: 2, Oldest: 9}), true, codes.OutOfRange, "the oldest cursor available is 9"},
		{"cursor ahead", &eventlog.CursorError{Cursor: 99, Ahead: true, Newest: 15}, true, codes.OutOfRange, "whose newest cursor is 15"},
		{"shutting down", eventlog.ErrClosed, true, codes.Unavailable, "bundles service is shutting down"},
		{"broken stream", &SendError{Err: broken}, true, codes.Canceled, "stream gone"},
		{"store failure", errors.New("disk full"), false, codes.Unknown, "disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := f.GRPCError(tt.err)
			if ok != tt.wantOK || status.Code(out) != tt.wantCode || !strings.Contains(status.Convert(out).Message(), tt.wantMsg) {
				t.Fatalf("GRPCError = %v, %v; want ok %v, %v containing %q", out, ok, tt.wantOK, tt.wantCode, tt.wantMsg)
			}
		})
	}
}
