package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/cli"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// issuedCerts is a node's first certificate, revoked when its board was
// replaced, the new board's, and another node's from before request IDs.
func issuedCerts() []*berthv1.IssuedCertificate {
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(testNow.Add(d)) }
	return []*berthv1.IssuedCertificate{
		{Serial: "5f3a2c1b0e9d8c7b", NodeId: "n-7f3a9c", NotBefore: ts(-72*time.Hour - 5*time.Minute), NotAfter: ts(648 * time.Hour),
			IssuedAt: ts(-72 * time.Hour), RequestId: "q3vmxk2ad7rw6nhbg4yte5psl2", Revoked: true, RevocationReason: "superseded", RevokedAt: ts(-time.Hour)},
		{Serial: "6a1b2c3d4e5f6071", NodeId: "n-7f3a9c", NotBefore: ts(-time.Hour - 5*time.Minute), NotAfter: ts(719 * time.Hour),
			IssuedAt: ts(-time.Hour), RequestId: "b7lqz4c2x9mfe3hw5tyn6dkr8a"},
		{Serial: "1c", NodeId: "n-2b4d6f", NotBefore: ts(-400 * time.Hour), NotAfter: ts(320 * time.Hour), IssuedAt: ts(-400 * time.Hour)},
	}
}

func certsFake(certs []*berthv1.IssuedCertificate) *fakeAdmin {
	return &fakeAdmin{listCerts: func(_ context.Context, r *berthv1.ListCertificatesRequest) (*berthv1.ListCertificatesResponse, error) {
		var out []*berthv1.IssuedCertificate
		for _, c := range certs {
			if r.GetNodeId() == "" || c.GetNodeId() == r.GetNodeId() {
				out = append(out, c)
			}
		}
		return &berthv1.ListCertificatesResponse{Certificates: out}, nil
	}}
}

func TestCertsList(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name   string
		args   []string
		golden string
		want   *berthv1.ListCertificatesRequest
	}{
		{"table", []string{"certs", "list"}, "certs_list_table", &berthv1.ListCertificatesRequest{}},
		{"json", []string{"certs", "list", "-o", "json"}, "certs_list_json", &berthv1.ListCertificatesRequest{}},
		{"one node", []string{"certs", "list", "--node", "n-2b4d6f"}, "certs_list_node_table", &berthv1.ListCertificatesRequest{NodeId: "n-2b4d6f"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := certsFake(issuedCerts())
			r := start(t, pki, fake).run(tc.args...)
			checkOK(t, r)
			checkGolden(t, tc.golden, r.stdout)
			checkRequests(t, fake, tc.want)
		})
	}
}

// TestCertsJSONContract pins the field names DESIGN.md promises,
// independently of the golden files, which -update rewrites.
func TestCertsJSONContract(t *testing.T) {
	r := start(t, newTestPKI(t), certsFake(issuedCerts())).run("certs", "list", "-o", "json")
	checkOK(t, r)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d certificates, want 3", len(got))
	}
	want := map[string]any{
		"serial": "5f3a2c1b0e9d8c7b", "node_id": "n-7f3a9c", "not_before": "2026-11-18T11:55:00Z",
		"not_after": "2026-12-18T12:00:00Z", "revoked": true, "revocation_reason": "superseded",
		"request_id": "q3vmxk2ad7rw6nhbg4yte5psl2",
	}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("%s = %v, want %v", k, got[0][k], v)
		}
	}
	if got[1]["revoked"] != false || got[1]["revocation_reason"] != "" {
		t.Errorf("a valid certificate: %v", got[1])
	}
}

func TestCertsListEmpty(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct{ format, want string }{
		{"json", "[]\n"},
		{"table", "No certificates found.\n"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			r := start(t, pki, certsFake(nil)).run("certs", "list", "--node", "n-unknown", "-o", tc.format)
			checkOK(t, r)
			if r.stdout != tc.want {
				t.Errorf("stdout %q, want %q", r.stdout, tc.want)
			}
		})
	}
}

// TestCertsListErrors: a bad node ID is refused before any call; the
// server's refusals are reported in one line.
func TestCertsListErrors(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name     string
		args     []string
		serve    error
		wantCode int
		want     string
		calls    int
	}{
		{"bad node ID", []string{"certs", "list", "--node", "N/.."}, nil, cli.ExitUsage, `certs list: invalid --node "N/..": `, 0},
		{"stray argument", []string{"certs", "list", "x"}, nil, cli.ExitUsage, `certs list: unexpected argument "x"`, 0},
		{"CA down", []string{"certs", "list"}, status.Error(codes.Unavailable, "certificate authority is unavailable; retry later"),
			cli.ExitError, "berthctl: list certificates: certificate authority is unavailable; retry later", 1},
		{"refused", []string{"certs", "list", "--node", "n-1"}, status.Error(codes.InvalidArgument, "node_id must be a node ID"),
			cli.ExitError, "berthctl: list certificates: node_id must be a node ID", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAdmin{listCerts: func(context.Context, *berthv1.ListCertificatesRequest) (*berthv1.ListCertificatesResponse, error) {
				return nil, tc.serve
			}}
			r := start(t, pki, fake).run(tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Fatalf("exit %d, stderr %q, stdout %q; want %d and %q", r.code, r.stderr, r.stdout, tc.wantCode, tc.want)
			}
			if n := len(fake.received()); n != tc.calls {
				t.Errorf("%d calls, want %d", n, tc.calls)
			}
		})
	}
}
