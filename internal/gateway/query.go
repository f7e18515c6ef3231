package gateway

import (
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// shortQuery gives people typing URLs two conveniences before the
// gateway parses the query: short enum values (status=pending for
// NODE_STATUS_PENDING) and short names for the watch filters
// (after=CURSOR for filter.after_cursor). It rewrites the query of the
// collection paths below; full names keep working.
func shortQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if md, ok := queryMessages[r.URL.Path]; ok && r.Method == http.MethodGet && r.URL.RawQuery != "" {
			if vals, err := url.ParseQuery(r.URL.RawQuery); err == nil {
				r = r.Clone(r.Context())
				r.URL.RawQuery = expandQuery(md, vals).Encode()
			}
		}
		next.ServeHTTP(w, r)
	})
}

// queryMessages are the request messages of the paths shortQuery rewrites.
var queryMessages = map[string]protoreflect.MessageDescriptor{
	"/v1/nodes":         (&berthv1.ListNodesRequest{}).ProtoReflect().Descriptor(),
	"/v1/health":        (&berthv1.ListNodeHealthRequest{}).ProtoReflect().Descriptor(),
	"/v1/events":        (&berthv1.WatchNodeEventsRequest{}).ProtoReflect().Descriptor(),
	"/v1/bundle-events": (&berthv1.WatchBundleEventsRequest{}).ProtoReflect().Descriptor(),
	"/v1/health-events": (&berthv1.WatchHealthRequest{}).ProtoReflect().Descriptor(),
}

// queryAliases are the short query names of each request message.
var queryAliases = map[protoreflect.FullName]map[string]string{
	"berth.v1.WatchNodeEventsRequest":   lifecycleAliases,
	"berth.v1.WatchBundleEventsRequest": lifecycleAliases,
	"berth.v1.WatchHealthRequest": {
		"after": "after_cursor", "node_id": "node_ids", "type": "types",
	},
}

var lifecycleAliases = map[string]string{
	"after": "filter.after_cursor", "from_now": "filter.from_now",
	"node_id": "filter.node_ids", "type": "filter.types",
}

func expandQuery(md protoreflect.MessageDescriptor, values url.Values) url.Values {
	out := make(url.Values, len(values))
	for key, vals := range values {
		if full, ok := queryAliases[md.FullName()][key]; ok {
			key = full
		}
		if ed := enumAt(md, key); ed != nil {
			vals = shortEnums(ed, vals)
		}
		out[key] = append(out[key], vals...)
	}
	return out
}

// enumAt returns the enum type of the field at a dotted path, or nil.
func enumAt(md protoreflect.MessageDescriptor, path string) protoreflect.EnumDescriptor {
	names := strings.Split(path, ".")
	for i, n := range names {
		fd := md.Fields().ByName(protoreflect.Name(n))
		if fd == nil {
			fd = md.Fields().ByJSONName(n)
		}
		if fd == nil {
			return nil
		}
		if i == len(names)-1 {
			return fd.Enum()
		}
		if md = fd.Message(); md == nil {
			return nil
		}
	}
	return nil
}

// shortEnums expands short enum values: "pending" is NODE_STATUS_PENDING,
// the prefix being the one of the enum's UNSPECIFIED value. Full names
// and numbers pass unchanged; anything else the parser refuses.
func shortEnums(ed protoreflect.EnumDescriptor, vals []string) []string {
	prefix := strings.TrimSuffix(string(ed.Values().ByNumber(0).Name()), "UNSPECIFIED")
	out := make([]string, len(vals))
	for i, v := range vals {
		full := prefix + strings.ToUpper(v)
		if ed.Values().ByName(protoreflect.Name(v)) == nil && ed.Values().ByName(protoreflect.Name(full)) != nil {
			v = full
		}
		out[i] = v
	}
	return out
}
