package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/ident"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func certsCommand() *command {
	return &command{
		name:    "certs",
		summary: "List the certificates the CA issued",
		help:    "Read the certificate authority's issued-certificate log.",
		subs: []*command{
			{name: "list", summary: "List every certificate the CA issued", setup: setupCertsList,
				help: "List every certificate the CA ever issued, oldest first, or those of one\n" +
					"node with --node: serial, node, validity, revocation and the request ID of\n" +
					"the issuance. The registration service (BERTH_SERVER) reads the CA's log,\n" +
					"so no CA address is needed. A node the CA never issued to has an empty\n" +
					"list.\n\n" +
					"With -o json: an array of serial, node_id, not_before, not_after, revoked,\n" +
					"revocation_reason, request_id, issued_at and revoked_at."},
		},
	}
}

// certJSON is an issued certificate in the JSON output contract. Keep the
// field names.
type certJSON struct {
	Serial           string `json:"serial"`
	NodeID           string `json:"node_id"`
	NotBefore        string `json:"not_before"`
	NotAfter         string `json:"not_after"`
	Revoked          bool   `json:"revoked"`
	RevocationReason string `json:"revocation_reason"`
	RequestID        string `json:"request_id"`
	IssuedAt         string `json:"issued_at"`
	RevokedAt        string `json:"revoked_at"`
}

func certView(c *berthv1.IssuedCertificate) certJSON {
	return certJSON{
		Serial:           c.GetSerial(),
		NodeID:           c.GetNodeId(),
		NotBefore:        rfc3339(c.GetNotBefore()),
		NotAfter:         rfc3339(c.GetNotAfter()),
		Revoked:          c.GetRevoked(),
		RevocationReason: c.GetRevocationReason(),
		RequestID:        c.GetRequestId(),
		IssuedAt:         rfc3339(c.GetIssuedAt()),
		RevokedAt:        rfc3339(c.GetRevokedAt()),
	}
}

func setupCertsList(fs *pflag.FlagSet) action {
	node := fs.String("node", "", "keep only the certificates of node `ID`")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		if *node != "" && ident.NodeID(*node) != nil {
			return s.usagef("invalid --node %q: %s", *node, ident.NodeIDRule)
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		resp, err := c.ListCertificates(ctx, &berthv1.ListCertificatesRequest{NodeId: *node})
		if err != nil {
			return s.callError("list certificates", err)
		}
		return s.printCerts(resp.GetCertificates())
	}
}

func (s *session) printCerts(certs []*berthv1.IssuedCertificate) error {
	views := make([]certJSON, len(certs))
	for i, c := range certs {
		views[i] = certView(c)
	}
	now := s.cfg.Now()
	return s.emit(views, func(w io.Writer) {
		if len(certs) == 0 {
			fmt.Fprintln(w, "No certificates found.")
			return
		}
		fmt.Fprintln(w, "SERIAL\tNODE\tISSUED\tEXPIRES\tREVOKED\tREQUEST")
		for i, c := range certs {
			v := views[i]
			revoked := "-"
			if v.Revoked {
				revoked = "yes"
				if v.RevocationReason != "" {
					revoked += " (" + v.RevocationReason + ")"
				}
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Serial, v.NodeID,
				relTime(c.GetIssuedAt(), now), relTime(c.GetNotAfter(), now), revoked, dash(v.RequestID))
		}
	})
}
