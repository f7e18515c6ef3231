package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"
)

// emit prints v as indented JSON or as YAML, or calls table with an
// aligned writer (for table and wide alike; a table that has extra
// columns asks s.wide()).
func (s *session) emit(v any, table func(w io.Writer)) error {
	if s.set.output == formatYAML {
		return writeYAML(s.cfg.Stdout, v)
	}
	if s.json() {
		enc := json.NewEncoder(s.cfg.Stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(s.cfg.Stdout, 0, 8, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// rfc3339 renders a timestamp for JSON: RFC 3339 in UTC, or empty if unset.
func rfc3339(ts *timestamppb.Timestamp) string {
	if !isSet(ts) {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func isSet(ts *timestamppb.Timestamp) bool {
	return ts != nil && (ts.GetSeconds() != 0 || ts.GetNanos() != 0)
}

// humanTime renders a timestamp for a table: absolute UTC time and how far
// it is from now, or "-" if unset.
func humanTime(ts *timestamppb.Timestamp, now time.Time) string {
	if !isSet(ts) {
		return "-"
	}
	t := ts.AsTime()
	return t.UTC().Format("2006-01-02 15:04:05 UTC") + " (" + relative(t, now) + ")"
}

// relTime renders only how far a timestamp is from now, or "-" if unset.
func relTime(ts *timestamppb.Timestamp, now time.Time) string {
	if !isSet(ts) {
		return "-"
	}
	return relative(ts.AsTime(), now)
}

func relative(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d > -time.Second && d < time.Second:
		return "now"
	case d > 0:
		return "in " + shortDuration(d)
	default:
		return shortDuration(-d) + " ago"
	}
}

// shortDuration is a duration rounded down to its largest unit (45s, 12m,
// 5h, 29d), with minutes kept under ten hours (1h30m). Up to two days it
// counts hours, so a 24h token reads "24h".
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 10*time.Hour && d%time.Hour >= time.Minute:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

// dash stands in for an empty table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeYAML prints v as YAML: the same document as -o json, keys in the
// same order, in block style.
func writeYAML(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return err
	}
	blockStyle(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return enc.Close()
}

// blockStyle undoes the flow style and quoting that YAML's parser records
// for JSON input, except where a string needs quotes to stay a string.
func blockStyle(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style = 0
		// Let the encoder quote what would read as another type ("true",
		// "12", "", "2026-01-01").
	} else {
		n.Style &^= yaml.FlowStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}
