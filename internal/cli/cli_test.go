package cli_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/berth-dev/berth/internal/cli"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// checkGolden compares got with testdata/name.golden. Times need no
// normalising: berthctl's clock is testNow and the fake's timestamps are
// fixed offsets from it.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("output differs from %s (-want +got):\n%s", path, diff)
	}
}

func requests(calls []call) []proto.Message {
	out := make([]proto.Message, len(calls))
	for i, c := range calls {
		out[i] = c.req
	}
	return out
}

func checkRequests(t *testing.T, f interface{ received() []call }, want ...proto.Message) {
	t.Helper()
	if diff := cmp.Diff(want, requests(f.received()), protocmp.Transform(), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("requests the server received (-want +got):\n%s", diff)
	}
}

func checkOK(t *testing.T, r result) {
	t.Helper()
	if r.code != cli.ExitOK || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	fake := &fakeAdmin{}
	h := start(t, newTestPKI(t), fake)
	for _, tc := range []struct {
		name string
		env  map[string]string // changes to the harness environment
		args []string
		want string // first line of stderr
		hint string // second line of stderr; empty for none
	}{
		{"no command", nil, nil,
			"berthctl: missing command (one of: nodes, tokens, api-tokens, certs, ek, policy, bundles, ca, watch, ui, settings)", "berthctl"},
		{"unknown command", nil, []string{"frob"},
			`berthctl: unknown command "frob" (one of: nodes, tokens, api-tokens, certs, ek, policy, bundles, ca, watch, ui, settings)`, "berthctl"},
		{"unknown subcommand", nil, []string{"nodes", "frob"},
			`berthctl: nodes: unknown command "frob" (one of: list, get, approve, reject, revoke, delete, allow-replacement, label)`, "berthctl nodes"},
		{"missing subcommand", nil, []string{"tokens"},
			"berthctl: tokens: missing command (one of: create, list, revoke)", "berthctl tokens"},
		{"unknown flag", nil, []string{"nodes", "list", "--frob"},
			"berthctl: nodes list: unknown flag -frob", "berthctl nodes list"},
		{"unknown global flag", nil, []string{"--frob", "nodes", "list"},
			"berthctl: unknown flag -frob", "berthctl"},
		{"flag of another command", nil, []string{"nodes", "get", "x", "--reason", "r"},
			"berthctl: nodes get: unknown flag -reason", "berthctl nodes get"},
		{"flag without value", nil, []string{"nodes", "list", "-o"},
			"berthctl: nodes list: flag needs an argument: -o", "berthctl nodes list"},
		{"missing ID get", nil, []string{"nodes", "get"},
			"berthctl: nodes get: missing node ID", "berthctl nodes get"},
		{"missing ID approve", nil, []string{"nodes", "approve"},
			"berthctl: nodes approve: missing node ID", "berthctl nodes approve"},
		{"missing ID reject", nil, []string{"nodes", "reject", "-o", "json"},
			"berthctl: nodes reject: missing node ID", "berthctl nodes reject"},
		{"missing ID revoke", nil, []string{"nodes", "revoke", "--reason", "x"},
			"berthctl: nodes revoke: missing node ID", "berthctl nodes revoke"},
		{"missing ID delete", nil, []string{"nodes", "delete"},
			"berthctl: nodes delete: missing node ID", "berthctl nodes delete"},
		{"missing ID allow-replacement", nil, []string{"nodes", "allow-replacement"},
			"berthctl: nodes allow-replacement: missing node ID", "berthctl nodes allow-replacement"},
		{"missing token ID", nil, []string{"tokens", "revoke"},
			"berthctl: tokens revoke: missing token ID", "berthctl tokens revoke"},
		{"empty ID", nil, []string{"nodes", "get", " "},
			"berthctl: nodes get: empty node ID", "berthctl nodes get"},
		{"two IDs", nil, []string{"nodes", "delete", "a", "b"},
			`berthctl: nodes delete: unexpected argument "b"`, "berthctl nodes delete"},
		{"argument to list", nil, []string{"nodes", "list", "approved"},
			`berthctl: nodes list: unexpected argument "approved"`, "berthctl nodes list"},
		{"bad label", nil, []string{"nodes", "list", "--label", "rack"},
			`berthctl: nodes list: invalid value "rack" for flag -label: want k=v`, "berthctl nodes list"},
		{"label without key", nil, []string{"tokens", "create", "--label", "=r1"},
			`berthctl: tokens create: invalid value "=r1" for flag -label: want k=v`, "berthctl tokens create"},
		{"label twice", nil, []string{"tokens", "create", "--label", "a=1", "--label", "a=2"},
			`berthctl: tokens create: invalid value "a=2" for flag -label: label "a" given twice`, "berthctl tokens create"},
		{"bad status", nil, []string{"nodes", "list", "--status", "asleep"},
			`berthctl: nodes list: invalid value "asleep" for flag -status: want pending, approved, rejected or revoked`, "berthctl nodes list"},
		{"negative limit", nil, []string{"nodes", "list", "--limit", "-1"},
			"berthctl: nodes list: invalid --limit -1: want 0 (all) or more", "berthctl nodes list"},
		{"bad ttl", nil, []string{"tokens", "create", "--ttl", "tomorrow"},
			`berthctl: tokens create: invalid value "tomorrow" for flag -ttl: want a Go duration of at least 1s, such as 24h, 90m or 1h30m`, "berthctl tokens create"},
		{"ttl without unit", nil, []string{"tokens", "create", "--ttl", "3600"},
			`berthctl: tokens create: invalid value "3600" for flag -ttl: want a Go duration of at least 1s, such as 24h, 90m or 1h30m`, "berthctl tokens create"},
		{"ttl too short", nil, []string{"tokens", "create", "--ttl", "0s"},
			`berthctl: tokens create: invalid value "0s" for flag -ttl: want a Go duration of at least 1s, such as 24h, 90m or 1h30m`, "berthctl tokens create"},
		{"zero uses", nil, []string{"tokens", "create", "--uses", "0"},
			"berthctl: tokens create: invalid --uses 0: want 1 or more", "berthctl tokens create"},
		{"unknown min identity", nil, []string{"tokens", "create", "--auto-approve", "--min-identity", "usb"},
			`berthctl: tokens create: invalid --min-identity "usb": want tpm, seed-file, file or site-secret`, "berthctl tokens create"},
		{"site secrets without auto-approve", nil, []string{"tokens", "create", "--allow-site-secret"},
			"berthctl: tokens create: --allow-site-secret needs --auto-approve", "berthctl tokens create"},
		{"bad output flag", nil, []string{"-o", "xml", "nodes", "list"},
			`berthctl: invalid output format "xml" from -o: want table, wide, json or yaml`, "berthctl nodes list"},
		{"bad output env", map[string]string{"BERTH_OUTPUT": "xml"}, []string{"nodes", "list"},
			`berthctl: invalid output format "xml" from BERTH_OUTPUT: want table, wide, json or yaml`, "berthctl nodes list"},
		{"bad timeout", nil, []string{"nodes", "list", "--timeout", "soon"},
			`berthctl: invalid timeout "soon" from --timeout: want a positive Go duration such as 30s or 2m`, "berthctl nodes list"},
		{"missing bundles subcommand", nil, []string{"bundles"},
			"berthctl: bundles: missing command (one of: put, seal, get, history, approve, reset)", "berthctl bundles"},
		{"bad bundles server env is only used when needed", map[string]string{"BERTH_OUTPUT": "xml", "BERTH_BUNDLES_SERVER": "x:1"}, []string{"bundles", "get", "n-1"},
			`berthctl: invalid output format "xml" from BERTH_OUTPUT: want table, wide, json or yaml`, "berthctl bundles get"},
		{"watch argument", nil, []string{"watch", "heartbeat"},
			`berthctl: watch: unexpected argument "heartbeat"`, "berthctl watch"},
		{"watch negative count", nil, []string{"watch", "--count", "-1"},
			"berthctl: watch: invalid --count -1: want 0 (no limit) or more", "berthctl watch"},
		{"watch unknown service", nil, []string{"watch", "--service", "heartbeat,ca"},
			`berthctl: watch: invalid value "heartbeat,ca" for flag -service: want registration, bundles or heartbeat`, "berthctl watch"},
		{"watch unknown type", nil, []string{"watch", "--type", "healty"},
			`berthctl: watch: invalid value "healty" for flag -type: unknown event type (see berthctl watch -h)`, "berthctl watch"},
		{"watch empty node", nil, []string{"watch", "--node", ""},
			`berthctl: watch: invalid value "" for flag -node: empty value`, "berthctl watch"},
		{"watch too many nodes", nil, append([]string{"watch"}, manyNodes(101)...),
			"berthctl: watch: 101 --node flags: at most 100", "berthctl watch"},
		{"watch cursor without service", nil, []string{"watch", "--after", "42"},
			`berthctl: watch: invalid value "42" for flag -after: want service=cursor, such as heartbeat=42, with a cursor of 0 or more`, "berthctl watch"},
		{"watch negative cursor", nil, []string{"watch", "--after", "heartbeat=-1"},
			`berthctl: watch: invalid value "heartbeat=-1" for flag -after: want service=cursor, such as heartbeat=42, with a cursor of 0 or more`, "berthctl watch"},
		{"watch cursor twice", nil, []string{"watch", "--after", "heartbeat=1", "--after", "heartbeat=2"},
			`berthctl: watch: invalid value "heartbeat=2" for flag -after: cursor of heartbeat given twice`, "berthctl watch"},
		{"watch cursor of a service left out", nil, []string{"watch", "--service", "heartbeat", "--after", "registration=4"},
			"berthctl: watch: --after registration=4: registration is not watched (see --service)", "berthctl watch"},
		{"watch type of a service left out", nil, []string{"watch", "--service", "heartbeat", "--type", "approved"},
			"berthctl: watch: --type approved: approved events come from registration, which is not watched (see --service)", "berthctl watch"},
		{"watch cursor of a service no type selects", nil, []string{"watch", "--type", "suspect", "--after", "bundles=4"},
			"berthctl: watch: --after bundles=4: no --type selects bundles events", "berthctl watch"},
		{"watch bad timeout", nil, []string{"watch", "--timeout", "0s"},
			`berthctl: invalid timeout "0s" from --timeout: want a positive Go duration such as 30s or 2m`, "berthctl watch"},
		{"help for unknown command", nil, []string{"help", "nodes", "frob"},
			`berthctl: help: unknown command "nodes frob"`, "berthctl nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runEnv(t, h.withEnv(tc.env), tc.args...)
			if r.code != cli.ExitUsage {
				t.Errorf("exit %d, want %d", r.code, cli.ExitUsage)
			}
			want := tc.want + "\n"
			if tc.hint != "" {
				want += "Run '" + tc.hint + " -h' for usage.\n"
			}
			if r.stderr != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
	if calls := fake.received(); len(calls) != 0 {
		t.Errorf("usage errors reached the server: %v", calls)
	}
}

// manyNodes returns n --node flags.
func manyNodes(n int) []string {
	var args []string
	for i := range n {
		args = append(args, "--node", fmt.Sprintf("n-%d", i))
	}
	return args
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		golden string
	}{
		{[]string{"-h"}, "help_root"},
		{[]string{"--help"}, "help_root"},
		{[]string{"help"}, "help_root"},
		{[]string{"nodes", "-h"}, "help_nodes"},
		{[]string{"help", "nodes"}, "help_nodes"},
		{[]string{"nodes", "list", "-h"}, "help_nodes_list"},
		{[]string{"nodes", "list", "--status", "approved", "--help"}, "help_nodes_list"},
		{[]string{"nodes", "revoke", "-h"}, "help_nodes_revoke"},
		{[]string{"help", "nodes", "revoke"}, "help_nodes_revoke"},
		{[]string{"tokens", "-h"}, "help_tokens"},
		{[]string{"tokens", "create", "-h"}, "help_tokens_create"},
		{[]string{"tokens", "list", "-h"}, "help_tokens_list"},
		{[]string{"bundles", "-h"}, "help_bundles"},
		{[]string{"help", "bundles"}, "help_bundles"},
		{[]string{"bundles", "put", "-h"}, "help_bundles_put"},
		{[]string{"bundles", "put", "n-1", "--file", "x", "--help"}, "help_bundles_put"},
		{[]string{"help", "bundles", "approve"}, "help_bundles_approve"},
		{[]string{"watch", "--help"}, "help_watch"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			// No environment at all: help needs no credentials.
			r := runEnv(t, nil, tc.args...)
			checkOK(t, r)
			checkGolden(t, tc.golden, r.stdout)
		})
	}
	// Every command has help that names its flags.
	for _, args := range [][]string{
		{"nodes", "get", "-h"}, {"nodes", "approve", "-h"}, {"nodes", "reject", "-h"},
		{"nodes", "delete", "-h"}, {"nodes", "allow-replacement", "-h"}, {"tokens", "revoke", "-h"},
		{"bundles", "get", "-h"}, {"bundles", "history", "-h"}, {"bundles", "reset", "-h"},
	} {
		r := runEnv(t, nil, args...)
		checkOK(t, r)
		arg := " ID"
		if args[0] == "bundles" {
			arg = " NODE"
		}
		if !strings.Contains(r.stdout, "Usage:\n  berthctl "+strings.Join(args[:2], " ")+arg+" [flags]") ||
			!strings.Contains(r.stdout, "BERTH_SERVER") || !strings.Contains(r.stdout, "BERTH_BUNDLES_SERVER") {
			t.Errorf("%v: help is\n%s", args, r.stdout)
		}
	}
}
