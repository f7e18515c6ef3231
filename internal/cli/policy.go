package cli

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/spf13/pflag"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func policyCommand() *command {
	return &command{
		name:    "policy",
		summary: "Manage server policies",
		help:    "Manage the server's policies.",
		subs: []*command{{
			name:    "pcr",
			summary: "Allowed boot PCR digests by node label",
			help: "A PCR policy lists, for the nodes carrying one label, the boot PCR digests\n" +
				"they may boot with: the boot_pcr_digest that nodes get shows for a TPM node\n" +
				"that quoted its boot. A node whose digest is not listed is flagged\n" +
				"(boot_policy_violation, an event) or, with --enforce, refused at boot. A node\n" +
				"that cannot quote (no TPM attestation key) counts as not listed.",
			subs: []*command{
				{name: "set", args: "DIGEST...", summary: "Set the allowed boot digests of a label", setup: setupPolicyPCRSet,
					help: "Set the boot PCR digests (sha256:HEX, as nodes get shows boot_pcr_digest)\n" +
						"allowed for nodes carrying --label k=v, replacing that label's policy."},
				{name: "list", summary: "List the PCR policies", setup: setupPolicyPCRList,
					help: "List the PCR policies by label."},
				{name: "delete", summary: "Delete a label's PCR policy", setup: setupPolicyPCRDelete,
					help: "Delete the PCR policy of --label k=v."},
			},
		}},
	}
}

var pcrDigestArg = regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`)

// policyLabel checks the one --label a policy command takes.
func (s *session) policyLabel(label string) (string, error) {
	k, v, ok := strings.Cut(label, "=")
	if label == "" {
		return "", s.usagef("missing --label k=v")
	}
	if !ok || k == "" || v == "" {
		return "", s.usagef("invalid --label %q: want one label k=v", label)
	}
	return label, nil
}

type pcrPolicyJSON struct {
	Label     string   `json:"label"`
	Digests   []string `json:"digests"`
	Enforce   bool     `json:"enforce"`
	UpdatedAt string   `json:"updated_at"`
}

func pcrPolicyView(p *berthv1.PCRPolicy) pcrPolicyJSON {
	v := pcrPolicyJSON{Label: p.GetLabel(), Digests: p.GetDigests(), Enforce: p.GetEnforce(), UpdatedAt: rfc3339(p.GetUpdatedAt())}
	if v.Digests == nil {
		v.Digests = []string{}
	}
	return v
}

func setupPolicyPCRSet(fs *pflag.FlagSet) action {
	label := fs.String("label", "", "the policy applies to nodes carrying label `k=v`")
	enforce := fs.Bool("enforce", false, "refuse a node whose boot digest is not listed (default: flag it)")
	return func(ctx context.Context, s *session, args []string) error {
		l, err := s.policyLabel(*label)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			return s.usagef("missing DIGEST: give the allowed boot digests (sha256:HEX)")
		}
		digests := make([]string, len(args))
		for i, d := range args {
			if !pcrDigestArg.MatchString(d) {
				return s.usagef("invalid digest %q: want sha256: and 64 hex digits, as nodes get shows boot_pcr_digest", d)
			}
			digests[i] = strings.ToLower(d)
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		resp, err := c.SetPCRPolicy(ctx, &berthv1.SetPCRPolicyRequest{Policy: &berthv1.PCRPolicy{Label: l, Digests: digests, Enforce: *enforce}})
		if err != nil {
			return s.callError("policy pcr set", err)
		}
		v := pcrPolicyView(resp.GetPolicy())
		return s.emit(v, func(w io.Writer) {
			mode := "flagged"
			if v.Enforce {
				mode = "refused"
			}
			fmt.Fprintf(w, "PCR policy of %s: %d allowed digests; other boots are %s.\n", v.Label, len(v.Digests), mode)
		})
	}
}

func setupPolicyPCRList(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		resp, err := c.ListPCRPolicies(ctx, &berthv1.ListPCRPoliciesRequest{})
		if err != nil {
			return s.callError("policy pcr list", err)
		}
		views := make([]pcrPolicyJSON, len(resp.GetPolicies()))
		for i, p := range resp.GetPolicies() {
			views[i] = pcrPolicyView(p)
		}
		return s.emit(views, func(w io.Writer) {
			if len(views) == 0 {
				fmt.Fprintln(w, "No PCR policies.")
				return
			}
			fmt.Fprintln(w, "LABEL\tENFORCE\tDIGESTS")
			for _, v := range views {
				fmt.Fprintf(w, "%s\t%s\t%s\n", v.Label, yesNo(v.Enforce), strings.Join(v.Digests, " "))
			}
		})
	}
}

func setupPolicyPCRDelete(fs *pflag.FlagSet) action {
	label := fs.String("label", "", "delete the policy of label `k=v`")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		l, err := s.policyLabel(*label)
		if err != nil {
			return err
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		if _, err := c.DeletePCRPolicy(ctx, &berthv1.DeletePCRPolicyRequest{Label: l}); err != nil {
			return s.callError("policy pcr delete", err)
		}
		out := struct {
			Label   string `json:"label"`
			Deleted bool   `json:"deleted"`
		}{l, true}
		return s.emit(out, func(w io.Writer) { fmt.Fprintf(w, "Deleted the PCR policy of %s.\n", l) })
	}
}
