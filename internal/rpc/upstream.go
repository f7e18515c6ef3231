package rpc

import (
	"context"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// msgUpstreamDown answers a caller of the front door whose call could not
// reach the service behind it: which service, where, and why, so that an
// operator knows which process to look at. The status is Unavailable, which
// clients retry.
const msgUpstreamDown = "the %s service at %s cannot be reached (%s); retry later"

// UpstreamOptions are the dial options of a front door's connection to the
// berth service named service at addr: a call that cannot reach it fails
// Unavailable with msgUpstreamDown instead of gRPC's transport message. A
// service's own answers, Unavailable ones included, pass unchanged.
func UpstreamOptions(service, addr string) []grpc.DialOption {
	rewrite := func(err error) error { return upstreamError(service, addr, err) }
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return rewrite(invoker(ctx, method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, rewrite(err)
			}
			return upstreamStream{ClientStream: cs, rewrite: rewrite}, nil
		}),
	}
}

type upstreamStream struct {
	grpc.ClientStream
	rewrite func(error) error
}

func (s upstreamStream) RecvMsg(m any) error { return s.rewrite(s.ClientStream.RecvMsg(m)) }

// upstreamError rewrites gRPC's own error for a connection that could not
// be made or broke. Those come from the client's transport, never from a
// server, and gRPC marks them only in their message.
func upstreamError(service, addr string, err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return err
	}
	cause, ok := transportCause(st.Message())
	if !ok {
		return err
	}
	return status.Errorf(codes.Unavailable, msgUpstreamDown, service, addr, cause)
}

// transportCause is the cause in a message of gRPC's client transport
// ("connection error: desc = \"transport: Error while dialing: dial tcp
// ...: connection refused\""); ok is false for a server's own message.
func transportCause(msg string) (string, bool) {
	switch {
	case strings.HasPrefix(msg, "connection error"), strings.HasPrefix(msg, "name resolver error"):
	case strings.HasPrefix(msg, "error reading from server"), strings.Contains(msg, "transport is closing"):
		return "the connection broke", true
	default:
		return "", false
	}
	_, desc, found := strings.Cut(msg, "desc = ")
	if !found {
		return msg, true
	}
	if u, err := strconv.Unquote(desc); err == nil {
		desc = u
	}
	desc = strings.TrimPrefix(desc, "transport: ")
	desc = strings.TrimPrefix(desc, "Error while dialing: ")
	return desc, true
}
