package loadgen

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestBootFloorChecks: a node of the boot floor takes its own answer and
// refuses every lie a server could tell it, so that the floor cannot
// count a boot that skipped a check.
func TestBootFloorChecks(t *testing.T) {
	ctx := context.Background()
	layout, err := pki.Init(ctx, pki.InitConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := prepareBootFloor(ctx, layout, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.keys.Close()
		}
	})
	answers, err := loadAnswers(filepath.Join(layout.Dir, bootFloorDir))
	if err != nil {
		t.Fatal(err)
	}
	answerOf := func(n *floorNode) *berthv1.NodeCredentials {
		sum, err := mtls.KeyHash(n.keys.Identity().Public())
		if err != nil {
			t.Fatal(err)
		}
		return proto.Clone(answers[sum].GetCredentials()).(*berthv1.NodeCredentials)
	}
	pinnedOf := func(l *pki.Layout) []*x509.Certificate {
		cert, err := l.ServiceCertificate(pki.ServiceRegistration)
		if err != nil {
			t.Fatal(err)
		}
		return grpctest.Chain(t, cert)
	}
	pinned := pinnedOf(layout)
	foreign, err := pki.Init(ctx, pki.InitConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	me, other := nodes[0], nodes[1]
	tests := []struct {
		name   string
		change func(nc *berthv1.NodeCredentials)
		pinned []*x509.Certificate
		want   string // "" for accepted
	}{
		{"its own answer", func(*berthv1.NodeCredentials) {}, pinned, ""},
		{"no verified server chain", func(*berthv1.NodeCredentials) {}, nil, "no verified server chain"},
		{"another node's answer", func(nc *berthv1.NodeCredentials) { proto.Reset(nc); proto.Merge(nc, answerOf(other)) }, pinned, "answer for node"},
		{"not approved", func(nc *berthv1.NodeCredentials) { nc.Status = berthv1.NodeStatus_NODE_STATUS_PENDING }, pinned, "want approved node"},
		{"another node's certificate", func(nc *berthv1.NodeCredentials) { nc.CertificateChain = answerOf(other).CertificateChain }, pinned,
			"the certificate is for another key"},
		{"a certificate that does not parse", func(nc *berthv1.NodeCredentials) { nc.CertificateChain = [][]byte{[]byte("junk")} }, pinned, "certificate:"},
		{"no bundle", func(nc *berthv1.NodeCredentials) { nc.Bundle = nil }, pinned, "no bundle"},
		{"another node's bundle", func(nc *berthv1.NodeCredentials) { nc.Bundle = answerOf(other).Bundle }, pinned, "open bundle"},
		{"the bundle served as another version", func(nc *berthv1.NodeCredentials) { nc.Bundle.Info.Version = 2 }, pinned, "open bundle"},
		{"a byte of the bundle changed", func(nc *berthv1.NodeCredentials) {
			b := nc.Bundle.Sealed
			b[len(b)/2] ^= 1
		}, pinned, "open bundle"},
		// Another deployment's server: its root is not the one the
		// bundle's admin chains to.
		{"another deployment's chain", func(*berthv1.NodeCredentials) {}, pinnedOf(foreign), "open bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := answerOf(me)
			tt.change(nc)
			err := me.check(nc, tt.pinned)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestReportBootFloor: the storm's figures next to the boot floor's, the
// 10,000-boot storm among them, each goal judged against that floor.
func TestReportBootFloor(t *testing.T) {
	results := []map[string]any{
		{"scenario": "ceiling", "handshakes_per_s": 1000.0, "cpu_ms_per_handshake": 2.0, "cpu_bound_handshakes_per_s": 1000.0},
		{"scenario": "storm", "nodes": 300.0, "ok": 300.0, "throughput_per_s": 400.0, "server_cpu_ms_per_op": 2.0, "errors": map[string]any{}},
		{"scenario": "boot-floor", "ops": 5000.0, "ops_per_s": 500.0, "server_cpu_ms_per_op": 0.95, "cpu_bound_ops_per_s": 600.0, "errors": map[string]any{},
			"server_cpu_shares": map[string]any{"tls_handshake": 0.7, "grpc_http2": 0.3}},
	}
	var out strings.Builder
	summary, err := Report(&out, results)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Resume throughput / ceiling, against a node's least boot", "0.500 (500.0 boots/s)", "OUT OF REACH: the floor is 0.59 × the goal; berth is 0.80 × the floor",
		"the same, all cores busy (CPU of both ends, and PostgreSQL's for berth)", "0.600 (600.0 boots/s against 1000.0 handshakes/s)", "OUT OF REACH: the floor is 0.71 × the goal\n",
		"storm of 10,000 boots, against a node's least boot", "25.0 s", "20.0 s", "<= 15.0 s", "OUT OF REACH: the floor is 1.33 × the goal; berth is 1.25 × the floor",
		"server CPU per Resume, against a node's least boot", "0.950 ms", "OUT OF REACH: the floor is 1.19 × the goal; berth is 2.11 × the floor",
		"boot-floor server CPU per boot by the profile: tls_handshake 70% (0.665 ms), grpc_http2 30% (0.285 ms).",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "0.600 (600.0 calls/s") {
		t.Errorf("the boot floor is reported as grpc-floor's:\n%s", out.String())
	}
	if summary["resume_ceiling_ratio_boot_floor"] != 0.5 || summary["resume_cpu_bound_ceiling_ratio_boot_floor"] != 0.6 ||
		summary["storm_10000_s_floor"] != 20.0 || summary["resume_server_cpu_ms_boot_floor"] != 0.95 {
		t.Errorf("summary: %v", summary)
	}
}

// TestLoadAnswers: the boot floor's server refuses a directory it cannot
// serve from, naming the file, rather than start without answers.
func TestLoadAnswers(t *testing.T) {
	good, err := proto.Marshal(&berthv1.NodeCredentials{NodeId: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name  string
		files map[string][]byte
		want  string // "" for loaded
	}{
		{"one answer", map[string][]byte{key + ".pb": good}, ""},
		{"no answers", nil, "boot floor: no answers in"},
		{"not named by a key hash", map[string][]byte{"node.pb": good}, "node.pb is not named by a key hash"},
		{"a short key hash", map[string][]byte{"abcd.pb": good}, "abcd.pb is not named by a key hash"},
		{"not an answer", map[string][]byte{key + ".pb": []byte("\xff\xff")}, key + ".pb:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, b := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			answers, err := loadAnswers(dir)
			switch {
			case tt.want == "" && (err != nil || len(answers) != 1):
				t.Fatalf("loadAnswers = %d answers, %v", len(answers), err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestFloorResume: the boot floor's server answers a known key with its
// answer, and refuses a call without a client certificate or from a key it
// has no answer for, with the status a registration service would give.
func TestFloorResume(t *testing.T) {
	var known, other [32]byte
	known[0], other[0] = 1, 2
	answer := &berthv1.ResumeResponse{Credentials: &berthv1.NodeCredentials{NodeId: "n1"}}
	f := floorResume{answers: map[[32]byte]*berthv1.ResumeResponse{known: answer}}
	from := func(key [32]byte) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: mtls.AuthInfo{Identity: mtls.Identity{Kind: mtls.KindBootstrap, KeySHA256: key}}})
	}
	for _, tt := range []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{"a known key", from(known), codes.OK},
		{"another key", from(other), codes.NotFound},
		{"no client certificate", context.Background(), codes.Unauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.Resume(tt.ctx, &berthv1.ResumeRequest{})
			if status.Code(err) != tt.want {
				t.Fatalf("Resume: %v, want %v", err, tt.want)
			}
			if tt.want == codes.OK && got != answer {
				t.Errorf("Resume answered %v, want the known key's answer", got)
			}
		})
	}
}
