package console

import (
	"context"
	"net/http"
	"strings"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// setBundleApproval sets the bundle approval policy: "required", "auto"
// or "default"; the service refuses anything else with its own message.
func (s *Console) setBundleApproval(ctx context.Context, r *http.Request) (string, error) {
	_, err := s.api.bundles.SetBundleSettings(ctx, &berthv1.SetBundleSettingsRequest{Approval: strings.TrimSpace(r.PostFormValue("approval"))})
	return "settings", err
}
