package cli

import (
	"context"
	"encoding/pem"
	"fmt"

	"github.com/spf13/pflag"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func caCommand() *command {
	return &command{
		name:    "ca",
		summary: "Fetch what the certificate authority publishes",
		help:    "Fetch what berth's certificate authority publishes for software outside berth.",
		subs: []*command{
			{name: "crl", summary: "Print the revocation list of node certificates", setup: setupCACRL,
				help: "Print the CA's X.509 revocation list (PEM, or DER with --der), signed by the\n" +
					"intermediate, for libvirt, nginx and other software that checks node\n" +
					"certificates:\n\n" +
					"  berthctl ca crl > node.crl\n" +
					"  openssl verify -crl_check -CAfile chain.pem -CRLfile node.crl node.crt\n\n" +
					"With -o json: crl_number, this_update, next_update, revoked and crl (PEM)."},
		},
	}
}

// crlJSON is the output of berthctl ca crl -o json.
type crlJSON struct {
	CRLNumber  string `json:"crl_number"`
	ThisUpdate string `json:"this_update"`
	NextUpdate string `json:"next_update"`
	Revoked    int64  `json:"revoked"`
	CRL        string `json:"crl"`
}

func setupCACRL(fs *pflag.FlagSet) action {
	der := fs.Bool("der", false, "print the CRL as DER bytes instead of PEM")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		if *der && s.structured() {
			return s.usagef("--der and -o %s do not go together", s.set.output)
		}
		c, err := s.caClient()
		if err != nil {
			return err
		}
		resp, err := c.GetCRL(ctx, &berthv1.GetCRLRequest{})
		if err != nil {
			return s.caCallError("get revocation list", err)
		}
		if *der {
			_, err := s.cfg.Stdout.Write(resp.GetCrl())
			return err
		}
		block := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: resp.GetCrl()})
		v := crlJSON{
			CRLNumber:  resp.GetCrlNumber(),
			ThisUpdate: rfc3339(resp.GetThisUpdate()),
			NextUpdate: rfc3339(resp.GetNextUpdate()),
			Revoked:    resp.GetRevoked(),
			CRL:        string(block),
		}
		if s.structured() {
			return s.emit(v, nil)
		}
		_, err = fmt.Fprint(s.cfg.Stdout, v.CRL)
		return err
	}
}
