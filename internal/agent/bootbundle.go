package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/keys"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Bundle outcomes of a boot, as Result.Bundle.
const (
	// BundleApplied means the bundle's files were written under --root.
	BundleApplied = "applied"
	// BundleNone means the node has no bundle and no --configure was given.
	BundleNone = "none"
	// BundleUnchecked means no bundle store is known, so the node's bundle
	// was not looked for.
	BundleUnchecked = "unchecked"
)

// Where an applied bundle came from, as Result.BundleSource.
const (
	// BundleSourceInline is a bundle the registration service sent with the
	// credentials.
	BundleSourceInline = "inline"
	// BundleSourceFetched is a bundle fetched from the bundle store.
	BundleSourceFetched = "fetched"
	// BundleSourceConfigured is a bundle --configure made on this boot,
	// uploaded to the bundle store.
	BundleSourceConfigured = "configured"
)

// States of an applied bundle in the bundle store, as Result.BundleState.
const (
	BundleStateApproved = "approved"
	// BundleStatePending is a configured bundle whose upload waits for
	// approval by the engine.
	BundleStatePending = "pending"
)

// bundleOutcome is what a boot did about the node's bundle.
type bundleOutcome struct {
	bundle  string // BundleApplied, BundleNone or BundleUnchecked
	source  string
	state   string
	version int64
	files   int
	// applied is the files written, for the running agent to compare the
	// next version with.
	applied []bundle.File
}

func (o bundleOutcome) fill(r *Result, root string) {
	r.Bundle = o.bundle
	r.BundleSource = o.source
	r.BundleState = o.state
	r.BundleVersion = uint64(max(o.version, 0))
	r.FilesApplied = o.files
	if o.bundle == BundleApplied {
		r.Root = root
	}
}

// bootBundle brings the node's configuration in place once its
// credentials are written. The bundle is the one the registration service
// sent along (when it checked), else the one the bundle store has. With no
// bundle and --configure, the command makes one, which is sealed to the
// node's own bundle key, uploaded and applied, so the first boot ends
// configured too. A bundle that does not open, cannot be applied safely,
// or a store still unreachable after --wait fails the boot: the node must
// not come up half-configured.
//
// Later versions reach a running agent through its heartbeat stream (see
// keepBundlesLive).
func (a *Agent) bootBundle(ctx context.Context, creds *Credentials, log *slog.Logger) (bundleOutcome, error) {
	s := &bundleStore{addr: creds.Endpoints.GetBundles(), creds: creds, key: a.cfg.Keys.Identity(), timeout: a.cfg.AttemptTimeout}
	defer s.close()
	// Reaching the bundle store gets a --wait of its own: a node that
	// waited long for approval must still get its bundle.
	w := a.newWaiter()
	var (
		sb     *berthv1.SealedBundle
		source = BundleSourceInline
	)
	switch {
	case creds.BundleChecked:
		sb = creds.Bundle
	case s.addr != "":
		source = BundleSourceFetched
		var err error
		if sb, err = a.fetchBundle(ctx, s, w, log); err != nil {
			return bundleOutcome{}, err
		}
	case a.cfg.Configure != "":
		return bundleOutcome{}, errNoStoreToConfigure
	default:
		log.Warn("no bundle store known; the node's bundle was not checked")
		return bundleOutcome{bundle: BundleUnchecked}, nil
	}
	if sb != nil && a.reconfigure && a.cfg.Configure != "" && s.addr != "" {
		log.Info("berth.reconfigure=1: running --configure over the node's bundle", "version", sb.GetInfo().GetVersion())
		return a.configure(ctx, creds, s, w, log, sb.GetInfo().GetVersion())
	}
	if sb != nil {
		if a.reconfigure {
			log.Warn("berth.reconfigure=1 asks for --configure, but there is no --configure command or bundle store; applying the node's bundle")
		}
		return a.applySealed(sb, source, creds, log)
	}
	if a.cfg.Configure == "" {
		log.Info("no bundle")
		return bundleOutcome{bundle: BundleNone}, nil
	}
	if s.addr == "" {
		return bundleOutcome{}, errNoStoreToConfigure
	}
	return a.configure(ctx, creds, s, w, log, 0)
}

var errNoStoreToConfigure = errors.New("--configure needs the bundle store to upload to, but the registration service named no bundles endpoint")

// applySealed verifies a sealed bundle, opens it with the node's bundle
// key and applies its files. Nothing is written unless the bundle is
// signed for this node and the version it was served as, by an admin
// credential chaining to the pinned root or by this node's own identity
// key: not by the bundle store, its database, or anyone else.
func (a *Agent) applySealed(sb *berthv1.SealedBundle, source string, creds *Credentials, log *slog.Logger) (bundleOutcome, error) {
	v := sb.GetInfo().GetVersion()
	opened, err := bundle.Open(a.cfg.Keys.BundleKey(), sb.GetSealed(), a.verifier(creds, v))
	if err != nil {
		return bundleOutcome{}, &bundleRefusedError{version: v, err: err}
	}
	// Hooks run when a running agent applies a new version; at boot the
	// services that read the files start after the agent.
	files := opened.Files
	if err := newApplier(a.cfg.Root, log).apply(files); err != nil {
		return bundleOutcome{}, fmt.Errorf("bundle version %d: %w", v, err)
	}
	log.Info("bundle applied", "version", v, "files", len(files), "root", a.cfg.Root, "source", source,
		"signed_by", opened.SignedBy.String(), "sha256", bundle.Digest(sb.GetSealed()))
	return bundleOutcome{bundle: BundleApplied, source: source, state: stateName(sb.GetInfo().GetState()),
		version: v, files: len(files), applied: files}, nil
}

// verifier is what a bundle served to this node as version v must match.
func (a *Agent) verifier(creds *Credentials, v int64) bundle.Verifier {
	roots := x509.NewCertPool()
	for _, r := range creds.Trust { // every one is the pinned root (parseCredentials)
		roots.AddCert(r)
	}
	return bundle.Verifier{
		TrustDomain: creds.TrustDomain(),
		NodeID:      creds.NodeID,
		Version:     v,
		Roots:       roots,
		Anchor:      creds.anchor,
		NodeKey:     a.cfg.Keys.Identity().Public(),
	}
}

// bundleRefusedError is a bundle the agent would not apply. The node's
// files are left as they were.
type bundleRefusedError struct {
	version int64
	err     error
}

func (e *bundleRefusedError) Error() string {
	return fmt.Sprintf("bundle version %d refused, nothing applied (the node's files are as they were): %v", e.version, e.err)
}

func (e *bundleRefusedError) Unwrap() error { return e.err }

// configure runs --configure, seals what it wrote to the node's own bundle
// key, uploads it as the node's first version (or, with replace, the
// version the node's bundle has, as the next one) and applies it.
func (a *Agent) configure(ctx context.Context, creds *Credentials, s *bundleStore, w *waiter, log *slog.Logger, replace int64) (bundleOutcome, error) {
	timeout := a.cfg.Wait
	if timeout <= 0 {
		timeout = a.cfg.AttemptTimeout
	}
	files, err := runConfigure(ctx, a.cfg.Configure, timeout, creds.NodeID, a.hostname(creds), log)
	if err != nil {
		return bundleOutcome{}, err
	}
	if len(files) == 0 {
		log.Warn("configure command wrote no files; uploading an empty bundle")
	}
	if err := bundle.Validate(files); err != nil {
		return bundleOutcome{}, fmt.Errorf("configure command output: %w; nothing was uploaded", err)
	}
	// What cannot be applied here must not become the node's bundle.
	ap := newApplier(a.cfg.Root, log)
	t, _, err := ap.prepare(files)
	if err != nil {
		return bundleOutcome{}, fmt.Errorf("configure command output: %w; nothing was uploaded", err)
	}
	t.close()

	sealed, info, err := a.uploadOwn(ctx, creds, s, w, log, files, replace)
	switch {
	case err == nil:
	case status.Code(err) == codes.FailedPrecondition:
		// The store has a version after all: the engine supplied one
		// meanwhile, or an earlier try of this upload was stored and its
		// answer lost. Or an upload waits for approval, and no other is
		// taken until it is approved. Which one, GetBundle tells.
		cur, gerr := a.fetchBundle(ctx, s, w, log)
		if gerr != nil {
			return bundleOutcome{}, gerr
		}
		if cur != nil {
			source := BundleSourceFetched
			if cur.GetInfo().GetSha256() == bundle.Digest(sealed) {
				source = BundleSourceConfigured
			}
			log.Info("the bundle store holds a bundle for this node after all; applying it", "version", cur.GetInfo().GetVersion())
			return a.applySealed(cur, source, creds, log)
		}
		log.Warn("an upload of this node's bundle is already waiting for approval; applying the configured files here only",
			"reason", status.Convert(err).Message())
		info = &berthv1.BundleInfo{State: berthv1.BundleState_BUNDLE_STATE_PENDING}
	default:
		return bundleOutcome{}, s.fail("put bundle", err)
	}
	state := stateName(info.GetState())
	if state == BundleStatePending {
		// The node made these files itself, so using them now takes
		// nothing from the engine; the approval decides whether they
		// become the bundle the node gets on later boots.
		log.Warn("bundle upload is held for approval", "version", info.GetVersion())
	}
	if err := ap.apply(files); err != nil {
		return bundleOutcome{}, fmt.Errorf("bundle version %d: %w", info.GetVersion(), err)
	}
	log.Info("configured bundle uploaded and applied", "version", info.GetVersion(), "state", state,
		"files", len(files), "root", a.cfg.Root, "sha256", bundle.Digest(sealed))
	return bundleOutcome{bundle: BundleApplied, source: BundleSourceConfigured, state: state,
		version: info.GetVersion(), files: len(files), applied: files}, nil
}

// maxSignAttempts bounds how often a node's own upload is signed again
// because another write took the version number it was signed for.
const maxSignAttempts = 3

// uploadOwn seals files to the node's own bundle key, signs them with its
// identity key for the version number the store gives the next write, and
// uploads them as replacing version replace (0: none). It returns the sealed bytes and
// the store's answer, or the upload's error: FailedPrecondition when the
// store holds a version after all, or an upload waits for approval.
func (a *Agent) uploadOwn(ctx context.Context, creds *Credentials, s *bundleStore, w *waiter, log *slog.Logger, files []bundle.File, replace int64) ([]byte, *berthv1.BundleInfo, error) {
	signer, err := bundle.NewNodeSigner(creds.TrustDomain(), a.cfg.Keys.Identity())
	if err != nil {
		return nil, nil, fmt.Errorf("sign the configured bundle: %w; nothing was uploaded", err)
	}
	kemID, pub := keys.BundlePublic(a.cfg.Keys.BundleKey())
	var last []byte // the last upload tried, which the store may hold
	for attempt := 1; ; attempt++ {
		var versions *berthv1.GetBundleVersionsResponse
		err := a.storeCall(ctx, s, w, log, func(actx context.Context) error {
			var err error
			versions, err = s.client.GetBundleVersions(actx, &berthv1.GetBundleVersionsRequest{})
			return err
		})
		if err != nil {
			return nil, nil, s.fail("get bundle versions", err)
		}
		if versions.GetCurrent() != replace || versions.GetPending() != 0 {
			// Nothing to sign for: the caller finds out what is there.
			return last, nil, status.Error(codes.FailedPrecondition, "the node's bundle has a current or pending version")
		}
		sealed, err := bundle.Seal(bundle.Target{NodeID: creds.NodeID, KEM: kemID, Public: pub, Version: versions.GetNext()},
			bundle.Contents{Files: files}, signer)
		if err != nil {
			return nil, nil, fmt.Errorf("configure command output: %w; nothing was uploaded", err)
		}
		last = sealed
		var info *berthv1.BundleInfo
		err = a.storeCall(ctx, s, w, log, func(actx context.Context) error {
			resp, err := s.client.PutBundle(actx, &berthv1.PutBundleRequest{ExpectedVersion: replace, Sealed: sealed})
			info = resp.GetInfo()
			return err
		})
		// An earlier try of this very upload may have been stored and its
		// answer lost; the caller sees that by digest.
		if status.Code(err) == codes.FailedPrecondition && attempt < maxSignAttempts {
			log.Info("the bundle store refused the upload; checking its versions again", "reason", status.Convert(err).Message())
			continue
		}
		return sealed, info, err
	}
}

// hostname is the node's host name for --configure: the one in its
// certificate, else the one it registers with.
func (a *Agent) hostname(creds *Credentials) string {
	if leaf := creds.Leaf(); leaf != nil && len(leaf.DNSNames) > 0 {
		return leaf.DNSNames[0]
	}
	if a.cfg.Facts.Hostname != "" {
		return a.cfg.Facts.Hostname
	}
	h, _ := os.Hostname()
	return h
}

func stateName(s berthv1.BundleState) string {
	if s == berthv1.BundleState_BUNDLE_STATE_PENDING {
		return BundleStatePending
	}
	return BundleStateApproved
}

// bundleStore is the node's connection to the bundle store, made on first
// use with its issued certificate.
type bundleStore struct {
	addr    string
	creds   *Credentials
	key     crypto.Signer
	timeout time.Duration
	c       *conn
	client  berthv1.BundleServiceClient
}

func (s *bundleStore) connect() error {
	if s.c != nil {
		return nil
	}
	c, err := dialBundles(s.addr, s.creds, s.key, s.timeout)
	if err != nil {
		return err
	}
	s.c, s.client = c, berthv1.NewBundleServiceClient(c.cc)
	return nil
}

func (s *bundleStore) close() {
	if s.c != nil {
		s.c.Close()
	}
}

// fail gives an RPC's own error the store's address; other errors from
// storeCall say what happened already.
func (s *bundleStore) fail(rpc string, err error) error {
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return fmt.Errorf("bundle store %s: %w", s.addr, rpcError(rpc, err))
	}
	return err
}

// fetchBundle gets the node's current bundle from the store; nil when it
// has none.
func (a *Agent) fetchBundle(ctx context.Context, s *bundleStore, w *waiter, log *slog.Logger) (*berthv1.SealedBundle, error) {
	var resp *berthv1.GetBundleResponse
	err := a.storeCall(ctx, s, w, log, func(actx context.Context) error {
		var err error
		resp, err = s.client.GetBundle(actx, &berthv1.GetBundleRequest{})
		return err
	})
	switch {
	case status.Code(err) == codes.NotFound:
		return nil, nil
	case err != nil:
		return nil, s.fail("get bundle", err)
	case resp.GetBundle() == nil:
		return nil, fmt.Errorf("bundle store %s: get bundle: the answer holds no bundle", s.addr)
	}
	return resp.GetBundle(), nil
}

// storeCall makes call on the bundle store, retrying while the store is
// not reachable (refused, Unavailable, timed out) with backoff until w's
// deadline. It returns nil, the call's own gRPC error, or an error that
// says all there is: the store is not trusted, or still unreachable.
func (a *Agent) storeCall(ctx context.Context, s *bundleStore, w *waiter, log *slog.Logger, call func(context.Context) error) error {
	if err := s.connect(); err != nil {
		return err
	}
	for {
		actx, done := s.c.attempt(ctx, w.attemptTimeout(a.cfg.AttemptTimeout))
		err := s.c.classify(ctx, actx, s.addr, call(actx))
		done()
		if !isTransient(err) {
			return err
		}
		log.Warn("bundle store not reachable; retrying", "bundle_store", s.addr, logErr, err)
		_, floor := retryable(err)
		ok, werr := w.waitAtLeast(ctx, floor)
		if werr != nil {
			return werr
		}
		if !ok {
			return fmt.Errorf("bundle store %s unreachable for %s: %w", s.addr, a.cfg.Wait, err)
		}
	}
}
