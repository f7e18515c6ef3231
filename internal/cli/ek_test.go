package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

const (
	ekA = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	ekB = "sha256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

func TestEKImport(t *testing.T) {
	pki := newTestPKI(t)
	file := filepath.Join(t.TempDir(), "eks.txt")
	if err := os.WriteFile(file, []byte("# rack 1\n\n"+ekA+"\track1 node 01\n  "+ekB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := &fakeAdmin{importEKs: func(context.Context, *berthv1.ImportEKsRequest) (*berthv1.ImportEKsResponse, error) {
		return &berthv1.ImportEKsResponse{Added: 1, Updated: 1}, nil
	}}
	r := start(t, pki, fake).run("ek", "import", file)
	checkOK(t, r)
	checkRequests(t, fake, &berthv1.ImportEKsRequest{Eks: []*berthv1.EnrolledEK{
		{Hash: ekA, Label: "rack1 node 01"}, {Hash: strings.ToLower(ekB)},
	}})
	if want := "Enrolled 1 new endorsement keys; relabelled 1.\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
}

// TestEKImportBadFile: a file that is not a list of EK hashes is refused
// before anything is sent, naming the line.
func TestEKImportBadFile(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct{ name, content, want string }{
		{"not a hash", ekA + "\nrack1-node2 " + ekA + "\n", `line 2: "rack1-node2" is not an ek_hash`},
		{"short hash", "sha256:abcd\n", `line 1: "sha256:abcd" is not an ek_hash`},
		{"empty", "# nothing\n", "no endorsement keys in the file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "eks.txt")
			if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			fake := &fakeAdmin{}
			r := start(t, pki, fake).run("ek", "import", file)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want it to say %q", r.code, r.stderr, tc.want)
			}
			checkRequests(t, fake)
		})
	}
}
