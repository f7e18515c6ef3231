package registration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// nodeFrom is a new node whose connection comes from the loopback address src.
func (e *env) nodeFrom(t *testing.T, uuid, src string) *node {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := e.nodeWithKey(key, uuid)
	n.conn = e.srv.BootstrapFrom(t, key, src)
	return n
}

// retryDelay returns the RetryInfo delay of a status, or -1.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return -1
}

// limitedEnv is a service that allows a source burst failed tokens, then
// one a minute, with a good token of 20 uses and the same token with a
// wrong secret.
func limitedEnv(t *testing.T, burst int) (e *env, good, wrong string) {
	t.Helper()
	e = newEnvConfig(t, sqliteBackend, func(c *Config) {
		c.TokenFailureBurst = burst
		c.TokenFailureInterval = time.Minute
	})
	good = e.token(t, &berthv1.CreateTokenRequest{Uses: 20, AutoApprove: true})
	return e, good, good[:9] + "aaaaaaaaaaaaaaaaaaaaaaaaaa"
}

// TestTokenFailuresLimited: a source address that failed
// TokenFailureBurst token attempts is refused with ResourceExhausted and a
// retry delay, before its token is looked at, until it earned an attempt
// back. Other sources, successful attempts and known keys are not limited.
func TestTokenFailuresLimited(t *testing.T) {
	e, good, wrong := limitedEnv(t, 3)
	ctx := context.Background()
	seq := 0
	uuid := func() string { seq++; return fmt.Sprintf("00000000-0000-4000-8000-%012d", seq) }
	register := func(src, token string) error {
		n := e.nodeFrom(t, uuid(), src)
		_, err := n.client().Register(ctx, n.registerRequest(t, token))
		return err
	}

	// An already registered node, connected from the source about to be
	// limited: it registers again without a token check.
	veteran := e.nodeFrom(t, uuid(), "127.0.0.1")
	if _, err := veteran.client().Register(ctx, veteran.registerRequest(t, good)); err != nil {
		t.Fatal(err)
	}

	for range 3 {
		wantCode(t, register("127.0.0.1", wrong), codes.PermissionDenied)
	}
	before := e.nodeCount(t)
	for _, token := range []string{wrong, good} {
		err := register("127.0.0.1", token)
		wantCode(t, err, codes.ResourceExhausted)
		if msg := status.Convert(err).Message(); msg != msgTokenFailures {
			t.Errorf("message %q, want %q", msg, msgTokenFailures)
		}
		if d := retryDelay(err); d != time.Minute {
			t.Errorf("retry delay %v, want 1m (one attempt is earned back per minute)", d)
		}
	}
	if e.nodeCount(t) != before {
		t.Fatal("a limited source registered a node")
	}
	if _, err := veteran.client().Register(ctx, veteran.registerRequest(t, good)); err != nil {
		t.Fatalf("a registered key from the limited source: %v", err)
	}
	if _, err := veteran.client().Resume(ctx, &berthv1.ResumeRequest{}); err != nil {
		t.Fatalf("Resume from the limited source: %v", err)
	}

	// Another source is not blocked by the first.
	wantCode(t, register("127.0.0.2", wrong), codes.PermissionDenied)
	wantCode(t, register("127.0.0.2", good), codes.OK)

	// Successful attempts cost nothing: after five of them, a source still
	// has its three failures.
	for range 5 {
		wantCode(t, register("127.0.0.3", good), codes.OK)
	}
	for range 3 {
		wantCode(t, register("127.0.0.3", wrong), codes.PermissionDenied)
	}
	wantCode(t, register("127.0.0.3", wrong), codes.ResourceExhausted)

	// Half a minute later the first source is told to wait the other half;
	// after it, it has one attempt, and is limited again after a failure.
	e.clock.Advance(30 * time.Second)
	err := register("127.0.0.1", good)
	wantCode(t, err, codes.ResourceExhausted)
	if d := retryDelay(err); d != 30*time.Second {
		t.Errorf("retry delay after 30s %v, want 30s", d)
	}
	e.clock.Advance(30 * time.Second)
	wantCode(t, register("127.0.0.1", wrong), codes.PermissionDenied)
	wantCode(t, register("127.0.0.1", good), codes.ResourceExhausted)
	e.clock.Advance(time.Minute)
	wantCode(t, register("127.0.0.1", good), codes.OK)
}

// TestTokenFailureConfig: negative limits are refused.
func TestTokenFailureConfig(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	for _, c := range []Config{
		{TokenFailureBurst: -1},
		{TokenFailureInterval: -time.Second},
	} {
		c.Store, c.CA, c.TrustBundle = e.reg, e.ca, [][]byte{e.layout.Root.Raw}
		if _, err := New(c); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
}

// TestKnownNodesFromOneSource: a fleet of registered nodes booting from
// behind one address is not throttled by the per-source limit on
// unauthenticated connections: each bare-key connection stops counting
// once Resume or Register found its node approved. Unknown keys from that
// address still are.
func TestKnownNodesFromOneSource(t *testing.T) {
	e := newEnvLimits(t, sqliteBackend, rpc.Limits{MaxUnauthenticatedPerSource: 2}, nil)
	ctx := context.Background()
	tok := e.token(t, &berthv1.CreateTokenRequest{Uses: 20, AutoApprove: true})
	var fleet []*node
	for i := range 10 {
		n := e.nodeFrom(t, fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), "127.0.0.5")
		if _, err := n.client().Register(ctx, n.registerRequest(t, tok)); err != nil {
			t.Fatalf("register node %d of the fleet, earlier ones still connected: %v", i, err)
		}
		fleet = append(fleet, n)
	}
	// The power comes back: every node boots again over a new connection,
	// all of them held open.
	for i, old := range fleet {
		n := &node{key: old.key, conn: e.srv.BootstrapFrom(t, old.key, "127.0.0.5")}
		if _, err := n.client().Resume(ctx, &berthv1.ResumeRequest{}); err != nil {
			t.Fatalf("resume node %d of the fleet, earlier ones still connected: %v", i, err)
		}
	}
	// Two unknown keys hold the address's two unauthenticated slots; a
	// third connection from it is refused.
	for i := range 2 {
		n := e.nodeFrom(t, fmt.Sprintf("00000000-0000-4000-9000-%012d", i), "127.0.0.5")
		_, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
		wantCode(t, err, codes.NotFound)
	}
	n := e.nodeFrom(t, "00000000-0000-4000-9000-000000000009", "127.0.0.5")
	_, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
	wantCode(t, err, codes.Unavailable)
}

// TestGoodTokensNeverThrottled: the limit counts failures only, so a fleet
// registering at once from behind one address with a good token is never
// refused, however many of its attempts are in flight together, and a
// failure afterwards still counts.
func TestGoodTokensNeverThrottled(t *testing.T) {
	e := newEnvConfig(t, sqliteBackend, func(c *Config) {
		c.TokenFailureBurst = 1
		c.TokenFailureInterval = time.Hour
	})
	ctx := context.Background()
	good := e.token(t, &berthv1.CreateTokenRequest{Uses: 40, AutoApprove: true})
	const fleet = 24
	nodes := make([]*node, fleet)
	reqs := make([]*berthv1.RegisterRequest, fleet)
	for i := range nodes {
		nodes[i] = e.nodeFrom(t, fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), "127.0.0.9")
		reqs[i] = nodes[i].registerRequest(t, good)
	}
	errs := make(chan error, fleet)
	for i, n := range nodes {
		go func() {
			_, err := n.client().Register(ctx, reqs[i])
			errs <- err
		}()
	}
	for range fleet {
		if err := <-errs; err != nil {
			t.Errorf("a node of the fleet was refused: %v", err)
		}
	}
	if got := e.nodeCount(t); got != fleet {
		t.Fatalf("%d nodes registered, want %d", got, fleet)
	}
	wrong := good[:9] + "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	late := e.nodeFrom(t, "00000000-0000-4000-8000-000000000999", "127.0.0.9")
	_, err := late.client().Register(ctx, late.registerRequest(t, wrong))
	wantCode(t, err, codes.PermissionDenied)
	_, err = late.client().Register(ctx, late.registerRequest(t, wrong))
	wantCode(t, err, codes.ResourceExhausted)
}

// TestKnownKeyNeedsNoToken: a registered key that registers again gets its
// own node whatever token it brings (a wrong secret, a revoked token,
// none) and is never charged for it: its source keeps its whole burst of
// failures for the unknown keys behind it.
func TestKnownKeyNeedsNoToken(t *testing.T) {
	e, good, wrong := limitedEnv(t, 2)
	ctx := context.Background()
	revoked := e.token(t, &berthv1.CreateTokenRequest{Uses: 20, AutoApprove: true})
	if _, err := e.adminClient().RevokeToken(ctx, &berthv1.RevokeTokenRequest{Id: revoked[:8]}); err != nil {
		t.Fatal(err)
	}
	veteran := e.nodeFrom(t, "00000000-0000-4000-8000-000000000001", "127.0.0.1")
	first, err := veteran.client().Register(ctx, veteran.registerRequest(t, good))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{wrong, wrong, wrong, revoked, ""} {
		resp, err := veteran.client().Register(ctx, veteran.registerRequest(t, tok))
		if err != nil || resp.GetCredentials().GetNodeId() != first.GetCredentials().GetNodeId() {
			t.Fatalf("registered key with token %q: node %s, %v; want its node %s", tok, resp.GetCredentials().GetNodeId(), err, first.GetCredentials().GetNodeId())
		}
	}
	for i, want := range []codes.Code{codes.PermissionDenied, codes.PermissionDenied, codes.ResourceExhausted} {
		n := e.nodeFrom(t, fmt.Sprintf("00000000-0000-4000-9000-%012d", i), "127.0.0.1")
		_, err := n.client().Register(ctx, n.registerRequest(t, wrong))
		wantCode(t, err, want)
	}
	if got := e.nodeCount(t); got != 1 {
		t.Errorf("%d nodes, want the one", got)
	}
}

// TestBootstrapTokenReadOnce: a fleet registering with one token reads it
// once. A token used up or revoked past the replica's cache (by another
// replica: here straight in the store) is refused by the registering write
// with nothing changed; the next registration reads it again and is
// refused before writing. A cached token that expires is refused from the
// cache.
func TestBootstrapTokenReadOnce(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, b string) {
		reads := new(atomic.Int32)
		e := newEnvConfig(t, b, func(c *Config) { c.Store = tokenReads{Store: c.Store, n: reads} })
		ctx := context.Background()
		seq := 0
		register := func(token string) error {
			seq++
			n := e.newNode(fmt.Sprintf("00000000-0000-4000-8000-%012d", seq))
			_, err := n.client().Register(ctx, n.registerRequest(t, token))
			return err
		}
		wantReads := func(want int32) {
			t.Helper()
			if got := reads.Load(); got != want {
				t.Errorf("token read %d times, want %d", got, want)
			}
		}
		fleet := e.token(t, &berthv1.CreateTokenRequest{Uses: 3, AutoApprove: true})
		for range 3 {
			wantCode(t, register(fleet), codes.OK)
		}
		wantReads(1)
		wantCode(t, register(fleet), codes.ResourceExhausted) // the cache still holds three uses
		wantReads(1)
		wantCode(t, register(fleet), codes.ResourceExhausted)
		wantReads(2)

		other := e.token(t, &berthv1.CreateTokenRequest{Uses: 10, AutoApprove: true})
		wantCode(t, register(other), codes.OK)
		if _, err := e.reg.RevokeToken(ctx, other[:8], e.clock.Now(), "admin:other-replica"); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			wantCode(t, register(other), codes.PermissionDenied)
		}
		wantReads(4)
		// A token read while it was valid expires in the cache: refused
		// there, without another read or a write.
		brief := e.token(t, &berthv1.CreateTokenRequest{TtlSeconds: 60, Uses: 10, AutoApprove: true})
		wantCode(t, register(brief), codes.OK)
		e.clock.Advance(time.Minute)
		for range 2 { // a refusal by the write would drop the token, and the second would read it
			err := register(brief)
			wantCode(t, err, codes.PermissionDenied)
			if msg := status.Convert(err).Message(); msg != msgTokenExpired {
				t.Errorf("expired token: message %q, want %q", msg, msgTokenExpired)
			}
		}
		wantReads(5)
		if got := e.nodeCount(t); got != 5 {
			t.Errorf("%d nodes, want 5", got)
		}
		toks, err := e.reg.ListTokens(ctx, true, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range toks {
			if want := map[string]int{fleet[:8]: 0, other[:8]: 9, brief[:8]: 9}[tok.ID]; tok.UsesLeft != want {
				t.Errorf("token %s: %d uses left, want %d", tok.ID, tok.UsesLeft, want)
			}
		}
	})
}
