package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/pflag"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func ekCommand() *command {
	return &command{
		name:    "ek",
		summary: "Enrol TPM endorsement keys",
		help:    "Manage the TPM endorsement keys (EKs) enrolled in advance: a TPM node whose EK\nis enrolled is approved at registration without a bootstrap token.",
		subs: []*command{
			{name: "import", args: "FILE", summary: "Enrol the EKs listed in a file", setup: setupEKImport,
				help: "Enrol the endorsement keys listed in FILE (- for standard input): one per line,\n" +
					"its ek_hash (sha256:HEX, as nodes get shows it, or as\n" +
					"  openssl x509 -in ek.pem -noout -pubkey | openssl pkey -pubin -outform der | sha256sum\n" +
					"computes it from an EK certificate), then optionally a label. Blank lines and\n" +
					"lines starting with # are skipped. A known EK gets the new label."},
		},
	}
}

var ekLineHash = regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`)

// parseEKFile reads the import format; line numbers in errors count from 1.
func parseEKFile(r io.Reader) ([]*berthv1.EnrolledEK, error) {
	var eks []*berthv1.EnrolledEK
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hash := strings.Fields(line)[0]
		label := strings.TrimPrefix(line, hash)
		if !ekLineHash.MatchString(hash) {
			return nil, fmt.Errorf("line %d: %q is not an ek_hash (sha256: and 64 hex digits)", n, hash)
		}
		eks = append(eks, &berthv1.EnrolledEK{Hash: strings.ToLower(hash), Label: strings.TrimSpace(label)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(eks) == 0 {
		return nil, fmt.Errorf("no endorsement keys in the file")
	}
	return eks, nil
}

func setupEKImport(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "FILE"); err != nil {
			return err
		}
		var data []byte
		var err error
		if args[0] == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(args[0])
		}
		if err != nil {
			return fmt.Errorf("ek import: %w", err)
		}
		eks, err := parseEKFile(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("ek import %s: %w", args[0], err)
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		resp, err := c.ImportEKs(ctx, &berthv1.ImportEKsRequest{Eks: eks})
		if err != nil {
			return s.callError("ek import", err)
		}
		out := struct {
			Added   int32 `json:"added"`
			Updated int32 `json:"updated"`
		}{resp.GetAdded(), resp.GetUpdated()}
		return s.emit(out, func(w io.Writer) {
			fmt.Fprintf(w, "Enrolled %d new endorsement keys; relabelled %d.\n", out.Added, out.Updated)
		})
	}
}
