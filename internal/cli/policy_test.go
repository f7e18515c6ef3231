package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

func TestPolicyPCRSet(t *testing.T) {
	fake := &fakeAdmin{setPCRPolicy: func(_ context.Context, r *berthv1.SetPCRPolicyRequest) (*berthv1.SetPCRPolicyResponse, error) {
		p := r.GetPolicy()
		p.UpdatedAt = ts(testNow)
		return &berthv1.SetPCRPolicyResponse{Policy: p}, nil
	}}
	r := start(t, newTestPKI(t), fake).run("policy", "pcr", "set", "--label", "image=node-4.5", digestA, digestB, "--enforce")
	checkOK(t, r)
	checkRequests(t, fake, &berthv1.SetPCRPolicyRequest{Policy: &berthv1.PCRPolicy{
		Label: "image=node-4.5", Digests: []string{digestA, strings.ToLower(digestB)}, Enforce: true}})
	if want := "PCR policy of image=node-4.5: 2 allowed digests; other boots are refused.\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
}

func TestPolicyPCRListAndDelete(t *testing.T) {
	fake := &fakeAdmin{
		listPCRPolicies: func(context.Context, *berthv1.ListPCRPoliciesRequest) (*berthv1.ListPCRPoliciesResponse, error) {
			return &berthv1.ListPCRPoliciesResponse{Policies: []*berthv1.PCRPolicy{
				{Label: "image=node-4.5", Digests: []string{digestA}, Enforce: true, UpdatedAt: ts(testNow)},
			}}, nil
		},
		deletePCRPolicy: func(_ context.Context, r *berthv1.DeletePCRPolicyRequest) (*berthv1.DeletePCRPolicyResponse, error) {
			if r.GetLabel() != "image=node-4.5" {
				return nil, status.Error(codes.NotFound, "no PCR policy for this label")
			}
			return &berthv1.DeletePCRPolicyResponse{}, nil
		},
	}
	srv := start(t, newTestPKI(t), fake)
	r := srv.run("policy", "pcr", "list", "-o", "json")
	checkOK(t, r)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0]["label"] != "image=node-4.5" || got[0]["enforce"] != true || got[0]["updated_at"] != "2026-11-21T12:00:00Z" {
		t.Errorf("policy pcr list -o json = %v", got)
	}
	r = srv.run("policy", "pcr", "list")
	checkOK(t, r)
	if !strings.Contains(r.stdout, "image=node-4.5") || !strings.Contains(r.stdout, digestA) {
		t.Errorf("policy pcr list = %q", r.stdout)
	}
	r = srv.run("policy", "pcr", "delete", "--label", "image=node-4.5")
	checkOK(t, r)
	if r.stdout != "Deleted the PCR policy of image=node-4.5.\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	r = srv.run("policy", "pcr", "delete", "--label", "image=other")
	if r.code == 0 || !strings.Contains(r.stderr, "no PCR policy for this label") {
		t.Errorf("deleting an unknown policy: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestPolicyPCRBadInput: bad labels and digests are refused before
// anything is sent, with a readable reason.
func TestPolicyPCRBadInput(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no label", []string{"policy", "pcr", "set", digestA}, "missing --label k=v"},
		{"label without value", []string{"policy", "pcr", "set", "--label", "image", digestA}, `invalid --label "image": want one label k=v`},
		{"label with empty key", []string{"policy", "pcr", "set", "--label", "=x", digestA}, `invalid --label "=x"`},
		{"no digest", []string{"policy", "pcr", "set", "--label", "image=a"}, "missing DIGEST"},
		{"short digest", []string{"policy", "pcr", "set", "--label", "image=a", "sha256:abcd"}, `invalid digest "sha256:abcd"`},
		{"digest without algorithm", []string{"policy", "pcr", "set", "--label", "image=a", strings.Repeat("a", 64)}, "invalid digest"},
		{"delete without label", []string{"policy", "pcr", "delete"}, "missing --label k=v"},
		{"unknown subcommand", []string{"policy", "pcr", "show"}, `unknown command "show"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAdmin{}
			r := start(t, pki, fake).run(tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want it to say %q", r.code, r.stderr, tc.want)
			}
			checkRequests(t, fake)
		})
	}
}
