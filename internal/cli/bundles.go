package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/bundle"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func bundlesCommand() *command {
	return &command{
		name:    "bundles",
		summary: "Put, inspect, approve and reset configuration bundles",
		help: "Manage nodes' configuration bundles through the bundles service's admin API\n" +
			"(--bundles-server). berthctl seals a bundle to the node's bundle key before it\n" +
			"leaves this machine, so the services, and anyone with admin rights, see only\n" +
			"ciphertext and metadata: a bundle cannot be read back. It also signs it with\n" +
			"the admin credential (--cert, --key) for the node and the version it becomes;\n" +
			"nodes apply nothing else. docs/bundle-format.md specifies the format.",
		subs: []*command{
			{name: "put", args: "NODE", summary: "Seal local files into a new version of a node's bundle", setup: setupBundlesPut,
				help: "Seal local files to the node's bundle key, sign them with the admin credential\n" +
					"for the node's next bundle version, and store them as that version, approved\n" +
					"at once (replacing an upload waiting for approval). Name files with --file\n" +
					"PATH[=DEST] (repeatable; DEST defaults to the file's base name) or all regular\n" +
					"files under a directory with --dir DIR. DEST is where the node writes the file,\n" +
					"relative to its agent's --root, such as etc/hostname. --hooks FILE adds\n" +
					"post-apply hooks. --sealed FILE uploads a bundle made by bundles seal instead.\n\n" +
					"The write replaces the current version only if no one else wrote in between:\n" +
					"by default the version it replaces is the one current when the command\n" +
					"starts; --expected-version N names it explicitly (0: the node has none)."},
			{name: "seal", summary: "Seal and sign a bundle for a node without uploading it", setup: setupBundlesSeal,
				help: "Seal local files (and --hooks) to a node's bundle key and sign them with the\n" +
					"admin credential, writing the sealed bundle to stdout:\n\n" +
					"  berthctl bundles seal --node NODE_ID --file SRC=DEST... > bundle.bin\n\n" +
					"The bundle is signed for --version N, by default the node's next version as\n" +
					"the bundles service says; the node's bundle key comes from --key-file or the\n" +
					"registration service. Upload it with bundles put NODE --sealed bundle.bin; a\n" +
					"bundle signed for a version that is no longer the next one is refused."},
			{name: "get", args: "NODE", summary: "Show a node's current and pending bundle versions", setup: setupBundlesGet,
				help: "Show the metadata of a node's current bundle version and of an upload\n" +
					"waiting for approval. The content is sealed to the node and cannot be shown."},
			{name: "history", args: "NODE", summary: "List the bundle versions kept for a node", setup: setupBundlesHistory,
				help: "List the bundle versions kept for a node, newest first, resets included."},
			{name: "approve", args: "NODE VERSION", summary: "Approve a node's upload waiting for approval", setup: setupBundlesApprove,
				help: "Make a version waiting for approval the node's current bundle, which the node\n" +
					"gets on its next boot. Approving the current version again changes nothing."},
			{name: "reset", args: "NODE", summary: "Drop a node's bundle so it configures itself again", setup: setupBundlesReset,
				help: "Drop the node's current bundle and any upload waiting for approval, so that\n" +
					"the node finds no bundle and configures itself again on its next boot. The\n" +
					"reset is recorded in the history."},
		},
	}
}

// bundleJSON is a bundle version in the JSON output contract, without its
// content. Keep the field names.
type bundleJSON struct {
	NodeID    string `json:"node_id"`
	Version   int64  `json:"version"`
	State     string `json:"state"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	KEMID     uint32 `json:"kem_id"`
	Author    string `json:"author"`
	CreatedAt string `json:"created_at"`
	// SignedBy is the admin's SPIFFE ID, "node", or "unsigned" (format
	// version 1, which agents refuse).
	SignedBy string `json:"signed_by,omitempty"`
}

// putBundleJSON is the output of bundles put: the stored version and how
// many files it holds, which only berthctl knows.
type putBundleJSON struct {
	bundleJSON
	Files int `json:"files,omitempty"`
	Hooks int `json:"hooks,omitempty"`
}

// bundleInfoJSON is the output of bundles get; null for a version that
// does not exist.
type bundleInfoJSON struct {
	Current *bundleJSON `json:"current"`
	Pending *bundleJSON `json:"pending"`
}

func bundleView(b *berthv1.BundleInfo) bundleJSON {
	return bundleJSON{
		NodeID:    b.GetNodeId(),
		Version:   b.GetVersion(),
		State:     bundleStateName(b.GetState()),
		Size:      b.GetSize(),
		SHA256:    b.GetSha256(),
		KEMID:     b.GetKemId(),
		Author:    b.GetAuthor(),
		CreatedAt: rfc3339(b.GetCreatedAt()),
		SignedBy:  b.GetSignedBy(),
	}
}

// bundleStateName is a bundle state as the JSON contract names it.
func bundleStateName(s berthv1.BundleState) string {
	switch s {
	case berthv1.BundleState_BUNDLE_STATE_APPROVED:
		return "approved"
	case berthv1.BundleState_BUNDLE_STATE_PENDING:
		return "pending"
	case berthv1.BundleState_BUNDLE_STATE_SUPERSEDED:
		return "superseded"
	case berthv1.BundleState_BUNDLE_STATE_RESET:
		return "reset"
	}
	return "unknown"
}

// kemNames are the HPKE KEMs a node's bundle key is likely to use.
var kemNames = map[uint32]string{
	0x0010: "DHKEM(P-256)",
	0x0020: "DHKEM(X25519)",
	0x647a: "ML-KEM-768 + X25519",
}

// kemName renders a KEM ID for a table: hex, and its name when known.
func kemName(id uint32) string {
	if id == 0 {
		return "-"
	}
	if name, ok := kemNames[id]; ok {
		return fmt.Sprintf("0x%04x (%s)", id, name)
	}
	return fmt.Sprintf("0x%04x", id)
}

// expectedFlag is --expected-version: a version number, 0 for none, and
// whether it was given at all.
type expectedFlag struct {
	version int64
	set     bool
}

func (f *expectedFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return strconv.FormatInt(f.version, 10)
}

// Type names the value in help and completion.
func (f *expectedFlag) Type() string { return "value" }

func (f *expectedFlag) Set(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return errors.New("want the version being replaced, or 0 for none")
	}
	f.version, f.set = n, true
	return nil
}

func setupBundlesPut(fs *pflag.FlagSet) action {
	content := addContentFlags(fs)
	var sealedFile onceFlag
	var expected expectedFlag
	fs.Var(&sealedFile, "sealed", "upload the bundle in `FILE`, made by bundles seal, instead of sealing files")
	fs.Var(&expected, "expected-version", "replace only version `N` of the bundle, 0 if it has none (default: the current version)")
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "node ID"); err != nil {
			return err
		}
		node := args[0]
		if sealedFile.set {
			if content.given() {
				return s.usagef("give --sealed or files (--file, --dir, --hooks), not both")
			}
			sealed, p, err := s.readSealed(node, sealedFile.value)
			if err != nil {
				return err
			}
			info, err := s.putSealed(ctx, node, sealed, expected)
			if err != nil {
				return err
			}
			return s.printPut(putBundleJSON{bundleJSON: bundleView(info)}, info, p)
		}
		contents, err := s.loadContents(node, content)
		if err != nil {
			return err
		}
		info, err := s.putBundle(ctx, node, contents, expected)
		if err != nil {
			return err
		}
		return s.printPut(putBundleJSON{bundleJSON: bundleView(info), Files: len(contents.Files), Hooks: len(contents.Hooks)}, info, nil)
	}
}

// bundleSpecs checks that exactly one of --file and --dir is given and
// lists the files it names.
func (s *session) bundleSpecs(node string, files fileFlag, dir onceFlag) ([]fileSpec, error) {
	switch {
	case len(files) > 0 && dir.set:
		return nil, s.usagef("give --file or --dir, not both")
	case len(files) > 0:
		return files, nil
	case dir.set:
		specs, lerr := gatherDir(dir.value)
		if lerr != nil {
			return nil, s.localError(node, lerr)
		}
		return specs, nil
	}
	return nil, s.usagef("missing files: give --file PATH[=DEST] or --dir DIR")
}

// checkOwnership checks --owner and --group by the bundle format's rules.
func (s *session) checkOwnership(opt fileOptions) error {
	if bundle.Validate([]bundle.File{{Path: "f", Owner: opt.owner}}) != nil {
		return s.usagef("invalid --owner %q: want a user name or a numeric ID", opt.owner)
	}
	if bundle.Validate([]bundle.File{{Path: "f", Group: opt.group}}) != nil {
		return s.usagef("invalid --group %q: want a group name or a numeric ID", opt.group)
	}
	return nil
}

// localError reports a problem with the local files of a bundle for node.
func (s *session) localError(node string, e *localError) error {
	if e.usage {
		return s.usagef("%s", e.msg)
	}
	return fmt.Errorf("put bundle for node %s: %s", node, e.msg)
}

// putBundle seals contents to the node's bundle key, fetched from the
// registration service, signs them with the admin credential for the
// node's next version, and uploads them to the bundles service. The
// plaintext never leaves this process.
func (s *session) putBundle(ctx context.Context, node string, c bundle.Contents, expected expectedFlag) (*berthv1.BundleInfo, error) {
	// Check both connections' settings before calling either service.
	if missing := s.set.missing(need{registration: true, bundles: true}); missing != "" {
		return nil, usagef(s.path, "missing connection settings: set %s", missing)
	}
	signer, err := s.bundleSigner()
	if err != nil {
		return nil, err
	}
	bundles, err := s.bundleAdmin()
	if err != nil {
		return nil, err
	}
	key, err := s.nodeBundleKey(ctx, node)
	if errors.Is(err, errNoBundleKey) {
		return nil, fmt.Errorf("put bundle for node %s: %w", node, err)
	}
	if err != nil {
		return nil, err
	}
	v, err := versionsOf(ctx, bundles, node)
	if err != nil {
		return nil, s.bundleCallError("put bundle for node "+node+": get the current version", err)
	}
	if !expected.set {
		expected.version = v.current
	}
	sealed, err := sealFor(node, key, v.next, c, signer)
	if err != nil {
		return nil, fmt.Errorf("put bundle for node %s: %w", node, err)
	}
	return s.upload(ctx, bundles, node, sealed, expected.version)
}

// putSealed uploads a bundle sealed and signed beforehand.
func (s *session) putSealed(ctx context.Context, node string, sealed []byte, expected expectedFlag) (*berthv1.BundleInfo, error) {
	bundles, err := s.bundleAdmin()
	if err != nil {
		return nil, err
	}
	if !expected.set {
		v, err := versionsOf(ctx, bundles, node)
		if err != nil {
			return nil, s.bundleCallError("put bundle for node "+node+": get the current version", err)
		}
		expected.version = v.current
	}
	return s.upload(ctx, bundles, node, sealed, expected.version)
}

func (s *session) upload(ctx context.Context, bundles berthv1.BundleAdminServiceClient, node string, sealed []byte, expected int64) (*berthv1.BundleInfo, error) {
	put, err := bundles.PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{
		NodeId:          node,
		ExpectedVersion: expected,
		Sealed:          sealed,
	})
	if err != nil {
		return nil, s.bundleCallError("put bundle for node "+node, err)
	}
	return put.GetInfo(), nil
}

// printPut shows a stored version; presealed is the bundle when it came
// from --sealed, whose contents berthctl cannot see.
func (s *session) printPut(v putBundleJSON, info *berthv1.BundleInfo, presealed *bundle.Parsed) error {
	now := s.cfg.Now()
	return s.emit(v, func(w io.Writer) {
		if presealed != nil {
			fmt.Fprintf(w, "Put the sealed bundle as version %d for node %s; state %s.\n\n", v.Version, v.NodeID, v.State)
			writeBundleRows(w, "", info, now)
			return
		}
		fmt.Fprintf(w, "Put bundle version %d for node %s (%d %s); state %s.\n\n", v.Version, v.NodeID, v.Files, plural(v.Files, "file"), v.State)
		writeBundleRows(w, "", info, now)
		fmt.Fprintf(w, "Files:\t%d\n", v.Files)
		if v.Hooks > 0 {
			fmt.Fprintf(w, "Hooks:\t%d\n", v.Hooks)
		}
	})
}

func setupBundlesGet(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "node ID"); err != nil {
			return err
		}
		c, err := s.bundleAdmin()
		if err != nil {
			return err
		}
		node := args[0]
		resp, err := c.GetBundleInfo(ctx, &berthv1.GetBundleInfoRequest{NodeId: node})
		if err != nil {
			return s.bundleCallError("get bundle for node "+node, err)
		}
		var v bundleInfoJSON
		if b := resp.GetCurrent(); b != nil {
			cur := bundleView(b)
			v.Current = &cur
		}
		if b := resp.GetPending(); b != nil {
			pending := bundleView(b)
			v.Pending = &pending
		}
		now := s.cfg.Now()
		return s.emit(v, func(w io.Writer) {
			fmt.Fprintf(w, "Node:\t%s\n", node)
			for _, slot := range []struct {
				name string
				info *berthv1.BundleInfo
				none string
			}{
				{"Current", resp.GetCurrent(), "none (the node gets no bundle)"},
				{"Pending", resp.GetPending(), "none"},
			} {
				if slot.info == nil {
					fmt.Fprintf(w, "\n%s:\t%s\n", slot.name, slot.none)
					continue
				}
				fmt.Fprintf(w, "\n%s:\n", slot.name)
				writeBundleRows(w, "  ", slot.info, now)
			}
		})
	}
}

// writeBundleRows prints a bundle version as an indented two-column table.
func writeBundleRows(w io.Writer, indent string, b *berthv1.BundleInfo, now time.Time) {
	v := bundleView(b)
	rows := [][2]string{
		{"Node", v.NodeID},
		{"Version", strconv.FormatInt(v.Version, 10)},
		{"State", v.State},
		{"Size", fmt.Sprintf("%d bytes", v.Size)},
		{"SHA-256", dash(v.SHA256)},
		{"KEM", kemName(v.KEMID)},
		{"Author", dash(v.Author)},
		{"Created", humanTime(b.GetCreatedAt(), now)},
	}
	if v.SignedBy != "" {
		rows = append(rows, [2]string{"Signer", signedByText(v.SignedBy)})
	}
	if indent != "" {
		rows = rows[1:] // the node heads the whole output
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s%s:\t%s\n", indent, r[0], r[1])
	}
}

func setupBundlesHistory(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "node ID"); err != nil {
			return err
		}
		c, err := s.bundleAdmin()
		if err != nil {
			return err
		}
		node := args[0]
		resp, err := c.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: node})
		if err != nil {
			return s.bundleCallError("list bundle history for node "+node, err)
		}
		versions := resp.GetVersions()
		views := make([]bundleJSON, len(versions))
		for i, b := range versions {
			views[i] = bundleView(b)
		}
		now := s.cfg.Now()
		return s.emit(views, func(w io.Writer) {
			if len(views) == 0 {
				fmt.Fprintf(w, "No bundle versions for node %s.\n", node)
				return
			}
			fmt.Fprintln(w, "VERSION\tSTATE\tSIZE\tSHA-256\tAUTHOR\tCREATED")
			for i, v := range views {
				size := "-"
				if v.State != "reset" {
					size = strconv.FormatInt(v.Size, 10)
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", v.Version, v.State, size, dash(shortDigest(v.SHA256)),
					dash(v.Author), relTime(versions[i].GetCreatedAt(), now))
			}
		})
	}
}

// shortDigest abbreviates a SHA-256 for a table column; JSON and the
// single-version tables show it whole.
func shortDigest(d string) string {
	if len(d) > 16 {
		return d[:16]
	}
	return d
}

func setupBundlesApprove(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "node ID", "version"); err != nil {
			return err
		}
		node := args[0]
		version, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || version < 1 {
			return s.usagef("invalid version %q: want a positive whole number (bundles get %s shows the pending one)", args[1], node)
		}
		c, err := s.bundleAdmin()
		if err != nil {
			return err
		}
		resp, err := c.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: node, Version: version})
		if err != nil {
			return s.bundleCallError(fmt.Sprintf("approve bundle version %d for node %s", version, node), err)
		}
		v := bundleView(resp.GetInfo())
		return s.emit(v, func(w io.Writer) {
			fmt.Fprintf(w, "Approved bundle version %d of node %s; state %s.\n", v.Version, node, v.State)
		})
	}
}

func setupBundlesReset(*pflag.FlagSet) action {
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args, "node ID"); err != nil {
			return err
		}
		c, err := s.bundleAdmin()
		if err != nil {
			return err
		}
		node := args[0]
		resp, err := c.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: node})
		if err != nil {
			return s.bundleCallError("reset bundle for node "+node, err)
		}
		v := bundleView(resp.GetInfo())
		return s.emit(v, func(w io.Writer) {
			fmt.Fprintf(w, "Reset the bundle of node %s (history version %d); it configures itself again on its next boot.\n", node, v.Version)
		})
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// signedByText explains signed_by in a table.
func signedByText(s string) string {
	switch s {
	case "node":
		return "the node itself"
	case "unsigned":
		return "nobody: unsigned (format version 1); nodes refuse it, put it again"
	}
	return s
}
