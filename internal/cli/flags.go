package cli

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// labelFlag collects repeated --label k=v flags.
type labelFlag map[string]string

func (l labelFlag) String() string { return formatLabels(l) }

// Type names the value in help and completion.
func (l labelFlag) Type() string { return "value" }

func (l labelFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return errors.New("want k=v")
	}
	if _, dup := l[k]; dup {
		return fmt.Errorf("label %q given twice", k)
	}
	l[k] = val
	return nil
}

// formatLabels renders labels sorted by key, as k=v,k=v.
func formatLabels(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

// statusName is a node status as the JSON contract names it.
func statusName(s berthv1.NodeStatus) string {
	switch s {
	case berthv1.NodeStatus_NODE_STATUS_PENDING:
		return "pending"
	case berthv1.NodeStatus_NODE_STATUS_APPROVED:
		return "approved"
	case berthv1.NodeStatus_NODE_STATUS_REJECTED:
		return "rejected"
	case berthv1.NodeStatus_NODE_STATUS_REVOKED:
		return "revoked"
	}
	return "unknown"
}

// statusFlag is --status pending|approved|rejected|revoked.
type statusFlag struct{ status berthv1.NodeStatus }

func (f *statusFlag) String() string {
	if f == nil || f.status == berthv1.NodeStatus_NODE_STATUS_UNSPECIFIED {
		return ""
	}
	return statusName(f.status)
}

// Type names the value in help and completion.
func (f *statusFlag) Type() string { return "value" }

func (f *statusFlag) Set(v string) error {
	for _, s := range []berthv1.NodeStatus{
		berthv1.NodeStatus_NODE_STATUS_PENDING,
		berthv1.NodeStatus_NODE_STATUS_APPROVED,
		berthv1.NodeStatus_NODE_STATUS_REJECTED,
		berthv1.NodeStatus_NODE_STATUS_REVOKED,
	} {
		if statusName(s) == v {
			f.status = s
			return nil
		}
	}
	return errors.New("want pending, approved, rejected or revoked")
}

// ttlFlag is a Go duration of at least a second, sent as whole seconds.
type ttlFlag struct{ d time.Duration }

func (f *ttlFlag) String() string {
	if f == nil {
		return ""
	}
	return shortGoDuration(f.d)
}

// shortGoDuration drops zero minutes and seconds: 24h rather than 24h0m0s.
func shortGoDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Type names the value in help and completion.
func (f *ttlFlag) Type() string { return "value" }

func (f *ttlFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		return errors.New("want a Go duration of at least 1s, such as 24h, 90m or 1h30m")
	}
	f.d = d
	return nil
}

// seconds rounds the TTL up to whole seconds, so a token never lives
// shorter than asked.
func (f *ttlFlag) seconds() int64 {
	return int64((f.d + time.Second - 1) / time.Second)
}
