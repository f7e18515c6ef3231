package gateway

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
)

// The gRPC side of the front door in a split deployment (berthd serve
// --role api): it serves the admin methods of the services behind it and
// forwards each call over the front door's own connection to that
// service, as the api identity naming the caller its interceptors
// authenticated and authorised. The services authorise the caller again
// and record it. Methods are found from the protos' descriptors, so a
// method added to an admin service is forwarded without code here.

// ProxyService registers on s the methods of the gRPC service named
// service (e.g. "berth.v1.NodeAdminService") for which forward reports
// true, each forwarded to conn. Client-streaming methods are not
// forwarded: no admin method is one.
func ProxyService(s *grpc.Server, conn grpc.ClientConnInterface, service string, forward func(fullMethod string) bool) error {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return fmt.Errorf("front door: service %s: %w", service, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return fmt.Errorf("front door: %s is not a service", service)
	}
	desc := grpc.ServiceDesc{
		ServiceName: service,
		// Any value serves: every handler is a closure over its method.
		HandlerType: (*any)(nil),
		Metadata:    sd.ParentFile().Path(),
	}
	methods := sd.Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		full := "/" + service + "/" + string(m.Name())
		if m.IsStreamingClient() || !forward(full) {
			continue
		}
		in, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
		if err != nil {
			return fmt.Errorf("front door: %s: %w", full, err)
		}
		out, err := protoregistry.GlobalTypes.FindMessageByName(m.Output().FullName())
		if err != nil {
			return fmt.Errorf("front door: %s: %w", full, err)
		}
		p := &proxied{conn: conn, method: full, in: in, out: out, stream: m.IsStreamingServer()}
		// Every method is registered as a stream, unary ones included:
		// on the wire they are the same, and one handler serves both.
		desc.Streams = append(desc.Streams, grpc.StreamDesc{
			StreamName: string(m.Name()), Handler: p.handle, ServerStreams: true, ClientStreams: true,
		})
	}
	if len(desc.Streams) == 0 {
		return fmt.Errorf("front door: %s has no method to forward", service)
	}
	s.RegisterService(&desc, struct{}{})
	return nil
}

// proxied is one forwarded method.
type proxied struct {
	conn    grpc.ClientConnInterface
	method  string
	in, out protoreflect.MessageType
	stream  bool
}

func (p *proxied) handle(_ any, ss grpc.ServerStream) error {
	// The interceptors have put the caller they authorised in the context:
	// the peer, or the caller a front door before this one forwarded.
	id, verifyErr, ok := mtls.PeerIdentity(ss.Context())
	if !ok || verifyErr != nil {
		return status.Error(codes.Unauthenticated, msgNoCredentials)
	}
	ctx := metadata.NewOutgoingContext(ss.Context(), metadata.Pairs(rpc.ForwardedCallerKey, rpc.ForwardedCaller(id)))
	req := p.in.New().Interface()
	if err := ss.RecvMsg(req); err != nil {
		return err
	}
	if !p.stream {
		resp := p.out.New().Interface()
		if err := p.conn.Invoke(ctx, p.method, req, resp); err != nil {
			return err
		}
		return ss.SendMsg(resp)
	}
	cs, err := p.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, p.method)
	if err != nil {
		return err
	}
	// A failed send is followed by the call's status on RecvMsg.
	if err := cs.SendMsg(req); err == nil {
		err = cs.CloseSend()
		if err != nil {
			return err
		}
	}
	// The service's headers (a watch sends them once it is in place,
	// before any event) go on at once, not with the first message.
	if md, err := cs.Header(); err == nil && md != nil {
		if err := ss.SendHeader(md); err != nil {
			return err
		}
	}
	for {
		resp := p.out.New().Interface()
		if err := cs.RecvMsg(resp); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if err := ss.SendMsg(resp); err != nil {
			return err
		}
	}
}
