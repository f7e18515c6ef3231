package watch_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/rpc"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

const trustDomain = "berth.local"

// t0 is the time of the first event of the fake logs; event n happens n
// seconds and n milliseconds later.
var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func eventTime(cursor int64) time.Time {
	return t0.Add(time.Duration(cursor) * (time.Second + time.Millisecond))
}

// testTLS is a deployment's certificates made at run time: a root, a
// server certificate for 127.0.0.1 and an admin client certificate.
type testTLS struct {
	roots  *x509.CertPool
	server tls.Certificate
	admin  tls.Certificate
}

func newTestTLS(t *testing.T) *testTLS {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	issue := func(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) *x509.Certificate {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = serial
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rootKey := newKey()
	root := issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "watch test root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, rootKey, nil, nil)
	leaf := func(cn string, uri *url.URL, usage ...x509.ExtKeyUsage) tls.Certificate {
		key := newKey()
		c := issue(&x509.Certificate{
			Subject: pkix.Name{CommonName: cn}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
			URIs: []*url.URL{uri}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}, key, root, rootKey)
		return tls.Certificate{Certificate: [][]byte{c.Raw, root.Raw}, PrivateKey: key, Leaf: c}
	}
	p := &testTLS{roots: x509.NewCertPool()}
	p.roots.AddCert(root)
	p.server = leaf("all", mtls.ServiceURI(trustDomain, "all"), x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	p.admin = leaf("admin", mtls.AdminURI(trustDomain, "admin"), x509.ExtKeyUsageClientAuth)
	return p
}

// adminPolicy lets admins call every RPC of the three admin services.
func adminPolicy() rpc.Policy {
	p := rpc.Policy{}
	for _, d := range []grpc.ServiceDesc{
		berthv1.NodeAdminService_ServiceDesc, berthv1.BundleAdminService_ServiceDesc, berthv1.HeartbeatAdminService_ServiceDesc,
	} {
		for _, m := range d.Methods {
			p["/"+d.ServiceName+"/"+m.MethodName] = rpc.Admin
		}
		for _, s := range d.Streams {
			p["/"+d.ServiceName+"/"+s.StreamName] = rpc.Admin
		}
	}
	return p
}

// servers are the fake logs one test server serves; a nil log leaves its
// service unregistered.
type servers struct {
	registration, bundles *fakeLog[*berthv1.LifecycleEvent]
	heartbeat             *fakeLog[*berthv1.HealthEvent]
}

// serve starts the real rpc server, with mutual TLS, on a loopback port
// and returns an admin connection to it.
func serve(t *testing.T, p *testTLS, s servers) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(rpc.ServerConfig{Name: "all", TrustDomain: trustDomain, Cert: p.server, Roots: p.roots, Policy: adminPolicy()})
	if s.registration != nil {
		berthv1.RegisterNodeAdminServiceServer(srv.Server, &fakeRegistration{log: s.registration})
	}
	if s.bundles != nil {
		berthv1.RegisterBundleAdminServiceServer(srv.Server, &fakeBundles{log: s.bundles})
	}
	if s.heartbeat != nil {
		berthv1.RegisterHeartbeatAdminServiceServer(srv.Server, &fakeHeartbeat{log: s.heartbeat})
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return dial(t, p, lis.Addr().String())
}

func dial(t *testing.T, p *testTLS, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := rpc.Dial(rpc.ClientConfig{Addr: addr, TLS: mtls.ClientConfig(p.admin, p.roots)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// logRequest is what a watch request asked of a fake log.
type logRequest struct {
	After   int64
	FromNow bool
	NodeIDs []string
	Types   []string
}

// fakeLog is a service's event log: a stream replays the events after the
// request's cursor, then follows appends, as the real services do. Set the
// behaviour fields before serving.
type fakeLog[E interface {
	proto.Message
	GetCursor() int64
}] struct {
	// breaks ends stream n (0-based) with Unavailable once it sent
	// breaks[n] events.
	breaks map[int]int
	// fail, when it returns an error for stream n, ends it at once with it.
	fail func(n int) error
	// replayAll ignores the cursor, as a broken server would: every stream
	// starts at the first event.
	replayAll bool
	// opened, when set, receives n once stream n has read the log's head.
	opened chan int

	mu       sync.Mutex
	events   []E
	requests []logRequest
	wake     chan struct{}
}

func newLog[E interface {
	proto.Message
	GetCursor() int64
}](events ...E) *fakeLog[E] {
	return &fakeLog[E]{events: events, wake: make(chan struct{})}
}

// add appends events and wakes the streams.
func (l *fakeLog[E]) add(events ...E) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, events...)
	close(l.wake)
	l.wake = make(chan struct{})
}

func (l *fakeLog[E]) received() []logRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]logRequest(nil), l.requests...)
}

func (l *fakeLog[E]) serve(ctx context.Context, r logRequest, send func(E) error) error {
	l.mu.Lock()
	n := len(l.requests)
	l.requests = append(l.requests, r)
	var head int64
	if len(l.events) > 0 {
		head = l.events[len(l.events)-1].GetCursor()
	}
	l.mu.Unlock()
	if l.fail != nil {
		if err := l.fail(n); err != nil {
			return err
		}
	}
	after := r.After
	switch {
	case r.FromNow:
		after = head
	case l.replayAll:
		after = 0
	}
	if l.opened != nil {
		l.opened <- n
	}
	sent := 0
	limit, breaks := l.breaks[n]
	for {
		l.mu.Lock()
		var pending []E
		for _, e := range l.events {
			if e.GetCursor() > after {
				pending = append(pending, e)
			}
		}
		wake := l.wake
		l.mu.Unlock()
		for _, e := range pending {
			if breaks && sent == limit {
				return status.Error(codes.Unavailable, "fake: stream broken")
			}
			if err := send(e); err != nil {
				return err
			}
			sent++
			after = e.GetCursor()
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type fakeRegistration struct {
	berthv1.UnimplementedNodeAdminServiceServer
	log *fakeLog[*berthv1.LifecycleEvent]
}

func (f *fakeRegistration) WatchNodeEvents(req *berthv1.WatchNodeEventsRequest, s berthv1.NodeAdminService_WatchNodeEventsServer) error {
	return f.log.serve(s.Context(), lifecycleRequest(req.GetFilter()), func(e *berthv1.LifecycleEvent) error {
		return s.Send(&berthv1.WatchNodeEventsResponse{Event: e})
	})
}

type fakeBundles struct {
	berthv1.UnimplementedBundleAdminServiceServer
	log *fakeLog[*berthv1.LifecycleEvent]
}

func (f *fakeBundles) WatchBundleEvents(req *berthv1.WatchBundleEventsRequest, s berthv1.BundleAdminService_WatchBundleEventsServer) error {
	return f.log.serve(s.Context(), lifecycleRequest(req.GetFilter()), func(e *berthv1.LifecycleEvent) error {
		return s.Send(&berthv1.WatchBundleEventsResponse{Event: e})
	})
}

func lifecycleRequest(f *berthv1.LifecycleFilter) logRequest {
	return logRequest{After: f.GetAfterCursor(), FromNow: f.GetFromNow(), NodeIDs: f.GetNodeIds(), Types: f.GetTypes()}
}

type fakeHeartbeat struct {
	berthv1.UnimplementedHeartbeatAdminServiceServer
	log *fakeLog[*berthv1.HealthEvent]
}

func (f *fakeHeartbeat) WatchHealth(req *berthv1.WatchHealthRequest, s berthv1.HeartbeatAdminService_WatchHealthServer) error {
	r := logRequest{After: req.GetAfterCursor(), FromNow: req.GetFromNow(), NodeIDs: req.GetNodeIds()}
	for _, t := range req.GetTypes() {
		r.Types = append(r.Types, t.String())
	}
	return f.log.serve(s.Context(), r, func(e *berthv1.HealthEvent) error {
		return s.Send(&berthv1.WatchHealthResponse{Event: e})
	})
}

// lifecycle returns a lifecycle event with the given details (k, v, ...).
func lifecycle(cursor int64, typ, node string, kv ...string) *berthv1.LifecycleEvent {
	e := &berthv1.LifecycleEvent{Cursor: cursor, Type: typ, NodeId: node, Time: timestamppb.New(eventTime(cursor))}
	if len(kv) > 0 {
		e.Details = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Details[kv[i]] = kv[i+1]
		}
	}
	return e
}

// beat returns a health event that a node became healthy.
func beat(cursor int64, node string) *berthv1.HealthEvent {
	return &berthv1.HealthEvent{
		Cursor: cursor, Type: berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY, NodeId: node,
		Time:  timestamppb.New(eventTime(cursor)),
		State: berthv1.LivenessState_LIVENESS_STATE_HEALTHY, BootId: "boot-1",
		Status: berthv1.ReportedStatus_REPORTED_STATUS_UP,
	}
}

func beats(from, to int64) []*berthv1.HealthEvent {
	var out []*berthv1.HealthEvent
	for c := from; c <= to; c++ {
		out = append(out, beat(c, "n-1"))
	}
	return out
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
