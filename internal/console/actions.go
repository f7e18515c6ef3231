package console

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// action performs one state-changing form's call as the principal and
// says which note to show on the page it returns to.
type action func(ctx context.Context, r *http.Request) (done string, err error)

// maxFormBytes bounds a form post.
const maxFormBytes = 16 << 10

// act runs an action and returns the browser to the form's page with a
// note (POST, redirect, GET), or shows the server's error.
func (s *Console) act(a action) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		ctx, cancel := callContext(r)
		defer cancel()
		done, err := a(as(ctx, ss.principal), r)
		if err != nil {
			s.c.Logger.Info("console action failed", "path", r.URL.Path, "principal", ss.principal.Name, "error", err)
			s.fail(w, r, ss, httpStatus(err), errorText(err))
			return
		}
		s.counts.invalidate()
		u := backTo(r) // a console path, checked
		sep := "?"
		if pu, err := url.Parse(u); err == nil && pu.RawQuery != "" {
			sep = "&"
		}
		http.Redirect(w, r, u+sep+"done="+url.QueryEscape(done), http.StatusSeeOther)
	}
}

func (s *Console) approve(ctx context.Context, r *http.Request) (string, error) {
	_, err := s.api.nodes.ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: r.PathValue("id")})
	return "approved", err
}

func (s *Console) reject(ctx context.Context, r *http.Request) (string, error) {
	_, err := s.api.nodes.RejectNode(ctx, &berthv1.RejectNodeRequest{Id: r.PathValue("id"), Reason: r.PostFormValue("reason")})
	return "rejected", err
}

func (s *Console) revoke(ctx context.Context, r *http.Request) (string, error) {
	_, err := s.api.nodes.RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: r.PathValue("id"), Reason: r.PostFormValue("reason")})
	return "revoked", err
}

func (s *Console) allowReplacement(ctx context.Context, r *http.Request) (string, error) {
	_, err := s.api.nodes.AllowReplacement(ctx, &berthv1.AllowReplacementRequest{Id: r.PathValue("id")})
	return "replacement", err
}

func (s *Console) approveBundle(ctx context.Context, r *http.Request) (string, error) {
	// A malformed version is sent as 0, which the service refuses with
	// its own message.
	v, _ := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
	_, err := s.api.bundles.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: r.PathValue("id"), Version: v})
	return "bundle-approved", err
}

func (s *Console) resetBundle(ctx context.Context, r *http.Request) (string, error) {
	_, err := s.api.bundles.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: r.PathValue("id")})
	return "bundle-reset", err
}

func (s *Console) setHeartbeat(ctx context.Context, r *http.Request) (string, error) {
	interval, err := formDuration(r, "interval")
	if err != nil {
		return "", err
	}
	grace, err := formDuration(r, "grace")
	if err != nil {
		return "", err
	}
	_, err = s.api.health.SetHeartbeatSettings(ctx, &berthv1.SetHeartbeatSettingsRequest{Interval: interval, Grace: grace})
	return "settings", err
}

// formDuration reads a duration field; empty is unset (the service's
// default), and anything else that does not parse is refused here, since
// sending it as zero would quietly mean the default.
func formDuration(r *http.Request, field string) (*durationpb.Duration, error) {
	v := strings.TrimSpace(r.PostFormValue(field))
	if v == "" {
		return nil, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s %q is not a duration such as 10s or 1m", field, v)
	}
	return durationpb.New(d), nil
}
