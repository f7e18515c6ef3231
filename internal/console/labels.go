package console

import (
	"context"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// label sets labels ("k=v, k2=v2" in the set field) and removes those
// named by remove fields, in one LabelNode call; the service checks keys
// and values and says what is wrong.
func (s *Console) label(ctx context.Context, r *http.Request) (string, error) {
	set := map[string]string{}
	for _, kv := range strings.FieldsFunc(r.PostFormValue("set"), func(c rune) bool { return c == ',' || c == '\n' }) {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return "", status.Errorf(codes.InvalidArgument, "label %q is not key=value", kv)
		}
		set[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	remove := r.PostForm["remove"]
	if len(set) == 0 && len(remove) == 0 {
		return "", status.Error(codes.InvalidArgument, "give labels to set as key=value, or one to remove")
	}
	_, err := s.api.nodes.LabelNode(ctx, &berthv1.LabelNodeRequest{Id: r.PathValue("id"), Set: set, Remove: remove})
	return "labels", err
}
