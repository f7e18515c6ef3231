package cli_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/cli"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestServerErrors(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name string
		fake *fakeAdmin
		args []string
		want string
	}{
		{"not found", &fakeAdmin{approveNode: func(context.Context, *berthv1.ApproveNodeRequest) (*berthv1.ApproveNodeResponse, error) {
			return nil, status.Error(codes.NotFound, "node not found")
		}}, []string{"nodes", "approve", "abc"}, "berthctl: approve node abc: node not found"},
		{"not found get json", &fakeAdmin{getNode: func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
			return nil, status.Error(codes.NotFound, "node not found")
		}}, []string{"nodes", "get", "abc", "-o", "json"}, "berthctl: get node abc: node not found"},
		{"failed precondition", &fakeAdmin{rejectNode: func(context.Context, *berthv1.RejectNodeRequest) (*berthv1.RejectNodeResponse, error) {
			return nil, status.Error(codes.FailedPrecondition, "node is not pending")
		}}, []string{"nodes", "reject", "abc"}, "berthctl: reject node abc: node is not pending"},
		{"permission denied", &fakeAdmin{revokeNode: func(context.Context, *berthv1.RevokeNodeRequest) (*berthv1.RevokeNodeResponse, error) {
			return nil, status.Error(codes.PermissionDenied, "admin may not revoke this node")
		}}, []string{"nodes", "revoke", "abc", "--reason", "r"}, "berthctl: revoke node abc: admin may not revoke this node"},
		{"delete", &fakeAdmin{deleteNode: func(context.Context, *berthv1.DeleteNodeRequest) (*berthv1.DeleteNodeResponse, error) {
			return nil, status.Error(codes.NotFound, "node not found")
		}}, []string{"nodes", "delete", "abc"}, "berthctl: delete node abc: node not found"},
		{"allow-replacement", &fakeAdmin{allowReplacement: func(context.Context, *berthv1.AllowReplacementRequest) (*berthv1.AllowReplacementResponse, error) {
			return nil, status.Error(codes.FailedPrecondition, "node is revoked")
		}}, []string{"nodes", "allow-replacement", "abc"}, "berthctl: allow replacement of node abc: node is revoked"},
		{"invalid argument on a later page", &fakeAdmin{listNodes: func(_ context.Context, r *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
			if r.GetPageToken() != "" {
				return nil, status.Error(codes.InvalidArgument, "bad page token")
			}
			return &berthv1.ListNodesResponse{Nodes: allNodes(), NextPageToken: "x"}, nil
		}}, []string{"nodes", "list"}, "berthctl: list nodes: bad page token"},
		{"create token", &fakeAdmin{createToken: func(context.Context, *berthv1.CreateTokenRequest) (*berthv1.CreateTokenResponse, error) {
			return nil, status.Error(codes.InvalidArgument, "ttl is longer than 30 days")
		}}, []string{"tokens", "create", "--ttl", "800h"}, "berthctl: create token: ttl is longer than 30 days"},
		{"list tokens", &fakeAdmin{listTokens: func(context.Context, *berthv1.ListTokensRequest) (*berthv1.ListTokensResponse, error) {
			return nil, status.Error(codes.Internal, "internal error")
		}}, []string{"tokens", "list"}, "berthctl: list tokens: internal error"},
		{"revoke token", &fakeAdmin{revokeToken: func(context.Context, *berthv1.RevokeTokenRequest) (*berthv1.RevokeTokenResponse, error) {
			return nil, status.Error(codes.NotFound, "token not found")
		}}, []string{"tokens", "revoke", "tok-x"}, "berthctl: revoke token tok-x: token not found"},
		{"server side unavailable keeps its message", &fakeAdmin{approveNode: func(context.Context, *berthv1.ApproveNodeRequest) (*berthv1.ApproveNodeResponse, error) {
			return nil, status.Error(codes.Unavailable, "certificate authority unavailable")
		}}, []string{"nodes", "approve", "abc"}, "berthctl: approve node abc: certificate authority unavailable"},
		{"multi-line message stays on one line", &fakeAdmin{getNode: func(context.Context, *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
			return nil, status.Error(codes.NotFound, "node not found\nanywhere")
		}}, []string{"nodes", "get", "abc"}, "berthctl: get node abc: node not found anywhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, pki, tc.fake).run(tc.args...)
			if r.code != cli.ExitError {
				t.Errorf("exit %d, want %d", r.code, cli.ExitError)
			}
			if r.stderr != tc.want+"\n" {
				t.Errorf("stderr %q, want %q", r.stderr, tc.want+"\n")
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

func TestMissingCredentials(t *testing.T) {
	h := start(t, newTestPKI(t), &fakeAdmin{})
	for _, tc := range []struct {
		name  string
		unset []string
		want  string
	}{
		{"all", []string{"BERTH_SERVER", "BERTH_CA", "BERTH_CERT", "BERTH_KEY"},
			"berthctl: missing connection settings: set --server or BERTH_SERVER, --ca or BERTH_CA, --cert or BERTH_CERT, --key or BERTH_KEY"},
		{"server", []string{"BERTH_SERVER"}, "berthctl: missing connection settings: set --server or BERTH_SERVER"},
		{"ca", []string{"BERTH_CA"}, "berthctl: missing connection settings: set --ca or BERTH_CA"},
		{"key", []string{"BERTH_KEY"}, "berthctl: missing connection settings: set --key or BERTH_KEY"},
		{"cert and key", []string{"BERTH_CERT", "BERTH_KEY"}, "berthctl: missing connection settings: set --cert or BERTH_CERT, --key or BERTH_KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changes := map[string]string{}
			for _, k := range tc.unset {
				changes[k] = ""
			}
			r := runEnv(t, h.withEnv(changes), "nodes", "list")
			want := tc.want + "\nRun 'berthctl nodes list -h' for usage.\n"
			if r.code != cli.ExitUsage || r.stderr != want {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2, stderr:\n%s", r.code, r.stderr, want)
			}
		})
	}
	// Usage errors come before missing credentials.
	r := runEnv(t, nil, "nodes", "get")
	if r.code != cli.ExitUsage || !strings.HasPrefix(r.stderr, "berthctl: nodes get: missing node ID\n") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	// Files that cannot be loaded are named, with where their path came from.
	r = runEnv(t, h.withEnv(map[string]string{"BERTH_CERT": filepath.Join(h.pki.dir, "missing.crt")}), "nodes", "list")
	if r.code != cli.ExitError || !strings.HasPrefix(r.stderr, "berthctl: load admin certificate (BERTH_CERT ") ||
		!strings.Contains(r.stderr, "missing.crt") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	r = h.run("nodes", "list", "--ca", h.pki.adminKey)
	if r.code != cli.ExitError || !strings.HasPrefix(r.stderr, "berthctl: load CA certificates (--ca ") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if calls := h.fake.received(); len(calls) != 0 {
		t.Errorf("calls reached the server: %v", calls)
	}
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

func TestEnvAndFlagPrecedence(t *testing.T) {
	pki := newTestPKI(t)
	listed := func() *fakeAdmin {
		return &fakeAdmin{listNodes: func(context.Context, *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
			return &berthv1.ListNodesResponse{Nodes: []*berthv1.Node{nodePending()}}, nil
		}}
	}
	dead := deadAddr(t)
	for _, tc := range []struct {
		name     string
		env      func(h *harness) map[string]string
		args     func(h *harness) []string
		wantCode int
		// wantStdout is a prefix of stdout; wantStderr a prefix of stderr.
		wantStdout, wantStderr string
	}{
		{"output from env",
			func(h *harness) map[string]string { return h.withEnv(map[string]string{"BERTH_OUTPUT": "json"}) },
			func(*harness) []string { return []string{"nodes", "list"} },
			cli.ExitOK, "[\n  {\n", ""},
		{"output flag beats env",
			func(h *harness) map[string]string { return h.withEnv(map[string]string{"BERTH_OUTPUT": "json"}) },
			func(*harness) []string { return []string{"nodes", "list", "-o", "table"} },
			cli.ExitOK, "ID ", ""},
		{"output flag beats a bad env value",
			func(h *harness) map[string]string { return h.withEnv(map[string]string{"BERTH_OUTPUT": "xml"}) },
			func(*harness) []string { return []string{"-o", "json", "nodes", "list"} },
			cli.ExitOK, "[\n", ""},
		{"server flag beats env",
			func(h *harness) map[string]string { return h.withEnv(map[string]string{"BERTH_SERVER": dead}) },
			func(h *harness) []string { return []string{"nodes", "list", "--server", h.addr} },
			cli.ExitOK, "ID ", ""},
		{"server flag beats env, even a wrong one",
			func(h *harness) map[string]string { return h.env },
			func(*harness) []string { return []string{"nodes", "list", "--server", dead} },
			cli.ExitError, "", "berthctl: list nodes: cannot reach server " + dead + ": "},
		{"cert and key flags beat env",
			func(h *harness) map[string]string {
				return h.withEnv(map[string]string{"BERTH_CERT": h.pki.nodeCert, "BERTH_KEY": h.pki.nodeKey})
			},
			func(h *harness) []string {
				return []string{"nodes", "list", "--cert", h.pki.adminCert, "--key", h.pki.adminKey}
			},
			cli.ExitOK, "ID ", ""},
		{"cert flag over admin env",
			func(h *harness) map[string]string { return h.env },
			func(h *harness) []string {
				return []string{"--cert", h.pki.nodeCert, "--key", h.pki.nodeKey, "nodes", "list"}
			},
			cli.ExitError, "", "berthctl: list nodes: caller is not permitted to call this method (the certificate from --cert is spiffe://berth.local/node/n-1, not an admin identity)\n"},
		{"ca flag beats env",
			func(h *harness) map[string]string {
				return h.withEnv(map[string]string{"BERTH_CA": h.pki.foreignCAFile})
			},
			func(h *harness) []string { return []string{"nodes", "list", "--ca", h.pki.caFile} },
			cli.ExitOK, "ID ", ""},
		{"everything from flags",
			func(*harness) map[string]string { return nil },
			func(h *harness) []string {
				return []string{"nodes", "list", "--server", h.addr, "--ca", h.pki.caFile, "--cert", h.pki.adminCert, "--key", h.pki.adminKey, "--timeout", "10s"}
			},
			cli.ExitOK, "ID ", ""},
		{"timeout flag beats a bad env value",
			func(h *harness) map[string]string { return h.withEnv(map[string]string{"BERTH_TIMEOUT": "never"}) },
			func(*harness) []string { return []string{"nodes", "list", "--timeout", "10s"} },
			cli.ExitOK, "ID ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, pki, listed())
			r := runEnv(t, tc.env(h), tc.args(h)...)
			if r.code != tc.wantCode || !strings.HasPrefix(r.stdout, tc.wantStdout) || !strings.HasPrefix(r.stderr, tc.wantStderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q..., stderr %q...",
					r.code, r.stdout, r.stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
			if tc.wantCode != cli.ExitOK && strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", r.stderr)
			}
		})
	}
}

func TestRefusedCertificates(t *testing.T) {
	pki := newTestPKI(t)
	fake := &fakeAdmin{listNodes: pagedNodes(allNodes())}
	h := start(t, pki, fake)
	for _, tc := range []struct {
		name       string
		cert, key  string
		ca         string
		wantStderr string
	}{
		{"node certificate", pki.nodeCert, pki.nodeKey, pki.caFile,
			"berthctl: list nodes: caller is not permitted to call this method (the certificate from BERTH_CERT is spiffe://berth.local/node/n-1, not an admin identity)\n"},
		{"another deployment's admin certificate", pki.foreignCert, pki.foreignKey, pki.caFile,
			"berthctl: list nodes: client certificate is not issued by this deployment's CA (check BERTH_CERT)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runEnv(t, h.withEnv(map[string]string{"BERTH_CERT": tc.cert, "BERTH_KEY": tc.key, "BERTH_CA": tc.ca}), "nodes", "list")
			if r.code != cli.ExitError || r.stderr != tc.wantStderr || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, stderr %q", r.code, r.stdout, r.stderr, tc.wantStderr)
			}
		})
	}
	if calls := fake.received(); len(calls) != 0 {
		t.Errorf("refused calls reached the handler: %v", calls)
	}
}

func TestUnreachableServer(t *testing.T) {
	pki := newTestPKI(t)
	h := start(t, pki, &fakeAdmin{})
	dead := deadAddr(t)
	r := runEnv(t, h.withEnv(map[string]string{"BERTH_SERVER": dead}), "nodes", "approve", "abc")
	want := "berthctl: approve node abc: cannot reach server " + dead + ": dial tcp " + dead + ": connect: connection refused\n"
	if r.code != cli.ExitError || r.stderr != want {
		t.Errorf("exit %d, stderr %q; want exit 1, stderr %q", r.code, r.stderr, want)
	}

	// A server whose certificate the --ca roots do not vouch for.
	r = runEnv(t, h.withEnv(map[string]string{"BERTH_CA": pki.foreignCAFile}), "tokens", "list")
	wantPrefix := "berthctl: list tokens: TLS handshake with " + h.addr + " failed (check BERTH_CA): tls: failed to verify certificate"
	if r.code != cli.ExitError || !strings.HasPrefix(r.stderr, wantPrefix) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("exit %d, stderr %q; want exit 1, stderr %q...", r.code, r.stderr, wantPrefix)
	}
}

func TestTimeout(t *testing.T) {
	fake := &fakeAdmin{getNode: func(ctx context.Context, _ *berthv1.GetNodeRequest) (*berthv1.GetNodeResponse, error) {
		<-ctx.Done() // never answers; the client's deadline ends the call
		return nil, ctx.Err()
	}}
	h := start(t, newTestPKI(t), fake)
	r := h.run("nodes", "get", "abc", "--timeout", "300ms")
	want := "berthctl: get node abc: no answer from " + h.addr + " within 300ms (raise --timeout)\n"
	if r.code != cli.ExitError || r.stderr != want {
		t.Errorf("exit %d, stderr %q; want exit 1, stderr %q", r.code, r.stderr, want)
	}
}

func TestInterrupted(t *testing.T) {
	h := start(t, newTestPKI(t), &fakeAdmin{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // as if the operator pressed Ctrl-C
	var stdout, stderr strings.Builder
	code := cli.Config{Getenv: func(k string) string { return h.env[k] }, Stdout: &stdout, Stderr: &stderr}.
		Run(ctx, []string{"nodes", "get", "abc"})
	if code != cli.ExitError || stderr.String() != "berthctl: get node abc: interrupted\n" {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
