package rpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unavailableHooks call f whenever a handler answers Unavailable: the
// process has just seen a dependency fail, and its health should look
// now rather than at its next probe. nil f adds nothing.
func unavailableHooks(f func()) []grpc.ServerOption {
	if f == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if status.Code(err) == codes.Unavailable {
				f()
			}
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			err := h(srv, ss)
			if status.Code(err) == codes.Unavailable {
				f()
			}
			return err
		}),
	}
}
