package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// registerFloorFixture is a PKI, its CA as the register floor's server
// signs with it, and two nodes of the floor's fleet.
type registerFloorFixture struct {
	layout    *pki.Layout
	srv       floorRegister
	me, other *floorNode
}

func newRegisterFloorFixture(t *testing.T) *registerFloorFixture {
	t.Helper()
	layout, err := pki.Init(context.Background(), pki.InitConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := floorSigner(layout)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := prepareRegisterFloor(layout, 2)
	t.Cleanup(func() {
		for _, n := range nodes {
			n.keys.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return &registerFloorFixture{layout: layout, srv: floorRegister{ca: ca, trust: [][]byte{layout.Root.Raw}}, me: nodes[0], other: nodes[1]}
}

// as is a call's context over a handshake that proved n's key.
func (n *floorNode) as(t *testing.T) context.Context {
	t.Helper()
	sum, err := mtls.KeyHash(n.keys.Identity().Public())
	if err != nil {
		t.Fatal(err)
	}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: mtls.AuthInfo{Identity: mtls.Identity{Kind: mtls.KindBootstrap, KeySHA256: sum}}})
}

// request is n's Register request: its hostname and a CSR for its key.
func (n *floorNode) request(t *testing.T) *berthv1.RegisterRequest {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, n.keys.Identity())
	if err != nil {
		t.Fatal(err)
	}
	return &berthv1.RegisterRequest{Csr: csr, Facts: &berthv1.MachineFacts{Hostname: n.host}}
}

// TestFloorRegister: the register floor's server signs a CSR for the key
// of the handshake, and refuses, with the status a registration service
// would give and without a certificate, a call without a client
// certificate, a CSR that does not parse or whose signature is wrong, a
// hostname the CA's policy refuses, and a CSR for another key.
func TestFloorRegister(t *testing.T) {
	fx := newRegisterFloorFixture(t)
	for _, tt := range []struct {
		name   string
		ctx    context.Context
		change func(*berthv1.RegisterRequest)
		want   codes.Code
	}{
		{"its own key", fx.me.as(t), func(*berthv1.RegisterRequest) {}, codes.OK},
		{"no client certificate", context.Background(), func(*berthv1.RegisterRequest) {}, codes.Unauthenticated},
		{"a CSR that does not parse", fx.me.as(t), func(r *berthv1.RegisterRequest) { r.Csr = []byte("junk") }, codes.InvalidArgument},
		{"a CSR whose signature is wrong", fx.me.as(t), func(r *berthv1.RegisterRequest) { r.Csr[len(r.Csr)-1] ^= 1 }, codes.InvalidArgument},
		{"a hostname the policy refuses", fx.me.as(t), func(r *berthv1.RegisterRequest) { r.Facts.Hostname = "no such name!" }, codes.InvalidArgument},
		{"a CSR for another key", fx.me.as(t), func(r *berthv1.RegisterRequest) { r.Csr = fx.other.request(t).Csr }, codes.PermissionDenied},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := fx.me.request(t)
			tt.change(req)
			got, err := fx.srv.Register(tt.ctx, req)
			if status.Code(err) != tt.want {
				t.Fatalf("Register: %v, want %v", err, tt.want)
			}
			if tt.want != codes.OK {
				if got != nil {
					t.Errorf("Register refused and answered %v", got)
				}
				return
			}
			if err := fx.me.checkRegistered(got.GetCredentials(), []*x509.Certificate{fx.layout.Root}); err != nil {
				t.Errorf("the node refused its answer: %v", err)
			}
		})
	}
}

// TestRegisterFloorChecks: a node of the register floor takes a
// certificate for its own key and refuses every lie a server could tell
// it, so that the floor cannot count a registration that skipped a check.
func TestRegisterFloorChecks(t *testing.T) {
	fx := newRegisterFloorFixture(t)
	answerOf := func(n *floorNode) *berthv1.NodeCredentials {
		r, err := fx.srv.Register(n.as(t), n.request(t))
		if err != nil {
			t.Fatal(err)
		}
		return r.GetCredentials()
	}
	cert, err := fx.layout.ServiceCertificate(pki.ServiceRegistration)
	if err != nil {
		t.Fatal(err)
	}
	pinned := grpctest.Chain(t, cert)
	for _, tt := range []struct {
		name   string
		change func(nc *berthv1.NodeCredentials)
		pinned []*x509.Certificate
		want   string // "" for accepted
	}{
		{"its own certificate", func(*berthv1.NodeCredentials) {}, pinned, ""},
		{"no verified server chain", func(*berthv1.NodeCredentials) {}, nil, "no verified server chain"},
		{"no node ID", func(nc *berthv1.NodeCredentials) { nc.NodeId = "" }, pinned, "want an approved node"},
		{"pending", func(nc *berthv1.NodeCredentials) { nc.Status = berthv1.NodeStatus_NODE_STATUS_PENDING }, pinned, "want an approved node"},
		{"no certificate", func(nc *berthv1.NodeCredentials) { nc.CertificateChain = nil }, pinned, "want an approved node"},
		{"a certificate that does not parse", func(nc *berthv1.NodeCredentials) { nc.CertificateChain = [][]byte{[]byte("junk")} }, pinned, "certificate:"},
		{"another node's certificate", func(nc *berthv1.NodeCredentials) { nc.CertificateChain = answerOf(fx.other).CertificateChain }, pinned,
			"the certificate is for another key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nc := answerOf(fx.me)
			tt.change(nc)
			err := fx.me.checkRegistered(nc, tt.pinned)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestReportRegisterFloor: first registrations against step-ca's rate next
// to the register floor's, as measured and from both ends' CPU, each
// judged against the goal of step-ca's rate.
func TestReportRegisterFloor(t *testing.T) {
	results := []map[string]any{
		{"scenario": "ceiling", "handshakes_per_s": 1000.0, "cpu_ms_per_handshake": 2.0, "cpu_bound_handshakes_per_s": 1000.0, "cores": 2.0},
		{"scenario": "stepca-sign", "nodes": 1000.0, "ok": 1000.0, "throughput_per_s": 1000.0, "server_cpu_ms_per_op": 1.0, "loadgen_cpu_ms": 1500.0, "errors": map[string]any{}},
		{"scenario": "register", "nodes": 1000.0, "ok": 1000.0, "throughput_per_s": 400.0, "errors": map[string]any{}},
		{"scenario": "register-floor", "ops": 8000.0, "ops_per_s": 800.0, "server_cpu_ms_per_op": 0.9, "cpu_bound_ops_per_s": 720.0, "errors": map[string]any{},
			"server_cpu_shares": map[string]any{"tls_handshake": 0.6, "other": 0.4}},
	}
	var out strings.Builder
	summary, err := Report(&out, results)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"first registration / step-ca's /sign rate, against a node's least first registration", "0.40", "0.80 (800.0 registrations/s against 1000.0 signs/s)",
		"OUT OF REACH: the floor is 0.80 × the goal; berth is 0.50 × the floor",
		// step-ca and its client spend 1.0 + 1.5 ms per sign: 800 signs/s on two cores.
		"0.90 (720.0 registrations/s against 800.0 signs/s (2.500 ms per sign, step-ca and its client))", "OUT OF REACH: the floor is 0.90 × the goal\n",
		"register-floor server CPU per registration by the profile: tls_handshake 60% (0.540 ms), other 40% (0.360 ms).",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if summary["register_per_stepca_sign_floor"] != 0.8 || summary["register_per_stepca_sign_cpu_bound_floor"] != 0.9 {
		t.Errorf("summary: %v", summary)
	}
}
