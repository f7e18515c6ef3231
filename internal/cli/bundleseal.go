package cli

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/ident"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// bundleSigner loads the admin credential (--cert, --key) as the signer of
// the bundles this command seals. No service holds a key that can sign a
// bundle: the admin's credential is where signing happens.
func (s *session) bundleSigner() (*bundle.Signer, error) {
	if s.set.cert == "" || s.set.key == "" {
		return nil, usagef(s.path, "missing signing credential: set --cert or BERTH_CERT and --key or BERTH_KEY (an admin certificate signs bundles)")
	}
	cert, err := tls.LoadX509KeyPair(s.set.cert, s.set.key)
	if err != nil {
		return nil, fmt.Errorf("load admin certificate (%s %s, %s %s): %w",
			s.set.sources["BERTH_CERT"], s.set.cert, s.set.sources["BERTH_KEY"], s.set.key, err)
	}
	chain := make([]*x509.Certificate, 0, len(cert.Certificate))
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse admin certificate %s: %w", s.set.cert, err)
		}
		chain = append(chain, c)
	}
	key, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the key in %s cannot sign", s.set.key)
	}
	signer, err := bundle.NewAdminSigner(chain, key)
	if err != nil {
		return nil, fmt.Errorf("cannot sign bundles with the certificate from %s: %w", s.set.sources["BERTH_CERT"], err)
	}
	return signer, nil
}

// bundleVersions are a node's current bundle version (0: none) and the
// number its next write gets, which a bundle must be signed for.
type bundleVersions struct{ current, next int64 }

// versionsOf reads a node's version numbers from its bundle history.
func versionsOf(ctx context.Context, c berthv1.BundleAdminServiceClient, node string) (bundleVersions, error) {
	resp, err := c.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: node})
	if err != nil {
		return bundleVersions{}, err
	}
	v := bundleVersions{next: resp.GetNextVersion()}
	if v.next < 1 {
		return bundleVersions{}, errors.New("the bundles service did not say which version comes next; it predates signed bundles")
	}
	for _, b := range resp.GetVersions() {
		if b.GetState() == berthv1.BundleState_BUNDLE_STATE_APPROVED {
			v.current = b.GetVersion()
		}
	}
	return v, nil
}

// nodeBundleKey fetches a node's bundle public key from the registration
// service.
func (s *session) nodeBundleKey(ctx context.Context, node string) (*berthv1.BundleKey, error) {
	nodes, err := s.nodeAdmin()
	if err != nil {
		return nil, err
	}
	resp, err := nodes.GetNode(ctx, &berthv1.GetNodeRequest{Id: node})
	if err != nil {
		return nil, s.callError("get bundle key of node "+node, err)
	}
	key := resp.GetNode().GetBundleKey()
	if len(key.GetPublicKey()) == 0 {
		return nil, errNoBundleKey
	}
	return key, nil
}

var errNoBundleKey = errors.New("the node has no bundle key")

// bundleKeyJSON is a node's bundle public key as --key-file holds it and
// nodes get -o json shows it.
type bundleKeyJSON struct {
	KEMID     uint32 `json:"kem_id"`
	PublicKey string `json:"public_key"` // standard base64
}

func bundleKeyView(k *berthv1.BundleKey) *bundleKeyJSON {
	if k == nil {
		return nil
	}
	return &bundleKeyJSON{KEMID: k.GetKemId(), PublicKey: base64.StdEncoding.EncodeToString(k.GetPublicKey())}
}

// readKeyFile reads a --key-file.
func readKeyFile(path string) (*berthv1.BundleKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --key-file: %w", err)
	}
	var k bundleKeyJSON
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf(`--key-file %s: want JSON {"kem_id": N, "public_key": "BASE64"} (nodes get -o json shows it as bundle_key): %v`, path, err)
	}
	pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
	if err != nil || len(pub) == 0 {
		return nil, fmt.Errorf("--key-file %s: public_key is not base64", path)
	}
	return &berthv1.BundleKey{KemId: k.KEMID, PublicKey: pub}, nil
}

// sealFor seals contents for node and version with signer.
func sealFor(node string, key *berthv1.BundleKey, version int64, c bundle.Contents, signer *bundle.Signer) ([]byte, error) {
	if key.GetKemId() > 0xffff {
		return nil, fmt.Errorf("the node's bundle key has an invalid KEM ID 0x%x", key.GetKemId())
	}
	return bundle.Seal(bundle.Target{NodeID: node, KEM: uint16(key.GetKemId()), Public: key.GetPublicKey(), Version: version}, c, signer)
}

// hookJSON is one hook of a --hooks file.
type hookJSON struct {
	Command []string `json:"command"`
	Paths   []string `json:"paths"`
	Timeout string   `json:"timeout"`
}

// readHooks reads a --hooks file: a JSON array of hooks, each a command
// (program by absolute path, then its arguments), the bundle paths it
// covers and a timeout as a Go duration.
func readHooks(path string) ([]bundle.Hook, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --hooks: %w", err)
	}
	var raw []hookJSON
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf(`--hooks %s: want a JSON array of {"command": [...], "paths": [...], "timeout": "30s"}: %v`, path, err)
	}
	hooks := make([]bundle.Hook, len(raw))
	for i, h := range raw {
		d, err := time.ParseDuration(h.Timeout)
		if err != nil {
			return nil, fmt.Errorf("--hooks %s: hook %d: timeout %q is not a Go duration such as 30s", path, i, h.Timeout)
		}
		hooks[i] = bundle.Hook{Command: h.Command, Paths: h.Paths, Timeout: d}
	}
	return hooks, nil
}

// contentFlags are the flags that say what a bundle holds.
type contentFlags struct {
	files    fileFlag
	dir      onceFlag
	hooks    onceFlag
	keepMode *bool
	owner    *string
	group    *string
}

func addContentFlags(fs *pflag.FlagSet) *contentFlags {
	c := &contentFlags{}
	fs.Var(&c.files, "file", "local file `PATH[=DEST]`, written at DEST under the node's root (DEST defaults to PATH's base name; repeatable)")
	fs.Var(&c.dir, "dir", "put every regular file under `DIR` at its path relative to DIR")
	fs.Var(&c.hooks, "hooks", `post-apply hooks from JSON `+"`FILE`"+`: [{"command": ["/usr/bin/systemctl", "reload", "x"], "paths": ["etc/x.conf"], "timeout": "30s"}]`)
	c.keepMode = fs.Bool("mode-from-file", true, "keep each file's permission bits; with =false files get 0644, or 0755 if executable")
	c.owner = fs.String("owner", "", "owner `U` (name or numeric ID) of every file (default: the node agent's choice)")
	c.group = fs.String("group", "", "group `G` (name or numeric ID) of every file (default: the node agent's choice)")
	return c
}

func (c *contentFlags) given() bool { return len(c.files) > 0 || c.dir.set || c.hooks.set }

// load reads the files and hooks the flags name and checks them against
// the bundle format.
func (s *session) loadContents(node string, c *contentFlags) (bundle.Contents, error) {
	opt := fileOptions{keepMode: *c.keepMode, owner: *c.owner, group: *c.group}
	if err := s.checkOwnership(opt); err != nil {
		return bundle.Contents{}, err
	}
	specs, err := s.bundleSpecs(node, c.files, c.dir)
	if err != nil {
		return bundle.Contents{}, err
	}
	files, lerr := loadFiles(specs, opt)
	if lerr != nil {
		return bundle.Contents{}, s.localError(node, lerr)
	}
	out := bundle.Contents{Files: files}
	if c.hooks.set {
		if out.Hooks, err = readHooks(c.hooks.value); err != nil {
			return bundle.Contents{}, s.usagef("%v", err)
		}
		if err := out.Validate(); err != nil {
			return bundle.Contents{}, s.usagef("--hooks %s: %v", c.hooks.value, err)
		}
	}
	return out, nil
}

// versionFlag is --version: a positive bundle version.
type versionFlag struct {
	version int64
	set     bool
}

func (f *versionFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return strconv.FormatInt(f.version, 10)
}

// Type names the value in help and completion.
func (f *versionFlag) Type() string { return "value" }

func (f *versionFlag) Set(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return errors.New("want a positive version number")
	}
	f.version, f.set = n, true
	return nil
}

func setupBundlesSeal(fs *pflag.FlagSet) action {
	var node onceFlag
	var version versionFlag
	var keyFile onceFlag
	fs.Var(&node, "node", "the node `ID` the bundle is for (required)")
	content := addContentFlags(fs)
	fs.Var(&version, "version", "sign for version `N` (default: the next version, asked of the bundles service)")
	fs.Var(&keyFile, "key-file", `the node's bundle public key from JSON `+"`FILE`"+` {"kem_id": N, "public_key": "BASE64"} (default: asked of the registration service)`)
	return func(ctx context.Context, s *session, args []string) error {
		if err := s.exactArgs(args); err != nil {
			return err
		}
		if !node.set {
			return s.usagef("missing --node NODE_ID")
		}
		if ident.NodeID(node.value) != nil {
			return s.usagef("invalid --node %q: node IDs %s", node.value, ident.NodeIDRule[len("must "):])
		}
		contents, err := s.loadContents(node.value, content)
		if err != nil {
			return err
		}
		signer, err := s.bundleSigner()
		if err != nil {
			return err
		}
		var key *berthv1.BundleKey
		if keyFile.set {
			if key, err = readKeyFile(keyFile.value); err != nil {
				return s.usagef("%v", err)
			}
		} else if key, err = s.nodeBundleKey(ctx, node.value); errors.Is(err, errNoBundleKey) {
			return fmt.Errorf("seal bundle for node %s: %w", node.value, err)
		} else if err != nil {
			return err
		}
		if !version.set {
			bundles, err := s.bundleAdmin()
			if err != nil {
				return err
			}
			v, err := versionsOf(ctx, bundles, node.value)
			if err != nil {
				return s.bundleCallError("seal bundle for node "+node.value+": get the next version", err)
			}
			version.version = v.next
		}
		sealed, err := sealFor(node.value, key, version.version, contents, signer)
		if err != nil {
			return fmt.Errorf("seal bundle for node %s: %w", node.value, err)
		}
		// Only the bundle goes to stdout, and nothing to stderr on success:
		// bundles put --sealed shows what the store made of it.
		if _, err := s.cfg.Stdout.Write(sealed); err != nil {
			return fmt.Errorf("write the sealed bundle: %w", err)
		}
		return nil
	}
}

// readSealed reads a --sealed file and checks that it is a signed bundle
// for node, before anything is called.
func (s *session) readSealed(node, path string) ([]byte, *bundle.Parsed, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("put bundle for node %s: %s", node, readError(err))
	}
	p, err := bundle.Parse(b)
	switch {
	case err != nil:
		return nil, nil, s.usagef("--sealed %s: %v", path, err)
	case p.Signature == nil:
		return nil, nil, s.usagef("--sealed %s: %v", path, bundle.ErrUnsigned)
	case p.Signature.NodeID != node:
		return nil, nil, s.usagef("--sealed %s is for node %s, not %s", path, p.Signature.NodeID, node)
	}
	return b, p, nil
}
