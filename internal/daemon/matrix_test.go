package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionalphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// caller is one column of the authorisation matrix, with real credentials.
type caller struct {
	name string
	cert tls.Certificate
	// kind is the matrix column the server must file the caller under.
	kind rpc.Callers
	// issued is true when this deployment's CA issued the certificate
	// for an identity of its trust domain: a refusal is then
	// PermissionDenied, else Unauthenticated.
	issued bool
}

// callers returns every kind of caller: each service's credentials, the
// admin's, a node's, a bare key's, and three that are not this
// deployment's (another deployment's admin and registration service, and
// an identity of another trust domain under this deployment's own CA).
func callers(t *testing.T, l *pki.Layout) []caller {
	t.Helper()
	var cs []caller
	for _, s := range []struct {
		name string
		kind rpc.Callers
	}{
		{pki.ServiceRegistration, rpc.FromRegistration}, {pki.ServiceCA, rpc.FromCA}, {pki.ServiceBundles, rpc.FromBundles},
		{pki.ServiceHeartbeat, rpc.FromHeartbeat}, {pki.ServiceAPI, rpc.FromAPI},
	} {
		cert, err := l.ServiceCertificate(s.name)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, caller{name: "service " + s.name, cert: cert, kind: s.kind, issued: true})
	}
	admin, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	self, err := mtls.SelfSigned(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	other := newPKI(t, "other.example")
	otherAdmin, err := other.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	otherReg, err := other.ServiceCertificate(pki.ServiceRegistration)
	if err != nil {
		t.Fatal(err)
	}
	return append(cs,
		caller{name: "admin", cert: admin, kind: rpc.FromAdmin, issued: true},
		caller{name: "node", cert: nodeCert(t, l, "node-1"), kind: rpc.FromNode, issued: true},
		caller{name: "bare key", cert: self, kind: rpc.FromBareKey},
		caller{name: "foreign admin", cert: otherAdmin, kind: rpc.FromBareKey},
		caller{name: "foreign registration", cert: otherReg, kind: rpc.FromBareKey},
		caller{name: "foreign trust domain, own CA", cert: foreignURICert(t, l), kind: rpc.FromBareKey},
	)
}

// roleServices are the gRPC services each role serves, beyond the ones
// every server has.
func roleServices() map[string][]string {
	return map[string][]string{
		RoleCA: {berthv1.CertificateAuthorityService_ServiceDesc.ServiceName},
		RoleRegistration: {berthv1.RegistrationService_ServiceDesc.ServiceName, berthv1.NodeAdminService_ServiceDesc.ServiceName,
			berthv1.APITokenService_ServiceDesc.ServiceName, berthv1.ConsoleSessionService_ServiceDesc.ServiceName},
		RoleBundles: {berthv1.BundleService_ServiceDesc.ServiceName, berthv1.BundleAdminService_ServiceDesc.ServiceName},
		RoleHeartbeat: {berthv1.HeartbeatService_ServiceDesc.ServiceName, berthv1.HeartbeatAdminService_ServiceDesc.ServiceName,
			berthv1.HeartbeatBootService_ServiceDesc.ServiceName},
	}
}

// consoleServices are served only by the process that serves the front
// door (REST and the web console): role all.
func consoleServices() []string {
	return []string{berthv1.ConsoleAdminService_ServiceDesc.ServiceName}
}

func isConsoleMethod(method string) bool {
	for _, s := range consoleServices() {
		if strings.HasPrefix(method, "/"+s+"/") {
			return true
		}
	}
	return false
}

func everyServerServices() []string {
	return []string{
		berthv1.VersionService_ServiceDesc.ServiceName,
		healthpb.Health_ServiceDesc.ServiceName,
		reflectionpb.ServerReflection_ServiceDesc.ServiceName,
		reflectionalphapb.ServerReflection_ServiceDesc.ServiceName,
	}
}

// methodsOf returns the methods of gRPC services from their descriptors.
func methodsOf(t *testing.T, services []string) []protoreflect.MethodDescriptor {
	t.Helper()
	var out []protoreflect.MethodDescriptor
	for _, s := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(s))
		if err != nil {
			t.Fatalf("service %s: %v", s, err)
		}
		ms := d.(protoreflect.ServiceDescriptor).Methods()
		for i := range ms.Len() {
			out = append(out, ms.Get(i))
		}
	}
	return out
}

func fullMethod(md protoreflect.MethodDescriptor) string {
	return "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
}

// invoke calls a method with a request that a handler answers at once:
// empty, but for a watch, whose cursor is made invalid so that an allowed
// caller is refused by validation instead of waiting for events. A stream
// reports its first answer: a message, its end, or an error.
func invoke(ctx context.Context, conn *grpc.ClientConn, md protoreflect.MethodDescriptor) error {
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return err
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return err
	}
	req, resp := in.New(), out.New().Interface()
	invalidCursor(req)
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		return conn.Invoke(ctx, fullMethod(md), req.Interface(), resp)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: md.IsStreamingServer(), ClientStreams: md.IsStreamingClient()}, fullMethod(md))
	if err != nil {
		return err
	}
	if !md.IsStreamingClient() {
		if err := st.SendMsg(req.Interface()); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	if err := st.RecvMsg(resp); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// invalidCursor sets after_cursor, at the top or in filter, to -1.
func invalidCursor(m protoreflect.Message) {
	if f := m.Descriptor().Fields().ByName("after_cursor"); f != nil {
		m.Set(f, protoreflect.ValueOfInt64(-1))
	}
	if f := m.Descriptor().Fields().ByName("filter"); f != nil && f.Message() != nil {
		invalidCursor(m.Mutable(f).Message())
	}
}

// TestAuthorisationMatrix runs every method of every service with every
// kind of caller, real certificates on real listeners, and expects a
// refusal exactly where rpc.Matrix says: PermissionDenied for this
// deployment's identities, Unauthenticated for a bare or foreign key. It
// runs the roles apart, each from its own directory alone, and all in one
// process.
func TestAuthorisationMatrix(t *testing.T) {
	l := newPKI(t, "")
	cs := callers(t, l)
	matrix := rpc.Matrix()
	for _, tt := range []struct {
		name  string
		start func(*testing.T, *pki.Layout) *deployment
		// frontDoor: the deployment serves the front door's services.
		frontDoor bool
	}{{"roles apart", startApart, false}, {"all in one process", startAll, true}} {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.start(t, l)
			covered := map[string]bool{}
			calls, denied := 0, 0
			for role, services := range roleServices() {
				services = append(services, everyServerServices()...)
				if tt.frontDoor && role == RoleRegistration {
					services = append(services, consoleServices()...)
				}
				methods := methodsOf(t, services)
				for _, c := range cs {
					conn := d.dial(t, role, c.cert)
					for _, md := range methods {
						method := fullMethod(md)
						covered[method] = true
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						err := invoke(ctx, conn, md)
						cancel()
						calls++
						allowed := matrix[method]&c.kind != 0
						if rpc.Denied(err) {
							denied++
						}
						switch {
						case status.Code(err) == codes.DeadlineExceeded:
							t.Errorf("%s by %s on the %s role: no answer: %v", method, c.name, role, err)
						case allowed && rpc.Denied(err):
							t.Errorf("%s by %s on the %s role: refused (%v); the matrix allows it", method, c.name, role, err)
						case !allowed && !rpc.Denied(err):
							t.Errorf("%s by %s on the %s role: %v; the matrix refuses it", method, c.name, role, err)
						case !allowed && c.issued && status.Code(err) != codes.PermissionDenied,
							!allowed && !c.issued && status.Code(err) != codes.Unauthenticated:
							t.Errorf("%s by %s on the %s role: %v, want %s", method, c.name, role, err,
								map[bool]codes.Code{true: codes.PermissionDenied, false: codes.Unauthenticated}[c.issued])
						}
					}
				}
			}
			for method, callers := range matrix {
				if callers == rpc.FromLocal {
					// berth-agent's local API: served on the node's unix
					// socket (internal/agent's tests), by no berth server.
					if covered[method] {
						t.Errorf("matrix row %s is for local callers, but a berth server serves it", method)
					}
					continue
				}
				if !covered[method] && !(isConsoleMethod(method) && !tt.frontDoor) {
					t.Errorf("matrix row %s was not run", method)
				}
			}
			rows := len(covered)
			t.Logf("MEASURE authorisation matrix (%s): %d methods x %d callers; %d calls on %d servers, %d refused",
				tt.name, rows, len(cs), calls, len(slices.Compact(sortedValues(d.addrs))), denied)
		})
	}
}

func sortedValues(m map[string]string) []string {
	var v []string
	for _, s := range m {
		v = append(v, s)
	}
	slices.Sort(v)
	return v
}
