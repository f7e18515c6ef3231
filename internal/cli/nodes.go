package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// listPageSize is how many nodes berthctl asks for per ListNodes page.
const listPageSize = 500

func nodesCommand() *command {
	return &command{
		name:    "nodes",
		summary: "List, inspect, approve, reject, revoke and delete nodes",
		help:    "Manage the nodes known to the registration service.",
		subs: []*command{
			{name: "list", summary: "List nodes", setup: setupNodesList,
				help: "List nodes, following page tokens to fetch them all (or up to --limit)."},
			{name: "get", args: "ID", summary: "Show one node", setup: setupNodesGet,
				help: "Show one node: its machine facts, labels, key and current certificate."},
			{name: "approve", args: "ID", summary: "Approve a pending or rejected node", setup: nodeAction(approveNode()),
				help: "Approve a pending (or rejected) node, so that it gets its certificate."},
			{name: "reject", args: "ID", summary: "Reject a pending node", setup: setupNodesReject,
				help: "Reject a pending node; it gets no certificate. --reason is recorded with the\nnode and its rejected event (nodes get shows it); rejecting it again changes it."},
			{name: "revoke", args: "ID", summary: "Revoke a node and its certificates", setup: setupNodesRevoke,
				help: "Revoke a node and every certificate the CA ever issued to it. It is denied\non every service within seconds. Revocation is final."},
			{name: "delete", args: "ID", summary: "Forget a node", setup: setupNodesDelete,
				help: "Forget a node. Its key may register again with a bootstrap token."},
			{name: "allow-replacement", args: "ID", summary: "Let new hardware keys take over a node", setup: nodeAction(allowReplacement()),
				help: "Let the next registration from the same hardware with a different key\n(new board, wiped TPM) take over this node."},
			{name: "label", args: "ID KEY=VALUE... KEY-...", summary: "Set or remove a node's labels", setup: setupNodesLabel,
				help: "Set labels (KEY=VALUE) and remove them (KEY-) on a node, in one change that\nthe event log records as labeled, with who made it. Other labels stay."},
		},
	}
}

// nodeJSON is a node in the JSON output contract. Keep the field names.
type nodeJSON struct {
	ID                 string            `json:"id"`
	Status             string            `json:"status"`
	Hostname           string            `json:"hostname"`
	HardwareUUID       string            `json:"hardware_uuid"`
	CertSerial         string            `json:"cert_serial"`
	CertNotBefore      string            `json:"cert_not_before"`
	CertNotAfter       string            `json:"cert_not_after"`
	CertificatesIssued int64             `json:"certificates_issued"`
	Health             string            `json:"health"`
	LastSeen           string            `json:"last_seen"`
	BootID             string            `json:"boot_id"`
	ReportedStatus     string            `json:"reported_status"`
	Labels             map[string]string `json:"labels"`
	MACs               []string          `json:"macs"`
	Serial             string            `json:"serial"`
	KeySHA256          string            `json:"key_sha256"`
	CreatedAt          string            `json:"created_at"`
	UpdatedAt          string            `json:"updated_at"`
	ReplacementAllowed bool              `json:"replacement_allowed"`
	TokenID            string            `json:"token_id"`
	// IdentitySource is how the node holds its identity key: tpm,
	// seed-file, file or site-secret ("" for nodes registered before it
	// was recorded).
	IdentitySource string `json:"identity_source"`
	// DuplicateOf lists the other nodes reporting the same hardware UUID
	// or one of the same MACs.
	DuplicateOf []string `json:"duplicate_of"`
	// EKHash names a TPM node's endorsement key; EKCertificate says what
	// its EK certificate showed (trusted, untrusted, unchecked, none).
	EKHash        string `json:"ek_hash"`
	EKCertificate string `json:"ek_certificate"`
	// EKLabel is the label the EK was enrolled with (ek import).
	EKLabel string `json:"ek_label"`
	// BootPCRDigest is the digest of the boot PCRs of the node's last
	// quoted boot, at BootPCRDigestAt; BootPolicyViolation says why that
	// boot breaks the PCR policies of the node's labels ("" when not).
	BootPCRDigest       string `json:"boot_pcr_digest"`
	BootPCRDigestAt     string `json:"boot_pcr_digest_at"`
	BootPolicyViolation string `json:"boot_policy_violation"`
	// BundleKey is what bundles seal --key-file takes.
	BundleKey *bundleKeyJSON `json:"bundle_key,omitempty"`
	// Reported is what the node's host daemons reported through its agent
	// (berth-agent report set), as of ReportedAt; {} and "" before.
	Reported   map[string]string `json:"reported"`
	ReportedAt string            `json:"reported_at"`
	// BundleAppliedVersion is the bundle version the node last applied (0
	// before it said), at BundleAppliedAt, with its hooks' results.
	BundleAppliedVersion int64         `json:"bundle_applied_version"`
	BundleAppliedAt      string        `json:"bundle_applied_at"`
	BundleHooks          []hookRunJSON `json:"bundle_hooks"`
	// RevokedAt and RevocationReason say when and why a revoked node was
	// revoked (nodes get only, from the CA's revocations).
	RevokedAt        string `json:"revoked_at,omitempty"`
	RevocationReason string `json:"revocation_reason,omitempty"`
	// RejectionReason is the reason a rejected node was rejected with.
	RejectionReason string `json:"rejection_reason,omitempty"`
}

// hookRunJSON is how one post-apply hook ran on the node.
type hookRunJSON struct {
	Command  string  `json:"command"`
	ExitCode int32   `json:"exit_code"`
	TimedOut bool    `json:"timed_out"`
	Error    string  `json:"error,omitempty"`
	Seconds  float64 `json:"duration_seconds"`
}

// nodeView is n in the JSON contract, with its health h (nil: unknown).
func nodeView(n *berthv1.Node, h *berthv1.NodeHealth) nodeJSON {
	v := nodeJSON{
		ID:                  n.GetId(),
		BundleKey:           bundleKeyView(n.GetBundleKey()),
		Status:              statusName(n.GetStatus()),
		Hostname:            n.GetFacts().GetHostname(),
		HardwareUUID:        n.GetFacts().GetHardwareUuid(),
		CertSerial:          n.GetCertSerial(),
		CertNotBefore:       rfc3339(n.GetCertNotBefore()),
		CertNotAfter:        rfc3339(n.GetCertNotAfter()),
		CertificatesIssued:  n.GetCertificatesIssued(),
		Health:              nodeHealthState(n, h),
		LastSeen:            rfc3339(h.GetLastSeen()),
		BootID:              h.GetBootId(),
		ReportedStatus:      reportedStatus(h),
		Labels:              n.GetLabels(),
		MACs:                n.GetFacts().GetMacs(),
		Serial:              n.GetFacts().GetSerial(),
		KeySHA256:           n.GetKeySha256(),
		CreatedAt:           rfc3339(n.GetCreatedAt()),
		UpdatedAt:           rfc3339(n.GetUpdatedAt()),
		ReplacementAllowed:  n.GetReplacementAllowed(),
		TokenID:             n.GetTokenId(),
		IdentitySource:      n.GetIdentitySource(),
		DuplicateOf:         n.GetDuplicateOf(),
		EKHash:              n.GetEkHash(),
		EKCertificate:       n.GetEkCertificate(),
		EKLabel:             n.GetEkLabel(),
		BootPCRDigest:       n.GetBootPcrDigest(),
		BootPCRDigestAt:     rfc3339(n.GetBootPcrDigestAt()),
		BootPolicyViolation: n.GetBootPolicyViolation(),
	}
	if n.GetStatus() == berthv1.NodeStatus_NODE_STATUS_REJECTED {
		v.RejectionReason = n.GetStatusReason()
	}
	// Empty collections are [] and {} rather than null, for consumers that
	// iterate without checking.
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if v.MACs == nil {
		v.MACs = []string{}
	}
	if v.DuplicateOf == nil {
		v.DuplicateOf = []string{}
	}
	v.Reported, v.ReportedAt = h.GetReported(), rfc3339(h.GetReportedAt())
	if v.Reported == nil {
		v.Reported = map[string]string{}
	}
	a := h.GetBundleApplied()
	v.BundleAppliedVersion, v.BundleAppliedAt = a.GetVersion(), rfc3339(a.GetAppliedAt())
	v.BundleHooks = []hookRunJSON{}
	for _, r := range a.GetHooks() {
		v.BundleHooks = append(v.BundleHooks, hookRunJSON{Command: r.GetCommand(), ExitCode: r.GetExitCode(),
			TimedOut: r.GetTimedOut(), Error: r.GetError(), Seconds: r.GetDuration().AsDuration().Seconds()})
	}
	return v
}

func setupNodesList(fs *pflag.FlagSet) action {
	var status statusFlag
	labels := labelFlag{}
	fs.Var(&status, "status", "keep only nodes with status `S`: pending, approved, rejected or revoked")
	fs.Var(labels, "label", "keep only nodes carrying label `k=v` (repeatable)")
	limit := fs.Int("limit", 0, "fetch at most `N` nodes (default: all)")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		if *limit < 0 {
			return s.usagef("invalid --limit %d: want 0 (all) or more", *limit)
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		req := &berthv1.ListNodesRequest{Status: status.status, Labels: labels}
		nodes, err := listNodes(ctx, c, req, *limit)
		if err != nil {
			return s.callError("list nodes", err)
		}
		return s.printNodes(nodes, s.listHealth(ctx, nodes))
	}
}

// errPageLoop guards against a server that hands out the same page twice.
var errPageLoop = errors.New("server returned a page token it had already returned")

// listNodes follows page tokens until the last page or until limit nodes
// (0: no limit) are fetched.
func listNodes(ctx context.Context, c berthv1.NodeAdminServiceClient, req *berthv1.ListNodesRequest, limit int) ([]*berthv1.Node, error) {
	var nodes []*berthv1.Node
	seen := map[string]bool{}
	for {
		req.PageSize = listPageSize
		if left := limit - len(nodes); limit > 0 && left < listPageSize {
			req.PageSize = int32(left)
		}
		resp, err := c.ListNodes(ctx, req)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, resp.GetNodes()...)
		if limit > 0 && len(nodes) >= limit {
			return nodes[:limit], nil
		}
		next := resp.GetNextPageToken()
		if next == "" {
			return nodes, nil
		}
		if seen[next] {
			return nil, errPageLoop
		}
		seen[next] = true
		req.PageToken = next
	}
}

func (s *session) printNodes(nodes []*berthv1.Node, health map[string]*berthv1.NodeHealth) error {
	views := make([]nodeJSON, len(nodes))
	for i, n := range nodes {
		views[i] = nodeView(n, health[n.GetId()])
	}
	now := s.cfg.Now()
	return s.emit(views, func(w io.Writer) {
		if len(nodes) == 0 {
			fmt.Fprintln(w, "No nodes found.")
			return
		}
		head := "ID\tSTATUS\tHOSTNAME\tHARDWARE UUID\tIDENTITY\tHEALTH\tLAST SEEN\tCERT EXPIRES\tCERTS\tAGE\tLABELS"
		if s.wide() {
			head += "\tCERT SERIAL\tKEY SHA-256\tMACS\tSERIAL\tTOKEN\tBOOT ID"
		}
		fmt.Fprintln(w, head)
		for i, n := range nodes {
			v := views[i]
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s",
				v.ID, v.Status, dash(v.Hostname), dash(v.HardwareUUID)+duplicateMark(v.DuplicateOf), dash(v.IdentitySource), v.Health,
				relTime(health[n.GetId()].GetLastSeen(), now), relTime(n.GetCertNotAfter(), now), v.CertificatesIssued,
				strings.TrimSuffix(relTime(n.GetCreatedAt(), now), " ago"), dash(formatLabels(v.Labels)))
			if s.wide() {
				fmt.Fprintf(w, "\t%s\t%s\t%s\t%s\t%s\t%s", dash(v.CertSerial), dash(shortHash(v.KeySHA256)),
					dash(strings.Join(v.MACs, ",")), dash(v.Serial), dash(v.TokenID), dash(v.BootID))
			}
			fmt.Fprintln(w)
		}
	})
}

func setupNodesGet(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "node ID"); err != nil {
			return err
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		resp, err := c.GetNode(ctx, &berthv1.GetNodeRequest{Id: args[0]})
		if err != nil {
			return s.callError("get node "+args[0], err)
		}
		n := resp.GetNode()
		var rev *berthv1.Revocation
		if n.GetStatus() == berthv1.NodeStatus_NODE_STATUS_REVOKED {
			rev = s.nodeRevocation(ctx, n.GetId())
		}
		return s.printNode(n, s.nodeHealth(ctx, args[0]), rev)
	}
}

// printNode prints one node and its health: a JSON object, or a
// two-column table.
func (s *session) printNode(n *berthv1.Node, h *berthv1.NodeHealth, rev *berthv1.Revocation) error {
	v := nodeView(n, h)
	if rev != nil {
		v.RevokedAt, v.RevocationReason = rfc3339(rev.GetRevokedAt()), rev.GetReason()
	}
	now := s.cfg.Now()
	return s.emit(v, func(w io.Writer) {
		rows := [][2]string{
			{"ID", v.ID},
			{"Status", v.Status},
		}
		if n.GetStatus() == berthv1.NodeStatus_NODE_STATUS_REVOKED {
			rows = append(rows, [2]string{"Revoked", humanTime(rev.GetRevokedAt(), now)},
				[2]string{"Revocation reason", dash(v.RevocationReason)})
		}
		if n.GetStatus() == berthv1.NodeStatus_NODE_STATUS_REJECTED {
			rows = append(rows, [2]string{"Rejection reason", dash(v.RejectionReason)})
		}
		rows = append(rows, [][2]string{
			{"Health", v.Health},
			{"Last seen", humanTime(h.GetLastSeen(), now)},
			{"Boot ID", dash(v.BootID)},
			{"Reported status", dash(v.ReportedStatus)},
			{"Reported", dash(formatLabels(v.Reported))},
			{"Bundle applied", appliedText(v)},
			{"Hostname", dash(v.Hostname)},
			{"Hardware UUID", dash(v.HardwareUUID)},
			{"Identity source", dash(v.IdentitySource)},
			{"Duplicate of", dash(strings.Join(v.DuplicateOf, ", "))},
			{"EK hash", dash(v.EKHash)},
			{"EK certificate", dash(v.EKCertificate)},
			{"EK label", dash(v.EKLabel)},
			{"Boot PCR digest", dash(v.BootPCRDigest)},
			{"Boot quoted", humanTime(n.GetBootPcrDigestAt(), now)},
			{"Boot policy", dash(v.BootPolicyViolation)},
			{"MACs", dash(strings.Join(v.MACs, ", "))},
			{"Serial", dash(v.Serial)},
			{"Labels", dash(formatLabels(v.Labels))},
			{"Key SHA-256", dash(v.KeySHA256)},
			{"Certificate serial", dash(v.CertSerial)},
			{"Certificate valid from", humanTime(n.GetCertNotBefore(), now)},
			{"Certificate expires", humanTime(n.GetCertNotAfter(), now)},
			{"Certificates issued", fmt.Sprint(v.CertificatesIssued)},
			{"Replacement allowed", yesNo(v.ReplacementAllowed)},
			{"Token", dash(v.TokenID)},
			{"Created", humanTime(n.GetCreatedAt(), now)},
			{"Updated", humanTime(n.GetUpdatedAt(), now)},
		}...)
		for _, r := range rows {
			fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
		}
	})
}

// nodeOp is a call that changes one node and returns it.
type nodeOp struct {
	verb string // for messages: "approve" gives "approve node ID: ..."
	done string // for the table confirmation: "Approved node ID."
	call func(ctx context.Context, c berthv1.NodeAdminServiceClient, id, reason string) (*berthv1.Node, error)
}

func approveNode() nodeOp {
	return nodeOp{"approve", "Approved", func(ctx context.Context, c berthv1.NodeAdminServiceClient, id, _ string) (*berthv1.Node, error) {
		resp, err := c.ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: id})
		return resp.GetNode(), err
	}}
}

func rejectNode() nodeOp {
	return nodeOp{"reject", "Rejected", func(ctx context.Context, c berthv1.NodeAdminServiceClient, id, reason string) (*berthv1.Node, error) {
		resp, err := c.RejectNode(ctx, &berthv1.RejectNodeRequest{Id: id, Reason: reason})
		return resp.GetNode(), err
	}}
}

func revokeNode() nodeOp {
	return nodeOp{"revoke", "Revoked", func(ctx context.Context, c berthv1.NodeAdminServiceClient, id, reason string) (*berthv1.Node, error) {
		resp, err := c.RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: id, Reason: reason})
		return resp.GetNode(), err
	}}
}

func allowReplacement() nodeOp {
	return nodeOp{"allow replacement of", "Allowed a replacement key for", func(ctx context.Context, c berthv1.NodeAdminServiceClient, id, _ string) (*berthv1.Node, error) {
		resp, err := c.AllowReplacement(ctx, &berthv1.AllowReplacementRequest{Id: id})
		return resp.GetNode(), err
	}}
}

// nodeAction builds the setup of a command that applies op to one node.
func nodeAction(op nodeOp) func(*pflag.FlagSet) action {
	return func(*pflag.FlagSet) action {
		return func(ctx context.Context, s *session, args []string) error {
			return s.runNodeOp(ctx, op, args, "")
		}
	}
}

func setupNodesLabel(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if len(args) < 2 {
			return s.usagef("want a node ID and at least one KEY=VALUE or KEY-")
		}
		id, set, remove := args[0], map[string]string{}, []string{}
		for _, a := range args[1:] {
			if k, v, ok := strings.Cut(a, "="); ok && k != "" {
				set[k] = v
			} else if k, ok := strings.CutSuffix(a, "-"); ok && k != "" && !strings.Contains(k, "=") {
				remove = append(remove, k)
			} else {
				return s.usagef("%q: want KEY=VALUE to set a label or KEY- to remove one", a)
			}
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		resp, err := c.LabelNode(ctx, &berthv1.LabelNodeRequest{Id: id, Set: set, Remove: remove})
		if err != nil {
			return s.callError("label node "+id, err)
		}
		v := nodeView(resp.GetNode(), nil)
		return s.emit(v, func(w io.Writer) {
			fmt.Fprintf(w, "Labelled node %s%s: %s\n", id, hostSuffix(v.Hostname), dash(formatLabels(v.Labels)))
		})
	}
}

func setupNodesReject(fs *pflag.FlagSet) action {
	reason := fs.String("reason", "", "`text` recorded with the rejection (at most 256 printable characters)")
	return func(ctx context.Context, s *session, args []string) error {
		return s.runNodeOp(ctx, rejectNode(), args, *reason)
	}
}

func setupNodesRevoke(fs *pflag.FlagSet) action {
	reason := fs.String("reason", "", "`text` recorded with the revocation")
	return func(ctx context.Context, s *session, args []string) error {
		return s.runNodeOp(ctx, revokeNode(), args, *reason)
	}
}

func (s *session) runNodeOp(ctx context.Context, op nodeOp, args []string, reason string) error {
	if err := s.exactArgs(args, "node ID"); err != nil {
		return err
	}
	c, err := s.nodeAdmin()
	if err != nil {
		return err
	}
	id := args[0]
	n, err := op.call(ctx, c, id, reason)
	if err != nil {
		return s.callError(op.verb+" node "+id, err)
	}
	// The change does not touch liveness, which is not looked up here.
	v := nodeView(n, nil)
	return s.emit(v, func(w io.Writer) {
		fmt.Fprintf(w, "%s node %s%s; status %s.\n", op.done, id, hostSuffix(v.Hostname), v.Status)
	})
}

// duplicateMark flags, in the node table, a node whose hardware another
// node reports too; nodes get names them.
func duplicateMark(dups []string) string {
	if len(dups) == 0 {
		return ""
	}
	return " (DUPLICATE)"
}

func hostSuffix(host string) string {
	if host == "" {
		return ""
	}
	return " (" + host + ")"
}

func setupNodesDelete(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "node ID"); err != nil {
			return err
		}
		c, err := s.nodeAdmin()
		if err != nil {
			return err
		}
		id := args[0]
		if _, err := c.DeleteNode(ctx, &berthv1.DeleteNodeRequest{Id: id}); err != nil {
			return s.callError("delete node "+id, err)
		}
		out := struct {
			ID      string `json:"id"`
			Deleted bool   `json:"deleted"`
		}{id, true}
		return s.emit(out, func(w io.Writer) {
			fmt.Fprintf(w, "Deleted node %s.\n", id)
		})
	}
}

// appliedText is the applied bundle in the table: its version and how its
// hooks went.
func appliedText(v nodeJSON) string {
	if v.BundleAppliedVersion == 0 {
		return "-"
	}
	failed := 0
	for _, h := range v.BundleHooks {
		if h.Error != "" {
			failed++
		}
	}
	return fmt.Sprintf("version %d at %s, %d hooks run, %d failed", v.BundleAppliedVersion, v.BundleAppliedAt, len(v.BundleHooks), failed)
}

// nodeHealthState is a node's health as shown: revoked for a revoked node,
// whatever its last beats said, since it can no longer beat.
func nodeHealthState(n *berthv1.Node, h *berthv1.NodeHealth) string {
	if n.GetStatus() == berthv1.NodeStatus_NODE_STATUS_REVOKED {
		return "revoked"
	}
	return healthState(h)
}

// shortHash is the first 16 hex digits of a hash, for a table.
func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// nodeRevocation is the CA's revocation of node id itself (the newest, if
// revoked more than once), for its reason and time; nil with a warning on
// stderr when the CA cannot say.
func (s *session) nodeRevocation(ctx context.Context, id string) *berthv1.Revocation {
	c, err := s.caClient()
	if err == nil {
		var resp *berthv1.GetRevocationsResponse
		if resp, err = c.GetRevocations(ctx, &berthv1.GetRevocationsRequest{}); err == nil {
			var out *berthv1.Revocation
			for _, r := range resp.GetRevocations() {
				if r.GetNodeId() == id && r.GetNodeRevoked() &&
					(out == nil || r.GetRevokedAt().AsTime().After(out.GetRevokedAt().AsTime())) {
					out = r
				}
			}
			return out
		}
		err = s.caCallError("revocation of node "+id, err)
	}
	fmt.Fprintf(s.cfg.Stderr, "berthctl: warning: revocation reason and time unknown: %s\n", oneLine(err.Error()))
	return nil
}
