package agent

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/sdnotify"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ErrPending is returned when the node is still pending approval once
// --wait has passed.
var ErrPending = errors.New("still pending approval")

// ErrDenied is returned for a node the server rejected or revoked.
var ErrDenied = errors.New("node denied")

// deniedError is an ErrDenied with the server's reason.
type deniedError struct {
	status string // rejected, revoked, or "" when the server did not say
	msg    string
	what   string // what was denied; "" means registration
}

func (e *deniedError) Error() string {
	what := cmp.Or(e.what, "registration")
	if e.msg == "" {
		return what + " denied: node is " + e.status
	}
	return what + " denied: " + e.msg
}

func (e *deniedError) Is(target error) bool { return target == ErrDenied }

// deniedFromStatus makes a deniedError from a PermissionDenied status,
// reading the node status from the server's message when it names one.
func deniedFromStatus(err error) *deniedError {
	msg := status.Convert(err).Message()
	d := &deniedError{msg: msg}
	for _, w := range strings.FieldsFunc(strings.ToLower(msg), func(r rune) bool {
		return !(r >= 'a' && r <= 'z')
	}) {
		if w == "revoked" || w == "rejected" {
			d.status = w
			break
		}
	}
	return d
}

// Exit statuses of berth-agent.
const (
	ExitOK      = 0
	ExitFailure = 1 // anything else
	ExitUsage   = 2 // bad flags or configuration
	ExitPending = 3 // still pending approval after --wait
	ExitDenied  = 4 // rejected or revoked
)

// ExitCode maps an error from Run to berth-agent's exit status.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrConfig):
		return ExitUsage
	case errors.Is(err, ErrPending):
		return ExitPending
	case errors.Is(err, ErrDenied):
		return ExitDenied
	}
	return ExitFailure
}

// Agent is a configured node agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	start time.Time
	// clockOffset is how far the server's clock is ahead of this node's,
	// from the last answer that carried the server's time; nil before.
	clockOffset *time.Duration
	clockWarned bool // the large offset was warned about
	// state is what a long-running agent reports and shows on its local
	// API.
	state *nodeState
	// reconfigure is berth.reconfigure=1: run --configure even over an
	// existing bundle.
	reconfigure bool
	// bootIDOnce makes the boot ID once, so that the boot Resume reports
	// and the heartbeats are the same (a made-up one too).
	bootIDOnce sync.Once
	bootIDv    string
}

// warnSiteSecret is logged at start by an agent whose keys come from a
// site secret: say what it means and what to do instead.
const warnSiteSecret = "identity derived from a site secret and the hardware UUID: anyone with this boot image who knows the machine's UUID can impersonate it, and bootstrap tokens do not auto-approve it unless created with --allow-site-secret; give each machine its own --seed-file or use --identity tpm"

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	sum, err := mtls.KeyHash(cfg.Keys.Identity().Public())
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	kemID, _ := keys.BundlePublic(cfg.Keys.BundleKey())
	log := cfg.Logger.With(logKey, hex.EncodeToString(sum[:]))
	log.Debug("node keys ready", "bundle_kem", fmt.Sprintf("0x%04x", kemID), logIdentitySource, cfg.IdentitySource)
	if cfg.IdentitySource == keys.AssuranceSiteSecret {
		log.Warn(warnSiteSecret)
	}
	return &Agent{cfg: cfg, log: log, start: cfg.Clock.Now(),
		state: newNodeState(cfg.Clock, cfg.EventQueue, string(cfg.IdentitySource))}, nil
}

// Run boots the node: it discovers the server, resumes or registers,
// waits out approval, writes the credentials, applies the node's bundle
// under Root (or makes one with Configure) and, with Once, sends
// heartbeats until one is acknowledged; then it prints the result. With
// Once it then returns; otherwise it stays up, renewing the certificate
// at two thirds of its lifetime and sending heartbeats, until ctx ends
// (which is not an error) or the node is found revoked.
func (a *Agent) Run(ctx context.Context) error {
	// Checked before anything else; made only when something is written.
	if err := checkDir("--cert-dir", a.cfg.CertDir, certDirMode, false); err != nil {
		return err
	}
	if err := checkDir("--root", a.cfg.Root, rootDirMode, false); err != nil {
		return err
	}
	w := a.newWaiter()
	if a.cfg.Offline == OfflineContinue && !a.cfg.Once {
		// The node boots on without waiting for berth; the agent keeps
		// trying in the background, for as long as it takes.
		a.notify(sdnotify.Ready + "\nSTATUS=booted without berth; reaching the registration server in the background")
		w.deadline = w.deadline.Add(100 * 365 * 24 * time.Hour)
	}
	t, err := a.discover(ctx, w)
	if err != nil {
		return stopped(ctx, err)
	}
	// Up from here on, so that events of a node still booting (or waiting
	// for a server) are queued; after discovery, so that bad settings are
	// said first.
	if !a.cfg.Once {
		stop, err := a.startLocal(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}
	log := a.log.With(logServer, t.Server)
	log.Info("registration server found", logSource, t.Source)
	a.reconfigure = t.Reconfigure

	c, err := dial(t, a.cfg.Keys.Identity(), a.cfg.Clock, a.cfg.AttemptTimeout)
	if err != nil {
		return err
	}
	defer c.Close()

	creds, action, err := a.boot(ctx, c, t, w, log)
	var off *offlineError
	if errors.As(err, &off) && a.cfg.Offline == OfflineContinue && a.cfg.Once {
		// --once --offline continue: the initramfs boots on unconfigured;
		// the agent of the real root keeps trying.
		log.Warn("registration server not reachable; booting on without berth (--offline continue)", logErr, err)
		res := &Result{Action: ActionOffline, Reason: off.Error(), CertDir: a.cfg.CertDir}
		if werr := res.Write(a.cfg.Stdout, a.cfg.Output); werr != nil {
			return fmt.Errorf("print result: %w", werr)
		}
		return nil
	}
	if err != nil {
		a.reportFailure(creds, action, err)
		return stopped(ctx, err)
	}
	log = log.With(logNodeID, creds.NodeID)
	if err := WriteCredentials(a.cfg.CertDir, creds, a.cfg.Keys.Identity()); err != nil {
		return err
	}
	if err := ensureDir("--root", a.cfg.Root, rootDirMode); err != nil {
		return err
	}
	c.certs.setIssued(creds)
	a.state.setCreds(creds)
	res := newResult(creds, action)
	res.CertDir = a.cfg.CertDir
	if a.clockOffset != nil {
		secs := a.clockOffset.Seconds()
		res.ClockOffsetSeconds = &secs
	}
	log.Info("node credentials written", "action", action, logSerial, res.CertSerial, logExpires, res.CertNotAfter, "dir", a.cfg.CertDir)
	// On boot only: see bootBundle.
	bo, err := a.bootBundle(ctx, creds, log)
	if err != nil {
		return stopped(ctx, err)
	}
	bo.fill(res, a.cfg.Root)
	if bo.bundle == BundleApplied {
		a.state.setApplied(appliedBundle{version: bo.version, at: a.cfg.Clock.Now(), files: fileMap(bo.applied)})
	}
	switch {
	case a.cfg.NoHeartbeat:
		a.state.setConnection(connDisabled)
		res.Heartbeat = HeartbeatDisabled
	case creds.Endpoints.GetHeartbeat() == "" && (a.cfg.Once || a.cfg.Heartbeater == nil):
		log.Warn("no heartbeat endpoint known; no heartbeats are sent")
		res.Heartbeat = HeartbeatNone
	case a.cfg.Once && creds.HeartbeatInterval > 0:
		// The registration service took this boot as the node's first
		// heartbeat: the node is known to be alive without a stream.
		res.Heartbeat = HeartbeatRecorded
		res.HeartbeatInterval = creds.HeartbeatInterval.Round(time.Millisecond).Seconds()
	case a.cfg.Once:
		// A --once boot ends with the node known to be alive.
		iv, err := a.bootHeartbeat(ctx, creds, log)
		if err != nil {
			return stopped(ctx, err)
		}
		res.Heartbeat = HeartbeatAcked
		res.HeartbeatInterval = iv.Round(time.Millisecond).Seconds()
	}
	if err := res.Write(a.cfg.Stdout, a.cfg.Output); err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	// The credentials are written and the bundle applied: the services
	// ordered after the agent's unit may start.
	a.notify(sdnotify.Ready)
	if a.cfg.Once {
		return nil
	}
	return a.serve(ctx, c, t, creds, res.Heartbeat == "", log)
}

// stopped says so when err is only the result of ctx ending.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ErrDenied) && !errors.Is(err, ErrUntrusted) {
		return fmt.Errorf("stopped before the node was ready: %w", context.Cause(ctx))
	}
	return err
}

// reportFailure prints the JSON result of a boot that ended pending or
// refused, so that a script reading --output json still gets its object:
// a boot the server refused (denied, rejected, revoked, or any answer
// waiting cannot change) has action "refused" and the reason.
func (a *Agent) reportFailure(creds *Credentials, action string, err error) {
	if a.cfg.Output != OutputJSON {
		return
	}
	var res *Result
	if creds != nil {
		res = newResult(creds, action)
	}
	var (
		d  *deniedError
		re *refusedError
	)
	switch {
	case errors.As(err, &d):
		if res == nil {
			res = &Result{}
		}
		if d.status != "" {
			res.Status = d.status
		}
		res.Message = d.msg
		res.Action, res.Reason = ActionRefused, d.Error()
	case errors.As(err, &re):
		if res == nil {
			res = &Result{}
		}
		res.Action, res.Reason = ActionRefused, re.Error()
	}
	if res != nil {
		_ = res.Write(a.cfg.Stdout, a.cfg.Output)
	}
}

// discover runs Discover, retrying temporary DNS failures until the wait
// deadline.
func (a *Agent) discover(ctx context.Context, w *waiter) (Target, error) {
	for {
		t, err := Discover(ctx, &a.cfg)
		var tr *transientError
		if !errors.As(err, &tr) {
			return t, err
		}
		a.log.Warn("discovery failed; retrying", logErr, err)
		if ok, serr := w.wait(ctx); serr != nil {
			return Target{}, serr
		} else if !ok {
			return Target{}, fmt.Errorf("%w (gave up after %s)", err, a.cfg.Wait)
		}
	}
}

// boot calls Resume, or Register for a node the server does not know,
// until the node is approved. It retries while the server is unreachable
// and polls Register while the node is pending, both until the wait
// deadline. It returns the last credentials seen even on error, and the
// action: registered when this boot enrolled the node.
func (a *Agent) boot(ctx context.Context, c *conn, t Target, w *waiter, log *slog.Logger) (*Credentials, string, error) {
	client := berthv1.NewRegistrationServiceClient(c.cc)
	var (
		action  = ActionResumed
		req     *berthv1.RegisterRequest // nil until Register is needed
		pending *Credentials             // last pending answer
		lastErr error                    // last reason to retry, nil while pending
		floor   time.Duration            // least wait the server asked for
	)
	useRegister := func() error {
		if req != nil {
			return nil
		}
		var err error
		req, err = a.registerRequest(ctx, t.Token)
		return err
	}
	for {
		rpc := "resume"
		if req != nil {
			rpc = "register"
		}
		nc, err := a.call(ctx, c, t, w, client, req)
		switch code := status.Code(err); {
		case err == nil:
			creds, err := parseCredentials(nc, a.cfg.Keys.Identity().Public(), c.watch.serverChain())
			if err != nil {
				return nil, action, err
			}
			switch creds.Status {
			case berthv1.NodeStatus_NODE_STATUS_APPROVED:
				return creds, action, nil
			case berthv1.NodeStatus_NODE_STATUS_PENDING:
				if pending == nil || lastErr != nil {
					log.Info("node is pending approval; waiting", logNodeID, creds.NodeID, "wait", a.cfg.Wait)
					w.reset()
				}
				pending, lastErr = creds, nil
				if err := useRegister(); err != nil {
					return creds, action, err
				}
			case berthv1.NodeStatus_NODE_STATUS_REJECTED, berthv1.NodeStatus_NODE_STATUS_REVOKED:
				return creds, action, &deniedError{status: StatusName(creds.Status)}
			default:
				return nil, action, fmt.Errorf("%s: server returned node status %v", rpc, creds.Status)
			}
		case isTransient(err):
			if lastErr == nil {
				w.reset()
			}
			lastErr = err
			_, floor = retryable(err)
			if isStatus(err) {
				// It answered: it, or something it needs, cannot serve now.
				log.Warn("registration server cannot serve now; retrying", logErr, err)
			} else {
				log.Warn("registration server not reachable; retrying", logErr, err)
			}
		case code == codes.NotFound && req == nil:
			// A node the server has never seen: this boot enrols it.
			action = ActionRegistered
			log.Info("node not registered yet; registering")
			if err := useRegister(); err != nil {
				return nil, action, err
			}
			continue
		case code == codes.FailedPrecondition && req == nil:
			// Resume refuses a node that is not approved yet; Register
			// (idempotent for a known key) reports its status.
			if err := useRegister(); err != nil {
				return nil, action, err
			}
			continue
		case code == codes.PermissionDenied:
			return pending, action, deniedFromStatus(err)
		case !isStatus(err):
			// Not an answer of the server: an untrusted server, or a
			// failure on this side.
			return pending, action, rpcError(rpc, err)
		default:
			// Waiting cannot change this answer.
			return pending, action, refused(rpc, err)
		}
		ok, err := w.waitAtLeast(ctx, floor)
		floor = 0
		if err != nil {
			return pending, action, err
		}
		if !ok {
			if lastErr != nil {
				if isStatus(lastErr) {
					return pending, action, &offlineError{fmt.Errorf("registration server %s could not serve for %s: %w", t.Server, a.cfg.Wait, rpcError(rpc, lastErr))}
				}
				return pending, action, &offlineError{fmt.Errorf("registration server %s unreachable for %s: %w", t.Server, a.cfg.Wait, lastErr)}
			}
			return pending, action, fmt.Errorf("node %s is %w after %s", pending.NodeID, ErrPending, a.cfg.Wait)
		}
	}
}

// call makes one Resume (req == nil) or Register attempt.
func (a *Agent) call(ctx context.Context, c *conn, t Target, w *waiter, client berthv1.RegistrationServiceClient, req *berthv1.RegisterRequest) (*berthv1.NodeCredentials, error) {
	actx, done := c.attempt(ctx, w.attemptTimeout(a.cfg.AttemptTimeout))
	defer done()
	var (
		nc  *berthv1.NodeCredentials
		err error
	)
	var serverTime *timestamppb.Timestamp
	sent := a.cfg.Clock.Now()
	if req == nil {
		var resp *berthv1.ResumeResponse
		resp, err = client.Resume(actx, &berthv1.ResumeRequest{Boot: a.bootBeat()})
		if err == nil && resp.GetQuoteChallenge() != nil {
			// The server wants this boot quoted by the TPM.
			resp, err = a.quoteBoot(actx, client, resp.GetQuoteChallenge())
		}
		nc, serverTime = resp.GetCredentials(), resp.GetServerTime()
	} else {
		var resp *berthv1.RegisterResponse
		resp, err = client.Register(actx, req)
		if err == nil && resp.GetTpmChallenge() != nil {
			// The server wants the TPM proven: the same call again, with
			// the secret only this TPM can release.
			resp, err = a.activate(actx, client, req, resp.GetTpmChallenge())
		}
		nc, serverTime = resp.GetCredentials(), resp.GetServerTime()
		if err == nil && resp.GetQuoteChallenge() != nil {
			var rr *berthv1.ResumeResponse
			rr, err = a.quoteBoot(actx, client, resp.GetQuoteChallenge())
			nc, serverTime = rr.GetCredentials(), rr.GetServerTime()
		}
	}
	if err == nil {
		a.noteClock(sent, a.cfg.Clock.Now(), serverTime)
	}
	return nc, c.classify(ctx, actx, t.Server, err)
}

// offlineError is a registration server still unreachable, or unable to
// serve, when the wait ended.
type offlineError struct{ err error }

func (e *offlineError) Error() string { return e.err.Error() }
func (e *offlineError) Unwrap() error { return e.err }

// refusedError is a final answer of the registration server that is not
// a denial: waiting cannot change it, so the boot stops at once.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// isStatus reports whether err is an answer of a gRPC server.
func isStatus(err error) bool {
	_, ok := status.FromError(err)
	return ok
}

// refused wraps a final answer to rpc.
func refused(rpc string, err error) error { return &refusedError{err: rpcError(rpc, err)} }

// rpcError renders a gRPC error as "rpc: message (Code)".
func rpcError(rpc string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", rpc, err)
	}
	return fmt.Errorf("%s: %s (%s)", rpc, st.Message(), st.Code())
}

// registerRequest collects what Register needs: machine facts, a CSR
// signed by the identity key, the bundle public key and the token.
func (a *Agent) registerRequest(ctx context.Context, token string) (*berthv1.RegisterRequest, error) {
	facts, err := CollectFacts(a.cfg.Facts)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: facts.Hostname},
	}, a.cfg.Keys.Identity())
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	kemID, pub := keys.BundlePublic(a.cfg.Keys.BundleKey())
	req := &berthv1.RegisterRequest{
		Facts:     facts,
		Csr:       csr,
		BundleKey: &berthv1.BundleKey{KemId: uint32(kemID), PublicKey: pub},
		Token:     token,
		Boot:      a.bootBeat(),

		IdentitySource: string(a.cfg.IdentitySource),
	}
	if a.cfg.IdentitySource == keys.AssuranceTPM {
		if req.Tpm, err = a.tpmEvidence(ctx); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// newWaiter starts a wait of Config.Wait from now.
func (a *Agent) newWaiter() *waiter {
	return &waiter{clock: a.cfg.Clock, backoff: a.cfg.Backoff, deadline: a.cfg.Clock.Now().Add(a.cfg.Wait), log: a.log}
}

// waiter paces retries with backoff up to a deadline.
type waiter struct {
	clock    clock.Clock
	backoff  Backoff
	deadline time.Time
	n        int
	log      *slog.Logger
}

// wait sleeps before the next retry. It reports false, without sleeping,
// once the deadline has passed; the last sleep is cut to end on it.
func (w *waiter) wait(ctx context.Context) (bool, error) { return w.waitAtLeast(ctx, 0) }

// waitAtLeast is wait, sleeping at least floor (a delay the server asked
// for) unless the deadline comes first.
func (w *waiter) waitAtLeast(ctx context.Context, floor time.Duration) (bool, error) {
	left := w.deadline.Sub(w.clock.Now())
	if left <= 0 {
		return false, nil
	}
	d := min(max(w.backoff.Delay(w.n), floor), left)
	w.n++
	w.log.Debug("backing off", logDelay, d, logAttempt, w.n)
	if err := w.clock.Sleep(ctx, d); err != nil {
		return false, err
	}
	return true, nil
}

// reset starts the backoff over, when the reason to wait changes.
func (w *waiter) reset() { w.n = 0 }

// attemptTimeout bounds one call by def and by what is left of the wait,
// but always gives a call a second.
func (w *waiter) attemptTimeout(def time.Duration) time.Duration {
	left := w.deadline.Sub(w.clock.Now())
	return max(min(def, left), time.Second)
}
