package cli_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/client/watch"
	"github.com/berth-dev/berth/internal/cli"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// fakeAdmin is a NodeAdminService whose answers are function fields. It
// records every request it receives. Set the fields before start.
type fakeAdmin struct {
	berthv1.UnimplementedNodeAdminServiceServer

	listNodes        func(context.Context, *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error)
	getNode          func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error)
	approveNode      func(context.Context, *berthv1.ApproveNodeRequest) (*berthv1.ApproveNodeResponse, error)
	rejectNode       func(context.Context, *berthv1.RejectNodeRequest) (*berthv1.RejectNodeResponse, error)
	revokeNode       func(context.Context, *berthv1.RevokeNodeRequest) (*berthv1.RevokeNodeResponse, error)
	deleteNode       func(context.Context, *berthv1.DeleteNodeRequest) (*berthv1.DeleteNodeResponse, error)
	allowReplacement func(context.Context, *berthv1.AllowReplacementRequest) (*berthv1.AllowReplacementResponse, error)
	labelNode        func(context.Context, *berthv1.LabelNodeRequest) (*berthv1.LabelNodeResponse, error)
	createToken      func(context.Context, *berthv1.CreateTokenRequest) (*berthv1.CreateTokenResponse, error)
	listTokens       func(context.Context, *berthv1.ListTokensRequest) (*berthv1.ListTokensResponse, error)
	revokeToken      func(context.Context, *berthv1.RevokeTokenRequest) (*berthv1.RevokeTokenResponse, error)
	listCerts        func(context.Context, *berthv1.ListCertificatesRequest) (*berthv1.ListCertificatesResponse, error)
	importEKs        func(context.Context, *berthv1.ImportEKsRequest) (*berthv1.ImportEKsResponse, error)
	setPCRPolicy     func(context.Context, *berthv1.SetPCRPolicyRequest) (*berthv1.SetPCRPolicyResponse, error)
	listPCRPolicies  func(context.Context, *berthv1.ListPCRPoliciesRequest) (*berthv1.ListPCRPoliciesResponse, error)
	deletePCRPolicy  func(context.Context, *berthv1.DeletePCRPolicyRequest) (*berthv1.DeletePCRPolicyResponse, error)
	// events, when set, serves WatchNodeEvents.
	events *eventLog[*berthv1.LifecycleEvent]

	recorder
}

var _ berthv1.NodeAdminServiceServer = (*fakeAdmin)(nil)

// call is one request the fake received.
type call struct {
	method string
	req    proto.Message
}

// recorder keeps the requests a fake receives.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func handle[Req proto.Message, Resp any](ctx context.Context, f *recorder, method string, req Req, fn func(context.Context, Req) (Resp, error)) (Resp, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call{method: method, req: proto.Clone(req)})
	f.mu.Unlock()
	if fn == nil {
		var zero Resp
		return zero, status.Errorf(codes.Unimplemented, "fake: %s not set", method)
	}
	return fn(ctx, req)
}

// reset forgets the requests received so far.
func (f *recorder) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// received returns the requests received so far.
func (f *recorder) received() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeAdmin) ListNodes(ctx context.Context, r *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
	return handle(ctx, &f.recorder, "ListNodes", r, f.listNodes)
}

func (f *fakeAdmin) GetNode(ctx context.Context, r *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
	return handle(ctx, &f.recorder, "GetNode", r, f.getNode)
}

func (f *fakeAdmin) ApproveNode(ctx context.Context, r *berthv1.ApproveNodeRequest) (*berthv1.ApproveNodeResponse, error) {
	return handle(ctx, &f.recorder, "ApproveNode", r, f.approveNode)
}

func (f *fakeAdmin) RejectNode(ctx context.Context, r *berthv1.RejectNodeRequest) (*berthv1.RejectNodeResponse, error) {
	return handle(ctx, &f.recorder, "RejectNode", r, f.rejectNode)
}

func (f *fakeAdmin) RevokeNode(ctx context.Context, r *berthv1.RevokeNodeRequest) (*berthv1.RevokeNodeResponse, error) {
	return handle(ctx, &f.recorder, "RevokeNode", r, f.revokeNode)
}

func (f *fakeAdmin) DeleteNode(ctx context.Context, r *berthv1.DeleteNodeRequest) (*berthv1.DeleteNodeResponse, error) {
	return handle(ctx, &f.recorder, "DeleteNode", r, f.deleteNode)
}

func (f *fakeAdmin) ImportEKs(ctx context.Context, r *berthv1.ImportEKsRequest) (*berthv1.ImportEKsResponse, error) {
	return handle(ctx, &f.recorder, "ImportEKs", r, f.importEKs)
}

func (f *fakeAdmin) SetPCRPolicy(ctx context.Context, r *berthv1.SetPCRPolicyRequest) (*berthv1.SetPCRPolicyResponse, error) {
	return handle(ctx, &f.recorder, "SetPCRPolicy", r, f.setPCRPolicy)
}

func (f *fakeAdmin) ListPCRPolicies(ctx context.Context, r *berthv1.ListPCRPoliciesRequest) (*berthv1.ListPCRPoliciesResponse, error) {
	return handle(ctx, &f.recorder, "ListPCRPolicies", r, f.listPCRPolicies)
}

func (f *fakeAdmin) DeletePCRPolicy(ctx context.Context, r *berthv1.DeletePCRPolicyRequest) (*berthv1.DeletePCRPolicyResponse, error) {
	return handle(ctx, &f.recorder, "DeletePCRPolicy", r, f.deletePCRPolicy)
}

func (f *fakeAdmin) LabelNode(ctx context.Context, r *berthv1.LabelNodeRequest) (*berthv1.LabelNodeResponse, error) {
	return handle(ctx, &f.recorder, "LabelNode", r, f.labelNode)
}

func (f *fakeAdmin) AllowReplacement(ctx context.Context, r *berthv1.AllowReplacementRequest) (*berthv1.AllowReplacementResponse, error) {
	return handle(ctx, &f.recorder, "AllowReplacement", r, f.allowReplacement)
}

func (f *fakeAdmin) CreateToken(ctx context.Context, r *berthv1.CreateTokenRequest) (*berthv1.CreateTokenResponse, error) {
	return handle(ctx, &f.recorder, "CreateToken", r, f.createToken)
}

func (f *fakeAdmin) ListTokens(ctx context.Context, r *berthv1.ListTokensRequest) (*berthv1.ListTokensResponse, error) {
	return handle(ctx, &f.recorder, "ListTokens", r, f.listTokens)
}

func (f *fakeAdmin) RevokeToken(ctx context.Context, r *berthv1.RevokeTokenRequest) (*berthv1.RevokeTokenResponse, error) {
	return handle(ctx, &f.recorder, "RevokeToken", r, f.revokeToken)
}

func (f *fakeAdmin) ListCertificates(ctx context.Context, r *berthv1.ListCertificatesRequest) (*berthv1.ListCertificatesResponse, error) {
	return handle(ctx, &f.recorder, "ListCertificates", r, f.listCerts)
}

func (f *fakeAdmin) WatchNodeEvents(r *berthv1.WatchNodeEventsRequest, s berthv1.NodeAdminService_WatchNodeEventsServer) error {
	return handleStream(&f.recorder, "WatchNodeEvents", r, f.events, s.Context(), lifecycleQuery(r.GetFilter()),
		func(e *berthv1.LifecycleEvent) error { return s.Send(&berthv1.WatchNodeEventsResponse{Event: e}) })
}

// fakeBundles is a BundleAdminService whose answers are function fields. It
// records every request it receives. Set the fields before start.
type fakeBundles struct {
	berthv1.UnimplementedBundleAdminServiceServer

	putBundle         func(context.Context, *berthv1.BundleAdminServicePutBundleRequest) (*berthv1.BundleAdminServicePutBundleResponse, error)
	getBundleInfo     func(context.Context, *berthv1.GetBundleInfoRequest) (*berthv1.GetBundleInfoResponse, error)
	listBundleHistory func(context.Context, *berthv1.ListBundleHistoryRequest) (*berthv1.ListBundleHistoryResponse, error)
	approveBundle     func(context.Context, *berthv1.ApproveBundleRequest) (*berthv1.ApproveBundleResponse, error)
	resetBundle       func(context.Context, *berthv1.ResetBundleRequest) (*berthv1.ResetBundleResponse, error)
	// events, when set, serves WatchBundleEvents.
	events *eventLog[*berthv1.LifecycleEvent]

	recorder
}

var _ berthv1.BundleAdminServiceServer = (*fakeBundles)(nil)

func (f *fakeBundles) PutBundle(ctx context.Context, r *berthv1.BundleAdminServicePutBundleRequest) (*berthv1.BundleAdminServicePutBundleResponse, error) {
	return handle(ctx, &f.recorder, "PutBundle", r, f.putBundle)
}

func (f *fakeBundles) GetBundleInfo(ctx context.Context, r *berthv1.GetBundleInfoRequest) (*berthv1.GetBundleInfoResponse, error) {
	return handle(ctx, &f.recorder, "GetBundleInfo", r, f.getBundleInfo)
}

func (f *fakeBundles) ListBundleHistory(ctx context.Context, r *berthv1.ListBundleHistoryRequest) (*berthv1.ListBundleHistoryResponse, error) {
	return handle(ctx, &f.recorder, "ListBundleHistory", r, f.listBundleHistory)
}

func (f *fakeBundles) ApproveBundle(ctx context.Context, r *berthv1.ApproveBundleRequest) (*berthv1.ApproveBundleResponse, error) {
	return handle(ctx, &f.recorder, "ApproveBundle", r, f.approveBundle)
}

func (f *fakeBundles) ResetBundle(ctx context.Context, r *berthv1.ResetBundleRequest) (*berthv1.ResetBundleResponse, error) {
	return handle(ctx, &f.recorder, "ResetBundle", r, f.resetBundle)
}

func (f *fakeBundles) WatchBundleEvents(r *berthv1.WatchBundleEventsRequest, s berthv1.BundleAdminService_WatchBundleEventsServer) error {
	return handleStream(&f.recorder, "WatchBundleEvents", r, f.events, s.Context(), lifecycleQuery(r.GetFilter()),
		func(e *berthv1.LifecycleEvent) error { return s.Send(&berthv1.WatchBundleEventsResponse{Event: e}) })
}

// fakeHeartbeat is a HeartbeatAdminService whose answers are function
// fields, and whose health event log is events. It records every request
// it receives. Set the fields before start.
type fakeHeartbeat struct {
	berthv1.UnimplementedHeartbeatAdminServiceServer

	getNodeHealth  func(context.Context, *berthv1.GetNodeHealthRequest) (*berthv1.GetNodeHealthResponse, error)
	listNodeHealth func(context.Context, *berthv1.ListNodeHealthRequest) (*berthv1.ListNodeHealthResponse, error)
	events         *eventLog[*berthv1.HealthEvent]

	recorder
}

var _ berthv1.HeartbeatAdminServiceServer = (*fakeHeartbeat)(nil)

// neverBeat is a heartbeat service that never heard from any node.
func neverBeat() *fakeHeartbeat {
	return &fakeHeartbeat{
		getNodeHealth: func(context.Context, *berthv1.GetNodeHealthRequest) (*berthv1.GetNodeHealthResponse, error) {
			return nil, status.Error(codes.NotFound, "no beat was ever received from this node")
		},
		listNodeHealth: func(context.Context, *berthv1.ListNodeHealthRequest) (*berthv1.ListNodeHealthResponse, error) {
			return &berthv1.ListNodeHealthResponse{}, nil
		},
	}
}

func (f *fakeHeartbeat) GetNodeHealth(ctx context.Context, r *berthv1.GetNodeHealthRequest) (*berthv1.GetNodeHealthResponse, error) {
	return handle(ctx, &f.recorder, "GetNodeHealth", r, f.getNodeHealth)
}

func (f *fakeHeartbeat) ListNodeHealth(ctx context.Context, r *berthv1.ListNodeHealthRequest) (*berthv1.ListNodeHealthResponse, error) {
	return handle(ctx, &f.recorder, "ListNodeHealth", r, f.listNodeHealth)
}

func (f *fakeHeartbeat) WatchHealth(r *berthv1.WatchHealthRequest, s berthv1.HeartbeatAdminService_WatchHealthServer) error {
	q := eventQuery{After: r.GetAfterCursor(), FromNow: r.GetFromNow(), NodeIDs: r.GetNodeIds()}
	for _, t := range r.GetTypes() {
		q.Types = append(q.Types, t.String())
	}
	return handleStream(&f.recorder, "WatchHealth", r, f.events, s.Context(), q,
		func(e *berthv1.HealthEvent) error { return s.Send(&berthv1.WatchHealthResponse{Event: e}) })
}

// handleStream records a watch request and serves it from log, or fails
// with Unimplemented when there is no log.
func handleStream[E cursored](f *recorder, method string, req proto.Message, log *eventLog[E], ctx context.Context, q eventQuery, send func(E) error) error {
	f.mu.Lock()
	f.calls = append(f.calls, call{method: method, req: proto.Clone(req)})
	f.mu.Unlock()
	if log == nil {
		return status.Errorf(codes.Unimplemented, "fake: %s not set", method)
	}
	return log.serve(ctx, q, send)
}

// adminPolicy lets only admin identities call the admin services, as the
// registration, bundles and heartbeat services do.
func adminPolicy() rpc.Policy {
	p := rpc.Policy{}
	for _, d := range []grpc.ServiceDesc{
		berthv1.NodeAdminService_ServiceDesc, berthv1.BundleAdminService_ServiceDesc, berthv1.HeartbeatAdminService_ServiceDesc,
	} {
		for _, m := range d.Methods {
			p["/"+d.ServiceName+"/"+m.MethodName] = rpc.Admin
		}
		for _, st := range d.Streams {
			p["/"+d.ServiceName+"/"+st.StreamName] = rpc.Admin
		}
	}
	return p
}

// harness is a fake NodeAdminService, and optionally a fake
// BundleAdminService and HeartbeatAdminService, served by the real rpc
// server over a loopback TLS listener, and the environment that points
// berthctl at it.
type harness struct {
	t         *testing.T
	pki       *testPKI
	fake      *fakeAdmin
	bundles   *fakeBundles
	heartbeat *fakeHeartbeat
	addr      string
	env       map[string]string
}

// start serves fake with the certificates of pki, and a heartbeat service
// that never heard from any node.
func start(t *testing.T, pki *testPKI, fake *fakeAdmin) *harness {
	t.Helper()
	return startAll(t, pki, fake, nil)
}

// startAll serves fake and, unless nil, bundles on one address, as berthd
// dev and berthd serve --role all do, with a heartbeat service that never
// heard from any node. A nil fake serves only bundles.
func startAll(t *testing.T, pki *testPKI, fake *fakeAdmin, bundles *fakeBundles) *harness {
	t.Helper()
	var hb *fakeHeartbeat
	if fake != nil {
		hb = neverBeat()
	}
	return startServers(t, pki, fake, bundles, hb)
}

// startServers serves the fakes that are not nil on one address, with a
// certificate naming the services served, as berthd's does.
func startServers(t *testing.T, pki *testPKI, fake *fakeAdmin, bundles *fakeBundles, hb *fakeHeartbeat) *harness {
	t.Helper()
	var services []string
	if fake != nil {
		services = append(services, "registration")
	}
	if bundles != nil {
		services = append(services, "bundles")
	}
	if hb != nil {
		services = append(services, "heartbeat")
	}
	return startAs(t, pki, services, fake, bundles, hb)
}

// startAs serves the fakes that are not nil on one address with a
// certificate carrying the identities of services.
func startAs(t *testing.T, pki *testPKI, services []string, fake *fakeAdmin, bundles *fakeBundles, hb *fakeHeartbeat) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(rpc.ServerConfig{
		Name:        "registration",
		TrustDomain: trustDomain,
		Cert:        pki.serverFor(t, services...),
		Roots:       pki.roots,
		Policy:      adminPolicy(),
	})
	if fake != nil {
		berthv1.RegisterNodeAdminServiceServer(srv.Server, fake)
	}
	if bundles != nil {
		berthv1.RegisterBundleAdminServiceServer(srv.Server, bundles)
	}
	if hb != nil {
		berthv1.RegisterHeartbeatAdminServiceServer(srv.Server, hb)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	addr := lis.Addr().String()
	return &harness{t: t, pki: pki, fake: fake, bundles: bundles, heartbeat: hb, addr: addr, env: map[string]string{
		"BERTH_SERVER": addr,
		"BERTH_CA":     pki.caFile,
		"BERTH_CERT":   pki.adminCert,
		"BERTH_KEY":    pki.adminKey,
	}}
}

// testNow is berthctl's clock in tests; the fake's timestamps are fixed
// relative to it, so times in golden files are stable.
var testNow = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// result is what one berthctl run printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// run runs berthctl with the harness environment.
func (h *harness) run(args ...string) result {
	return runEnv(h.t, h.env, args...)
}

// runEnv runs berthctl with env as its whole environment.
func runEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := testConfig(env, &stdout, &stderr).Run(t.Context(), args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// testConfig is berthctl with env as its whole environment, the test clock
// and quick reconnections.
func testConfig(env map[string]string, stdout, stderr io.Writer) cli.Config {
	return cli.Config{
		Getenv:       func(k string) string { return env[k] },
		Stdout:       stdout,
		Stderr:       stderr,
		Now:          func() time.Time { return testNow },
		WatchBackoff: watch.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond},
	}
}

// withEnv returns a copy of the harness environment with changes applied
// (an empty value unsets the variable).
func (h *harness) withEnv(changes map[string]string) map[string]string {
	env := map[string]string{}
	for k, v := range h.env {
		env[k] = v
	}
	for k, v := range changes {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	return env
}
