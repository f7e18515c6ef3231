package grpctest

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
)

// whoDesc is a one-method service that answers with the caller's identity
// as the server's interceptors and credentials saw it.
var whoDesc = grpc.ServiceDesc{
	ServiceName: "grpctest.Who",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Who",
		Handler: func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(emptypb.Empty)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) {
				id, _, _ := mtls.PeerIdentity(ctx)
				return wrapperspb.String(id.Kind.String() + ":" + id.Name), nil
			}
			return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/grpctest.Who/Who"}, h)
		},
	}},
}

func who(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, "/grpctest.Who/Who", &emptypb.Empty{}, out)
	return out.GetValue(), err
}

// TestCallers checks every kind of caller against a policy that lets
// anyone with a key in, over both transports.
func TestCallers(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		name := "bufconn"
		if tcp {
			name = "tcp"
		}
		t.Run(name, func(t *testing.T) {
			clk := clock.NewFake(time.Now().Add(-time.Hour).Truncate(time.Second))
			s := New(t, Config{TCP: tcp, Clock: clk})
			if tcp != (s.Addr != "") {
				t.Fatalf("Addr = %q with TCP %v", s.Addr, tcp)
			}
			// Connections made before Serve connect once it runs.
			early := s.Admin(t)
			s.Serve(t, pki.ServiceCA, rpc.Policy{"/grpctest.Who/Who": rpc.Anyone}, func(g grpc.ServiceRegistrar) {
				g.RegisterService(&whoDesc, struct{}{})
			})
			node := s.NodeCert(t, "node-a")
			if !node.Leaf.NotBefore.Before(clk.Now()) || node.Leaf.NotBefore.Before(clk.Now().Add(-time.Hour)) {
				t.Errorf("node certificate not before %v, not on the server's clock %v", node.Leaf.NotBefore, clk.Now())
			}
			tests := []struct {
				name     string
				conn     *grpc.ClientConn
				want     string
				wantCode codes.Code
			}{
				{"admin before Serve", early, "admin:admin", codes.OK},
				{"admin", s.Admin(t), "admin:admin", codes.OK},
				{"service", s.Service(t, pki.ServiceRegistration), "service:registration", codes.OK},
				{"front door", s.Service(t, pki.ServiceAPI), "service:api", codes.OK},
				{"node", s.Dial(t, node.TLS), "node:node-a", codes.OK},
				{"node by id", s.Node(t, "node-b"), "node:node-b", codes.OK},
				{"bare key", s.Bootstrap(t, NewKey(t)), "bootstrap:", codes.OK},
				// The foreign certificate is unverified, which the policy's
				// Anyone lets through as a bare key.
				{"foreign deployment", s.Foreign(t), "bootstrap:", codes.OK},
				{"foreign trust domain's service", s.ForeignService(t, pki.ServiceRegistration), "bootstrap:", codes.OK},
				// The server requires a certificate in the handshake.
				{"no certificate", s.Anonymous(t), "", codes.Unavailable},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					got, err := who(ctx, tt.conn)
					WantCode(t, err, tt.wantCode)
					if got != tt.want {
						t.Errorf("identity = %q, want %q", got, tt.want)
					}
				})
			}
		})
	}
}

// TestPolicyApplies checks that the real interceptors stand between the
// connections and the service.
func TestPolicyApplies(t *testing.T) {
	logger, logs := NewLogger()
	s := New(t, Config{Logger: logger})
	s.Serve(t, pki.ServiceCA, rpc.Policy{"/grpctest.Who/Who": rpc.Admin}, func(g grpc.ServiceRegistrar) {
		g.RegisterService(&whoDesc, struct{}{})
	})
	ctx := context.Background()
	_, err := who(ctx, s.Node(t, "n1"))
	WantStatus(t, err, codes.PermissionDenied, "caller is not permitted to call this method")
	_, err = who(ctx, s.Foreign(t))
	WantStatus(t, err, codes.Unauthenticated, "client certificate is not issued by this deployment's CA")
	if got, err := who(ctx, s.Admin(t)); err != nil || got != "admin:admin" {
		t.Fatalf("admin: %q, %v", got, err)
	}
	if !strings.Contains(logs.String(), "method=/grpctest.Who/Who") {
		t.Errorf("the server's logger did not log the calls:\n%s", logs)
	}
}

// TestClientsRefuseAnImpostor serves with another service's certificate:
// every kind of connection refuses the server and says what it found.
func TestClientsRefuseAnImpostor(t *testing.T) {
	s := New(t, Config{})
	s.Expect(pki.ServiceRegistration)
	s.ServeWith(t, s.ServiceCert(t, pki.ServiceHeartbeat), rpc.Policy{"/grpctest.Who/Who": rpc.Anyone}, func(g grpc.ServiceRegistrar) {
		g.RegisterService(&whoDesc, struct{}{})
	})
	for name, conn := range map[string]*grpc.ClientConn{
		"admin": s.Admin(t), "service": s.Service(t, pki.ServiceCA), "node": s.Node(t, "n1"), "bare key": s.Bootstrap(t, NewKey(t)),
	} {
		_, err := who(context.Background(), conn)
		WantCode(t, err, codes.Unavailable)
		if want := "expected spiffe://berth.local/service/registration, found spiffe://berth.local/service/heartbeat"; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it to say %q", name, err, want)
		}
	}
}
