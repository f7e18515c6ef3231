package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berth-dev/berth/internal/buildinfo"
	"github.com/berth-dev/berth/internal/cli"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestVersion: berthctl version shows berthctl's build and the server's,
// which every server built by rpc.NewServer answers (VersionService).
func TestVersion(t *testing.T) {
	h := start(t, newTestPKI(t), &fakeAdmin{})
	info := buildinfo.Get() // the fake server runs in this process
	client := "berthctl " + info.String() + "\n"

	r := h.run("version")
	checkOK(t, r)
	want := client + "server   " + info.String() + " at " + h.addr + "\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = h.run("-o", "json", "version")
	checkOK(t, r)
	var got map[string]map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout %q: %v", r.stdout, err)
	}
	build := map[string]string{"version": info.Version, "commit": info.Commit, "build_date": info.Date, "go_version": info.GoVersion, "platform": info.Platform}
	server := map[string]string{"address": h.addr}
	for k, v := range build {
		server[k] = v
	}
	if diff := cmp.Diff(map[string]map[string]string{"client": build, "server": server}, got); diff != "" {
		t.Errorf("version -o json (-want +got):\n%s", diff)
	}

	// --client and --version need no server and no settings.
	for _, args := range [][]string{{"version", "--client"}, {"--version"}} {
		r = runEnv(t, nil, args...)
		checkOK(t, r)
		if r.stdout != client {
			t.Errorf("%v: stdout %q, want %q", args, r.stdout, client)
		}
	}
	r = runEnv(t, nil, "version", "--client", "-o", "json")
	checkOK(t, r)
	if strings.Contains(r.stdout, "server") || !strings.Contains(r.stdout, `"client"`) {
		t.Errorf("version --client -o json: %q", r.stdout)
	}
	if calls := h.fake.received(); len(calls) != 0 {
		t.Errorf("version called the admin API: %v", calls)
	}
}

func TestVersionFailures(t *testing.T) {
	h := start(t, newTestPKI(t), &fakeAdmin{})
	client := "berthctl " + buildinfo.Get().String() + "\n"
	dead := deadAddr(t)
	for _, tc := range []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no settings", nil, []string{"version"}, cli.ExitUsage, "",
			"berthctl: missing connection settings: set --server or BERTH_SERVER, --ca or BERTH_CA, --cert or BERTH_CERT, --key or BERTH_KEY\nRun 'berthctl version -h' for usage.\n"},
		{"argument", h.env, []string{"version", "now"}, cli.ExitUsage, "",
			"berthctl: version: unexpected argument \"now\"\nRun 'berthctl version -h' for usage.\n"},
		{"unreachable server shows the client first", h.withEnv(map[string]string{"BERTH_SERVER": dead}), []string{"version"}, cli.ExitError, client,
			"berthctl: server version: cannot reach server " + dead},
		{"unreachable server, json: nothing on stdout", h.withEnv(map[string]string{"BERTH_SERVER": dead}), []string{"version", "-o", "json"}, cli.ExitError, "",
			"berthctl: server version: cannot reach server " + dead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runEnv(t, tc.env, tc.args...)
			if r.code != tc.wantCode || r.stdout != tc.wantStdout {
				t.Errorf("exit %d, stdout %q; want %d, %q", r.code, r.stdout, tc.wantCode, tc.wantStdout)
			}
			if !strings.HasPrefix(r.stderr, tc.wantStderr) || (tc.wantCode == cli.ExitError && strings.Count(r.stderr, "\n") != 1) {
				t.Errorf("stderr %q, want %q", r.stderr, tc.wantStderr)
			}
		})
	}
}

// TestSingleDashGlobalFlags: Go's flag package took -server; so does
// berthctl on cobra, before or after the command words.
func TestSingleDashGlobalFlags(t *testing.T) {
	h := start(t, newTestPKI(t), &fakeAdmin{listNodes: func(context.Context, *berthv1.ListNodesRequest) (*berthv1.ListNodesResponse, error) {
		return &berthv1.ListNodesResponse{}, nil
	}})
	r := runEnv(t, nil, "-server", h.addr, "-ca", h.pki.caFile, "nodes", "list", "-cert", h.pki.adminCert, "-key="+h.pki.adminKey, "-output", "json")
	checkOK(t, r)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("stdout %q, want an empty JSON list", r.stdout)
	}
}
