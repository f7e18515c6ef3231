package cli_test

import (
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/cli"
)

// TestRefusesAnotherServiceAtTheRegistrationAddress: the heartbeat
// service's credentials (same deployment, same CA) serving the admin API
// on the registration address are refused at the handshake, and berthctl
// says which identity it found. Nothing reaches the impostor.
func TestRefusesAnotherServiceAtTheRegistrationAddress(t *testing.T) {
	pki := newTestPKI(t)
	fake := &fakeAdmin{listNodes: pagedNodes(allNodes())}
	h := startAs(t, pki, []string{"heartbeat"}, fake, nil, nil)
	for _, args := range [][]string{{"nodes", "list"}, {"tokens", "list"}, {"version"}} {
		r := h.run(args...)
		want := h.addr + " is not the registration service: expected spiffe://berth.local/service/registration or spiffe://berth.local/service/api, " +
			"found spiffe://berth.local/service/heartbeat (check BERTH_SERVER)"
		if args[0] == "version" {
			want = "expected spiffe://berth.local/service/registration or spiffe://berth.local/service/api, found spiffe://berth.local/service/heartbeat"
		}
		if r.code != cli.ExitError || !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("berthctl %s: exit %d, stderr %q; want exit 1 and one line saying %q", strings.Join(args, " "), r.code, r.stderr, want)
		}
	}
	if got := fake.received(); len(got) != 0 {
		t.Errorf("the impostor received %d calls", len(got))
	}
}
