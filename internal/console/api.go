package console

import (
	"context"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// api is the admin API as the console reaches it: the services' gRPC
// clients over the front door's api connections.
type api struct {
	nodes   berthv1.NodeAdminServiceClient
	bundles berthv1.BundleAdminServiceClient
	health  berthv1.HeartbeatAdminServiceClient
}

// as names the principal to the services for calls made with ctx, as the
// REST gateway names its caller: the services authorise and record the
// principal, not the front door.
func as(ctx context.Context, p Principal) context.Context {
	return metadata.NewOutgoingContext(ctx, metadata.Pairs(rpc.ForwardedCallerKey, p.Forward))
}

// httpStatus is the HTTP status shown for a service's error, as
// grpc-gateway maps it for REST.
func httpStatus(err error) int {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499
	}
	return http.StatusInternalServerError
}

// errorText is what a person is shown of a service's error: its code and
// public message, which the services keep free of secrets.
func errorText(err error) string {
	st := status.Convert(err)
	return st.Code().String() + ": " + st.Message()
}
